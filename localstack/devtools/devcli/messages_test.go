package devcli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A refused handshake's reason, from the gateway's {"message": ...} body,
// reaches the user in both listen modes.
func TestListen_RefusalSaysWhy(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"message":"token_expired"}`))
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
	for _, mode := range [][]string{nil, {"--raw"}} {
		t.Run(strings.Join(append([]string{"listen"}, mode...), " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var out, errs strings.Builder
			err := Listen(ctx, append([]string{"--url", url, "--token", "t"}, mode...), Streams{Out: &out, Err: &errs})
			require.Error(t, err)
			assert.Equal(t, "connect refused: HTTP 401: token_expired", err.Error())
		})
	}
}

// JSON the CLI prints keeps ">" (topic patterns) and "<", "&" as they are.
func TestJSONLine_DoesNotEscapeHTML(t *testing.T) {
	assert.Equal(t, `{"text":"subscribe a.> & <b>"}`, string(jsonLine(websocket.MessageText, []byte("subscribe a.> & <b>"))))
	assert.Equal(t, `{"topic":"a.>"}`, string(jsonLine(websocket.MessageText, []byte(`{"topic": "a.>"}`))))
}

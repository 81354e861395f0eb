package stack_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/localstack/devtools/devcli"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/publish"
)

// wsgate listen --bus shows what only a rule target could see before:
// lifecycle events and every other event on the stack's bus; a refused
// event is listed with its id and reason.
func TestDevFeed_ListenBusShowsLifecycleAndRefusedEventsAreListed(t *testing.T) {
	s := stacktest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- devcli.Run(ctx, []string{"listen", "--bus", "--endpoint", s.AWSEndpoint}, devcli.Streams{Out: out, Err: io.Discard})
	}()
	time.Sleep(200 * time.Millisecond)

	stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "busy", Topics: []string{"t.>"}})})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), publish.ConnectionOpened) }, 20*time.Second, 50*time.Millisecond)
	line := out.String()[:strings.Index(out.String(), "\n")]
	var ev map[string]any
	require.NoError(t, json.Unmarshal([]byte(line), &ev), line)
	assert.NotEmpty(t, ev["id"])

	putEvent(t, s, `{"topic":"t.x","payload":1,"audiance":{"orgs":["x"]}}`)
	var refused []stack.Refusal
	require.Eventually(t, func() bool {
		resp, err := http.Get(s.AWSEndpoint + "/_wsgate/refused")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		refused = nil
		return json.NewDecoder(resp.Body).Decode(&refused) == nil && len(refused) > 0
	}, 20*time.Second, 50*time.Millisecond)
	assert.NotEmpty(t, refused[0].EventID)
	assert.Contains(t, refused[0].Reason, "audiance")
	// The refusal is recorded by the broadcast; listen reads the bus on
	// its own clock, so the line may come a moment later.
	assert.Eventually(t, func() bool { return strings.Contains(out.String(), refused[0].EventID) }, 20*time.Second, 50*time.Millisecond, "the refused event is on the bus too")
	cancel()
	<-done
}

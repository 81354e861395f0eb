package devcli

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

// --detail goes through the broadcast function's own parser before it is
// sent, so a publisher learns at once why the gateway would drop it.
func TestPublish_DetailIsValidatedLikeTheBroadcastFunctionDoes(t *testing.T) {
	for _, tc := range []struct{ detail, reason string }{
		{`{"topic":"a.b","payload":1,"audiance":{"orgs":["x"]}}`, `audiance`},
		{`{"topic":"a.*","payload":1}`, `topic`},
		{`{"payload":1}`, `detail.topic is required`},
		{`{"topic":`, `--detail`},
	} {
		// Nothing listens at the endpoint: a refusal must come first.
		err := Publish(context.Background(), []string{"--endpoint", "http://127.0.0.1:1", "--detail", tc.detail}, Streams{Out: io.Discard, Err: io.Discard})
		if assert.Error(t, err, tc.detail) {
			assert.Contains(t, err.Error(), tc.reason, tc.detail)
			assert.Contains(t, err.Error(), "refused", tc.detail)
		}
	}
}

func TestDev_RefusedEventIsOneClearLine(t *testing.T) {
	var out strings.Builder
	var mu sync.Mutex
	var passed int
	log := refusalLines(&out, &mu, func(string, []byte) { passed++ })
	log("broadcast", []byte(`{"time":"2026-12-06T20:00:00Z","level":"WARN","msg":"event rejected","event_id":"e-1","reason":"invalid event: detail: unknown field \"audiance\""}`))
	log("broadcast", []byte(`{"level":"INFO","msg":"delivered","event_id":"e-2"}`))
	log("connect", []byte(`not json`))
	assert.Equal(t, "event e-1 refused: invalid event: detail: unknown field \"audiance\"\n", out.String())
	assert.Equal(t, 3, passed)
}

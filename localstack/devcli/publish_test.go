package devcli

import (
	"context"
	"io"
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

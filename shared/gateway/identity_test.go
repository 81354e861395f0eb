package gateway_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/topic"
)

// Issue 23, "a long or symbol-heavy sub escapes every per-principal
// control": a sub whose direct topic encodes past 512 bytes (180 dots, 200
// spaces: within the 256-byte claim limit) had no direct topic, and the
// per-principal items were keyed by it, so no cap was claimed: with a cap
// of 2, 5 of 5 connections were admitted and 25 of 25 wildcards accepted;
// revoking it failed ("an anonymous principal cannot be revoked") and was
// retried into the DLQ while its connections stayed open.
func TestConnect_AnySubGetsItsCapsDirectTopicAndRevocation(t *testing.T) {
	for name, sub := range map[string]string{
		"180 dots":          strings.Repeat(".", 180),
		"200 spaces":        strings.Repeat(" ", 200),
		"256 percent signs": strings.Repeat("%", 256),
	} {
		t.Run(name, func(t *testing.T) {
			h := gatewaytest.New(t, func(c *config.Config) {
				c.Limits.MaxConnectionsPerPrincipal = 2
				c.Limits.MaxWildcards = 3
			})
			g := auth.Grant{Sub: sub, Topics: []string{"telemetry.>"}}
			admitted := connectAll(t, h, ids("c", 5), map[string]string{"token": h.Token(g)})
			require.Len(t, admitted, 2, "the cap holds")

			subscribed := 0
			for i := range 5 {
				got := h.Send(admitted[0], fmt.Sprintf(`{"type":"subscribe","topic":"telemetry.*.m%d"}`, i))
				require.Len(t, got, 1)
				if strings.Contains(got[0], `"type":"subscribed"`) {
					subscribed++
				} else {
					assert.Equal(t, "rate_limited", errorCode(t, got))
				}
			}
			assert.Equal(t, 3, subscribed, "the wildcard cap holds")

			direct, err := topic.Direct("user", sub)
			require.NoError(t, err, "it has a direct topic")
			require.NoError(t, h.Publish("e1", map[string]any{"topic": direct.String(), "payload": map[string]any{"hi": 1}}))
			for _, id := range admitted {
				assert.Contains(t, lastFrame(h, id), `"hi":1`, "%s gets its direct messages", id)
			}

			require.NoError(t, h.Revoke("r1", map[string]any{"principal": "user:" + sub, "until": h.Now.Add(time.Hour).Format(time.RFC3339)}))
			for _, id := range admitted {
				assert.True(t, closed(h, id), "%s is closed by the revocation", id)
				assert.False(t, alive(t, h, id), id)
			}
			resp := h.Connect("after", map[string]string{"token": h.Token(g)}, nil)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, "and refused until then")
		})
	}
}

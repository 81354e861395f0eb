package gateway_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/topic"
)

// connectScopedFrom runs $connect without a token, scoped to scope, from ip.
func connectScopedFrom(t *testing.T, h *gatewaytest.Harness, id, ip, scope string) events.APIGatewayProxyResponse {
	t.Helper()
	req := events.APIGatewayWebsocketProxyRequest{
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			ConnectionID: id, RouteKey: "$connect", RequestID: "req-" + id, Stage: h.Cfg.Stage,
			Identity: events.APIGatewayRequestIdentity{SourceIP: ip},
		},
		QueryStringParameters: map[string]string{"topic": scope},
	}
	resp, err := h.Gateway.Connect(context.Background(), req)
	require.NoError(t, err)
	return resp
}

// Issue 23: anonymous scoped connections were not capped per source
// address: 40 of 40 were admitted from one address, each holding a
// connection and producing lifecycle events.
func TestConnect_AnonymousScopedConnectionsCappedPerAddress(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.AnonymousTopics = []topic.Pattern{topic.MustPattern("topology.*")} })
	limit := config.DefaultMaxAnonymousPerIP
	admitted := connectAll(t, h, ids("a", 2*limit), map[string]string{"topic": "topology.net1"})
	require.Len(t, admitted, limit, "the harness's handshakes all come from 127.0.0.1")
	assert.Equal(t, float64(limit), h.Limits.Sum(gateway.MetricTooManyAnonymous))
	resp := h.Connect("a-more", map[string]string{"topic": "topology.net2"}, nil)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Contains(t, resp.Body, "anonymous connections from this address")

	assert.Equal(t, http.StatusOK, connectScopedFrom(t, h, "b1", "192.0.2.1", "topology.net1").StatusCode, "another address has its own places")
	h.MustConnect("u1", h.Token(user), map[string]string{"topic": "topology.net1"})

	h.Disconnect(admitted[0])
	h.Disconnect(admitted[0])
	assert.Len(t, connectAll(t, h, ids("c", 3), map[string]string{"topic": "topology.net1"}), 1, "a closed connection frees its place, once")
}

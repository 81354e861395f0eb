package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
)

// The harness runs every request on one of two Gateway instances in turn,
// so each limit here holds across Lambda instances: its state is in
// DynamoDB.
func TestLimits_EachRefusalIsCountedAndLeavesOtherTenantsAlone(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.Limits.MessagesPerSecond = 4
		c.Limits.MaxConnectionsPerPrincipal = 2
		c.Limits.MaxSubscriptions = 3 // the principal's own topic, and two more
		c.Limits.MaxMessageBytes = 256
	})
	abuser := auth.Grant{Sub: "mallory", Orgs: []string{"evil"}, Topics: []string{"telemetry.>"}}
	tenant := auth.Grant{Sub: "alice", Orgs: []string{"acme"}, Topics: []string{"telemetry.>"}}
	h.MustConnect("a1", h.Token(abuser), map[string]string{"envelope": "1"})
	h.MustConnect("b1", h.Token(tenant), map[string]string{"envelope": "1"})

	// Connections per principal.
	h.MustConnect("a2", h.Token(abuser), nil)
	for i := range 3 {
		assert.Equal(t, http.StatusTooManyRequests, h.Connect(fmt.Sprint("a-extra", i), map[string]string{"token": h.Token(abuser)}, nil).StatusCode)
	}
	// Subscriptions per connection.
	one(t, h.Send("a1", `{"type":"subscribe","topic":"telemetry.1"}`), "subscribed")
	one(t, h.Send("a1", `{"type":"subscribe","topic":"telemetry.2"}`), "subscribed")
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("a1", `{"type":"subscribe","topic":"telemetry.3"}`)))
	// Message size (this second's budget is spent after it).
	assert.Equal(t, "too_large", errorCode(t, h.Send("a1", `{"type":"ping","pad":"`+strings.Repeat("x", 300)+`"}`)))
	// Messages per second: the fifth and later in this second.
	for range 3 {
		assert.Equal(t, "rate_limited", errorCode(t, h.Send("a1", `{"type":"ping"}`)))
	}

	assert.Equal(t, 3.0, h.Limits.Sum(gateway.MetricTooManyConnections))
	assert.Equal(t, 1.0, h.Limits.Sum(gateway.MetricTooManySubscriptions))
	assert.Equal(t, 1.0, h.Limits.Sum(gateway.MetricMessageTooLarge))
	assert.Equal(t, 3.0, h.Limits.Sum(gateway.MetricRateLimited))

	// The other tenant, in the same second on the same instances, gets its
	// full budget of each limit.
	h.MustConnect("b2", h.Token(tenant), nil)
	one(t, h.Send("b1", `{"type":"subscribe","topic":"telemetry.7"}`), "subscribed")
	one(t, h.Send("b1", `{"type":"subscribe","topic":"telemetry.8"}`), "subscribed")
	one(t, h.Send("b1", `{"type":"ping"}`), "pong")
	one(t, h.Send("b1", `{"type":"ping"}`), "pong")
	require.NoError(t, h.Publish("e1", `{"topic":"telemetry.7","payload":{"n":1}}`))
	got := h.Received("b1")
	require.Len(t, got, 1, "delivered to the other tenant")
	assert.Contains(t, got[0], `"topic":"telemetry.7"`)
	assert.Equal(t, 8.0, h.Limits.Sum(gateway.MetricRateLimited)+h.Limits.Sum(gateway.MetricTooManyConnections)+
		h.Limits.Sum(gateway.MetricTooManySubscriptions)+h.Limits.Sum(gateway.MetricMessageTooLarge), "none counted for the other tenant")

	// Nothing the refusals touched is left half-written.
	c, err := h.Store.GetConnection(context.Background(), "a1")
	require.NoError(t, err)
	assert.Equal(t, 3, c.Subscriptions)
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "a1")
	require.NoError(t, err)
	assert.Len(t, subs, 3)
	for i := range 3 {
		_, err := h.Store.GetConnection(context.Background(), fmt.Sprint("a-extra", i))
		assert.Error(t, err, "a refused connection has no record")
	}
}

package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// connectAll runs the handshakes at once and returns the ids admitted.
func connectAll(t *testing.T, h *gatewaytest.Harness, ids []string, query map[string]string) []string {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var admitted []string
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := h.Connect(id, query, nil)
			mu.Lock()
			defer mu.Unlock()
			switch resp.StatusCode {
			case http.StatusOK:
				admitted = append(admitted, id)
			case http.StatusTooManyRequests:
			default:
				t.Errorf("connect %s: %d %s", id, resp.StatusCode, resp.Body)
			}
		}()
	}
	wg.Wait()
	return admitted
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// Issue 13: 20 simultaneous connects with a cap of 2 admitted 4, because
// the cap was a count read before the write.
func TestConnect_CapHoldsUnderSimultaneousHandshakes(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.Limits.MaxConnectionsPerPrincipal = 2 })
	q := map[string]string{"token": h.Token(user)}
	admitted := connectAll(t, h, ids("c", 20), q)
	require.Len(t, admitted, 2, "exactly the cap is admitted")
	assert.Equal(t, 18.0, h.Limits.Sum(gateway.MetricTooManyConnections))

	h.Disconnect(admitted[0])
	h.Disconnect(admitted[0]) // a repeated $disconnect frees one place, not two
	assert.Len(t, connectAll(t, h, ids("d", 5), q), 1, "a closed connection frees its place, once")

	// $disconnect never came: the records expire, and with them their places.
	h.Advance(h.Cfg.ConnectionTTL + time.Second)
	q = map[string]string{"token": h.Token(user)}
	assert.Len(t, connectAll(t, h, ids("e", 5), q), 2)
}

// Issue 13: a principal subscribed to someone's direct topic (an admin
// watching a user) counted as one of that user's connections.
func TestConnect_WatchingSomeonesDirectTopicDoesNotCountAsThem(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.Limits.MaxConnectionsPerPrincipal = 2 })
	admin := h.Token(auth.Grant{Sub: "admin", Topics: []string{"direct.user.>"}, Subscribe: []string{"direct.user.u1"}})
	h.MustConnect("admin-1", admin, nil)
	h.MustConnect("admin-2", admin, nil)
	one(t, h.Send("admin-2", `{"type":"subscribe","topic":"direct.user.u1"}`), "subscribed")

	tok := h.Token(user) // sub u1
	h.MustConnect("u1-a", tok, nil)
	h.MustConnect("u1-b", tok, nil)
	assert.Equal(t, http.StatusTooManyRequests, h.Connect("u1-c", map[string]string{"token": tok}, nil).StatusCode)
	n, err := h.Store.CountConnections(context.Background(), auth.Identity{Type: "user", Sub: "u1"})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

// connectFrom runs $connect without a token (auth-message mode) from ip.
func connectFrom(t *testing.T, h *gatewaytest.Harness, id, ip string) int {
	t.Helper()
	req := events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: id, RouteKey: "$connect", RequestID: "req-" + id, Stage: h.Cfg.Stage,
		Identity: events.APIGatewayRequestIdentity{SourceIP: ip},
	}}
	resp, err := h.Gateway.Connect(context.Background(), req)
	require.NoError(t, err)
	return resp.StatusCode
}

// Issue 13: auth-message mode admitted any number of unauthenticated
// connections (300 from one address in 2 s).
func TestConnect_PendingConnectionsCappedPerAddressAndInAll(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.MaxPendingPerIP = 3; c.MaxPending = 5 })
	// The harness's handshakes come from 127.0.0.1.
	admitted := connectAll(t, h, ids("p", 20), nil)
	require.Len(t, admitted, 3)
	assert.Equal(t, 17.0, h.Limits.Sum(gateway.MetricTooManyPending))
	resp := h.Connect("p-more", nil, nil)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Contains(t, resp.Body, "waiting to authenticate from this address")

	assert.Equal(t, http.StatusOK, connectFrom(t, h, "q1", "192.0.2.1"), "another address has its own places")
	assert.Equal(t, http.StatusOK, connectFrom(t, h, "q2", "192.0.2.2"))
	assert.Equal(t, http.StatusTooManyRequests, connectFrom(t, h, "q3", "192.0.2.3"), "5 pending in all")

	// Authenticating frees a place, and so does closing.
	ok := one(t, h.Send(admitted[0], `{"type":"auth","token":"`+h.Token(user)+`"}`), "auth_response")
	require.Equal(t, true, ok["success"])
	assert.Equal(t, http.StatusOK, h.Connect("p-after-auth", nil, nil).StatusCode)
	h.Disconnect(admitted[1])
	assert.Equal(t, http.StatusOK, connectFrom(t, h, "q4", "192.0.2.3"))
	assert.Equal(t, http.StatusTooManyRequests, h.Connect("p-full", nil, nil).StatusCode)

	// So does the deadline, whether or not its task ran.
	h.Advance(h.Cfg.AuthDeadline + time.Second)
	assert.Len(t, connectAll(t, h, ids("r", 6), nil), 3)

	// Connections with a token are not pending.
	h.MustConnect("with-token", h.Token(user), nil)
}

func TestConfig_AuthDeadlineIsFiveSeconds(t *testing.T) {
	h := gatewaytest.New(t)
	assert.Equal(t, 5*time.Second, h.Cfg.AuthDeadline)
	require.Equal(t, http.StatusOK, h.Connect("pending", nil, nil).StatusCode)
	_, delays := h.Tasks.Take()
	assert.Equal(t, []time.Duration{5 * time.Second}, delays)
}

// Issue 13: subscribing and unsubscribing patterns that never match left
// their index entries behind, slowing every event under the prefix.
func TestSubscribe_WildcardPatternsCappedPerPrincipalAndIndexCleaned(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.Limits.MaxWildcards = 2 })
	tok := h.Token(user)
	h.MustConnect("c1", tok, nil)
	h.MustConnect("c2", tok, nil)
	one(t, h.Send("c1", `{"type":"subscribe","topic":"telemetry.*"}`), "subscribed")
	one(t, h.Send("c2", `{"type":"subscribe","topic":"telemetry.*"}`), "subscribed")
	one(t, h.Send("c2", `{"type":"subscribe","topic":"telemetry.*.temp"}`), "subscribed")
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("c2", `{"type":"subscribe","topic":"telemetry.>"}`)))
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("c1", `{"type":"subscribe","topic":"topology.*"}`)), "the cap is the principal's")
	one(t, h.Send("c1", `{"type":"subscribe","topic":"telemetry.9"}`), "subscribed")

	one(t, h.Send("c2", `{"type":"unsubscribe","topic":"telemetry.*.temp"}`), "unsubscribed")
	one(t, h.Send("c1", `{"type":"subscribe","topic":"topology.*"}`), "subscribed")

	// Churn through patterns that never match: no index entry stays.
	one(t, h.Send("c1", `{"type":"unsubscribe","topic":"topology.*"}`), "unsubscribed")
	for i := range 20 {
		p := fmt.Sprintf("telemetry.never%d.*", i)
		frames := h.Send("c2", `{"type":"batch","messages":[{"type":"subscribe","topic":"`+p+`"},{"type":"unsubscribe","topic":"`+p+`"}]}`)
		require.Len(t, frames, 2)
		assert.Contains(t, frames[0], `"subscribed"`)
		assert.Contains(t, frames[1], `"unsubscribed"`)
	}
	refs, err := h.Store.SubscriberPatterns(context.Background(), topic.MustPattern("telemetry.never3.x"), store.Layout{})
	require.NoError(t, err)
	assert.Len(t, refs, 1, "only the topic itself")
	refs, err = h.Store.SubscriberPatterns(context.Background(), topic.MustPattern("telemetry.x"), store.Layout{})
	require.NoError(t, err)
	assert.Len(t, refs, 2, "the topic and telemetry.*, which c1 and c2 hold")
	h.Disconnect("c1")
	h.Disconnect("c2")
	refs, err = h.Store.SubscriberPatterns(context.Background(), topic.MustPattern("telemetry.x"), store.Layout{})
	require.NoError(t, err)
	assert.Len(t, refs, 1, "the last disconnect removes the index entries")
}

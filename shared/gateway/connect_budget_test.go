package gateway_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// lateAnswers delivers DynamoDB's answers to transactions late: the
// write lands at once, its answer after delay (a slow network, a retry).
type lateAnswers struct {
	delay time.Duration
}

func (l lateAnswers) Do(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultClient.Do(r.WithContext(context.WithoutCancel(r.Context())))
	if r.Header.Get("X-Amz-Target") == "DynamoDB_20120810.TransactWriteItems" {
		select {
		case <-time.After(l.delay):
		case <-r.Context().Done():
			if resp != nil {
				resp.Body.Close()
			}
			return nil, r.Context().Err()
		}
	}
	return resp, err
}

// A $connect whose record was stored but whose answer came too late for
// API Gateway (which then refuses the client, and sends no $disconnect
// for a connection that never opened) removes the record: it must not
// hold a place in the principal's connection cap until its TTL.
func TestConnect_StoredTooLateHoldsNoPlaceInTheCap(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.Limits.MaxConnectionsPerPrincipal = 1 })
	slow := store.New(storetest.Client(t, func(o *dynamodb.Options) { o.HTTPClient = lateAnswers{delay: 4 * time.Second} }), h.Store.Table())
	g := gateway.New(h.Cfg, gateway.Deps{Store: slow, Verifier: h.Verifier, Connections: h.Conns.Client(), Tasks: h.Tasks})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // the function's deadline
	defer cancel()
	req := events.APIGatewayWebsocketProxyRequest{
		RequestContext:        events.APIGatewayWebsocketProxyRequestContext{ConnectionID: "late", RouteKey: "$connect", RequestID: "r1", Stage: h.Cfg.Stage},
		QueryStringParameters: map[string]string{"token": h.Token(user)},
	}
	resp, err := g.Connect(ctx, req)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, resp.StatusCode, 500, "refused: %s", resp.Body)

	_, err = h.Store.GetConnection(context.Background(), "late")
	assert.ErrorIs(t, err, store.ErrNotFound, "the late record was removed")
	h.MustConnect("next", h.Token(user), nil) // the principal's one place is free
}

// slowTickets moves the clock on while a ticket is claimed: the handshake
// spends that long before its record is stored.
type slowTickets struct {
	h *gatewaytest.Harness
	d time.Duration
}

func (s slowTickets) Do(r *http.Request) (*http.Response, error) {
	if r.Header.Get("X-Amz-Target") == "DynamoDB_20120810.PutItem" {
		s.h.Advance(s.d)
	}
	return http.DefaultClient.Do(r)
}

// The window in which a post's 410 means "still connecting" counts from
// when the record was stored: a handshake that spent seconds before it
// (a JWKS fetch, a ticket claim retried) must not have its record taken
// for gone by a post racing the end of $connect.
func TestConnect_WindowCountsFromTheStoredRecord(t *testing.T) {
	h := gatewaytest.New(t)
	now := func() time.Time { return h.Now }
	slow := store.New(storetest.Client(t, func(o *dynamodb.Options) { o.HTTPClient = slowTickets{h, 10 * time.Second} }), h.Store.Table()).WithClock(now)
	g := gateway.New(h.Cfg, gateway.Deps{Store: slow, Verifier: h.Verifier, Connections: h.Conns.Client(), Tasks: h.Tasks, Now: now})
	req := events.APIGatewayWebsocketProxyRequest{
		RequestContext:        events.APIGatewayWebsocketProxyRequestContext{ConnectionID: "slow", RouteKey: "$connect", RequestID: "r1", Stage: h.Cfg.Stage},
		QueryStringParameters: map[string]string{"token": h.Ticket(user)},
	}
	resp, err := g.Connect(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
	c, err := h.Store.GetConnection(context.Background(), "slow")
	require.NoError(t, err)
	assert.True(t, fanout.Settling(c.ConnectedAt, h.Now), "stored at %v, now %v: a 410 now means not yet registered", c.ConnectedAt, h.Now)
}

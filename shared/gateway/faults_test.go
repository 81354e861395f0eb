package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// panickyVerifier panics on one token: a fault deep inside a command.
type panickyVerifier struct{ gateway.Verifier }

func (v panickyVerifier) Verify(ctx context.Context, token string) (auth.Principal, error) {
	if token == "boom" {
		panic("verifier bug")
	}
	return v.Verifier.Verify(ctx, token)
}

// A command that panics is answered unavailable, by its id, as any
// internal error is: bad_request without an id told clients not to send it
// again, and a batch lost every answer. Commands that ran keep theirs.
func TestMessage_PanicAnswersEachUnfinishedCommandUnavailableByID(t *testing.T) {
	h := connected(t)
	g := gateway.New(h.Cfg, gateway.Deps{
		Store: h.Store, Verifier: panickyVerifier{h.Verifier}, Connections: h.Conns.Client(), Tasks: h.Tasks,
		Now: func() time.Time { return h.Now },
	})
	send := func(body string) []string {
		before := len(h.Conns.Received("c1"))
		req := events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			ConnectionID: "c1", RouteKey: "$default", RequestID: "panicky", Stage: h.Cfg.Stage,
		}, Body: body}
		resp, err := g.Message(context.Background(), req)
		require.NoError(t, err, "a panic is answered, never returned")
		var out []string
		for _, f := range h.Conns.Received("c1")[before:] {
			out = append(out, string(f))
		}
		return append(out, resp.Body)
	}

	e := one(t, send(`{"type":"auth","id":"a1","token":"boom"}`), "error")
	assert.Equal(t, "unavailable", e["code"])
	assert.Equal(t, "a1", e["id"])

	got := send(`{"type":"batch","messages":[{"type":"ping","id":"p1"},{"type":"auth","id":"a2","token":"boom"},{"type":"ping","id":"p2"}]}`)
	require.Len(t, got, 3, "%v", got)
	assert.Equal(t, "pong", decode(t, got[0])["type"])
	assert.Equal(t, "p1", decode(t, got[0])["id"], "the command that ran keeps its answer")
	for i, id := range []string{"a2", "p2"} {
		m := decode(t, got[i+1])
		assert.Equal(t, "error", m["type"])
		assert.Equal(t, "unavailable", m["code"])
		assert.Equal(t, id, m["id"])
	}
}

// failingUpdates is the table with every UpdateItem failing.
type failingUpdates struct{ store.DB }

func (failingUpdates) UpdateItem(context.Context, *dynamodb.UpdateItemInput, ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return nil, errors.New("injected: service unavailable")
}

// The log names what failed: counting the frame's commands (the removed
// TouchConnection's name, "touch failed", told an operator nothing).
func TestMessage_StoreFailureWhileCountingIsLoggedByWhatFailed(t *testing.T) {
	h := connected(t)
	var logs bytes.Buffer
	g := gateway.New(h.Cfg, gateway.Deps{
		Store: store.New(failingUpdates{storetest.Client(t)}, h.Store.Table()), Verifier: h.Verifier,
		Connections: h.Conns.Client(), Log: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	req := events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: "c1", RouteKey: "$default", RequestID: "r1", Stage: h.Cfg.Stage,
	}, Body: `{"type":"ping","id":"p1"}`}
	resp, err := g.Message(context.Background(), req)
	require.NoError(t, err)
	e := one(t, []string{resp.Body}, "error")
	assert.Equal(t, "unavailable", e["code"])
	assert.Equal(t, "p1", e["id"])
	assert.Contains(t, logs.String(), `"msg":"counting the frame against the rate limit failed"`)
	assert.Contains(t, logs.String(), "store: count commands of c1: injected")
	assert.NotContains(t, logs.String(), "touch")
}

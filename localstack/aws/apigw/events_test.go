package apigw

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEvents_RoutesOfOneConnectionAgree follows one connection through its
// three routes: every event names the same connection as API Gateway does
// ($connect's connectedAt and identity throughout), each has its own
// request id, and only $connect carries the handshake's headers and query.
func TestEvents_RoutesOfOneConnectionAgree(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	fns.message = func(_ context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		return reply("echo " + req.Body), nil
	}
	tg := start(t, Options{DomainName: "ws.example"}, fns)
	h := http.Header{}
	h.Set("User-Agent", "apigw-test/3")
	ws, id := tg.dial(t, &websocket.DialOptions{HTTPHeader: h})
	send(t, ws, "hi")
	assert.Equal(t, "echo hi", read(t, ws, 5*time.Second))
	require.NoError(t, ws.Close(4000, "bye"))
	require.Eventually(t, func() bool { _, ok := fns.disconnected(id); return ok }, 5*time.Second, 5*time.Millisecond)

	all := map[string]recorded{}
	for _, fn := range []string{fnConnect, fnMessage, fnDisconnect} {
		got := fns.of(fn)
		require.Len(t, got, 1, fn)
		all[fn] = got[0]
	}
	connectedAt := all[fnConnect].req.RequestContext.ConnectedAt
	requestIDs := map[string]bool{}
	for fn, want := range map[string]struct{ route, typ string }{
		fnConnect:    {"$connect", "CONNECT"},
		fnMessage:    {"$default", "MESSAGE"},
		fnDisconnect: {"$disconnect", "DISCONNECT"},
	} {
		rc := all[fn].req.RequestContext
		assert.Equal(t, want.route, rc.RouteKey, fn)
		assert.Equal(t, want.typ, rc.EventType, fn)
		assert.Equal(t, id, rc.ConnectionID, fn)
		assert.Equal(t, connectedAt, rc.ConnectedAt, fn)
		assert.Equal(t, "127.0.0.1", rc.Identity.SourceIP, fn)
		assert.Equal(t, "apigw-test/3", rc.Identity.UserAgent, fn)
		assert.Equal(t, "ws.example", rc.DomainName, fn)
		assert.Equal(t, testStage, rc.Stage, fn)
		assert.Equal(t, "IN", rc.MessageDirection, fn)
		assert.GreaterOrEqual(t, rc.RequestTimeEpoch, connectedAt, fn)
		assert.NotEmpty(t, rc.RequestID, fn)
		requestIDs[rc.RequestID] = true
	}
	assert.Len(t, requestIDs, 3, "a request id per invocation")

	msg := all[fnMessage]
	assert.Equal(t, "hi", msg.req.Body)
	assert.Equal(t, false, msg.raw["isBase64Encoded"])
	assert.NotEmpty(t, msg.req.RequestContext.MessageID)
	assert.NotContains(t, msg.raw, "headers", "API Gateway passes $default no headers")
	assert.NotContains(t, msg.raw, "queryStringParameters")
	assert.NotContains(t, all[fnConnect].raw["requestContext"], "messageId", "only messages have one")

	disc := all[fnDisconnect].req
	assert.Equal(t, int64(4000), disc.RequestContext.DisconnectStatusCode, "the client's close code")
	assert.Equal(t, "ws.example", disc.Headers["Host"])
	assert.NotContains(t, all[fnDisconnect].raw, "queryStringParameters")
}

package apigw

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConnect_RefusalStatusReachesTheHandshake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		resp     events.APIGatewayProxyResponse
		err      error
		wantCode int
		wantType string
	}{
		{name: "unauthorized", resp: events.APIGatewayProxyResponse{StatusCode: 401, Body: `{"message":"Unauthorized"}`}, wantCode: 401},
		{name: "forbidden", resp: events.APIGatewayProxyResponse{StatusCode: 403, Body: `{"message":"Forbidden"}`}, wantCode: 403},
		{name: "throttled", resp: events.APIGatewayProxyResponse{StatusCode: 429}, wantCode: 429},
		{name: "function error", err: errors.New("boom"), wantCode: 500},
		{name: "plain text body under its own type", resp: events.APIGatewayProxyResponse{StatusCode: 400, Body: "no", Headers: map[string]string{"content-type": "text/plain"}}, wantCode: 400, wantType: "text/plain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fns := newFunctions()
			fns.connect = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
				return tt.resp, tt.err
			}
			tg := start(t, Options{}, fns)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, resp, err := websocket.Dial(ctx, tg.url(""), nil)
			require.Error(t, err)
			require.NotNil(t, resp)
			assert.Equal(t, tt.wantCode, resp.StatusCode)
			if tt.wantType == "" {
				tt.wantType = "application/json"
			}
			assert.Equal(t, tt.wantType, resp.Header.Get("Content-Type"), "one content type for every refusal")
			if tt.err != nil {
				body, _ := io.ReadAll(resp.Body)
				assert.JSONEq(t, `{"message":"Internal server error"}`, string(body))
			}
			if tt.resp.Body != "" && tt.wantType == "application/json" {
				body, _ := io.ReadAll(resp.Body)
				assert.JSONEq(t, tt.resp.Body, string(body), "the function's body is the handshake's")
			}

			tg.CloseAll(ctx) // waits for every handshake to finish
			assert.Zero(t, tg.Count())
			assert.Empty(t, fns.of(fnDisconnect), "no $disconnect for a refused connection")
		})
	}
}

func TestConnect_EventCarriesTheHandshake(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	tg := start(t, Options{}, fns)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h := http.Header{}
	h.Set("Origin", "https://evil.example")
	h.Set("User-Agent", "apigw-test/1")
	h.Add("X-Custom", "a")
	h.Add("X-Custom", "b")
	ws, _, err := websocket.Dial(ctx, tg.url("token=abc&a=1&a=2"), &websocket.DialOptions{HTTPHeader: h})
	require.NoError(t, err, "API Gateway accepts any Origin")
	defer ws.CloseNow()
	<-fns.accepted

	got := fns.of(fnConnect)
	require.Len(t, got, 1)
	req, raw := got[0].req, got[0].raw
	rc, ok := raw["requestContext"].(map[string]any)
	require.True(t, ok)
	id, _ := rc["connectionId"].(string)
	assert.Len(t, id, 16, "15 characters and '='")
	assert.True(t, strings.HasSuffix(id, "="))
	assert.Equal(t, "CONNECT", rc["eventType"])
	assert.Equal(t, "$connect", rc["routeKey"])
	assert.Equal(t, "IN", rc["messageDirection"])
	assert.Equal(t, testStage, rc["stage"])
	assert.Equal(t, "wsgatelocl", rc["apiId"])
	assert.NotEmpty(t, rc["requestId"])
	assert.InDelta(t, time.Now().UnixMilli(), req.RequestContext.ConnectedAt, 5000)
	assert.Equal(t, "127.0.0.1", req.RequestContext.Identity.SourceIP)
	assert.Equal(t, "apigw-test/1", req.RequestContext.Identity.UserAgent)

	headers, ok := raw["headers"].(map[string]any)
	require.True(t, ok)
	assert.Equal(t, "https://evil.example", headers["Origin"])
	assert.Equal(t, "a,b", headers["X-Custom"])
	assert.Equal(t, strings.TrimPrefix(tg.srv.URL, "http://"), headers["Host"])
	assert.Equal(t, "127.0.0.1", headers["X-Forwarded-For"])
	assert.Equal(t, "http", headers["X-Forwarded-Proto"])
	assert.NotEmpty(t, headers["X-Forwarded-Port"])
	assert.NotEmpty(t, headers["Sec-WebSocket-Key"])
	assert.Equal(t, []string{"https://evil.example"}, req.MultiValueHeaders["Origin"])
	assert.Equal(t, []string{"a", "b"}, req.MultiValueHeaders["X-Custom"])

	q, ok := raw["queryStringParameters"].(map[string]any)
	require.True(t, ok)
	assert.Equal(t, "abc", q["token"])
	assert.Equal(t, "2", q["a"], "the last value, as API Gateway keeps")
	assert.Equal(t, []string{"1", "2"}, req.MultiValueQueryStringParameters["a"])
}

func TestConnect_SubprotocolChosenByTheFunction(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	fns.connect = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		return events.APIGatewayProxyResponse{StatusCode: 200, Headers: map[string]string{"Sec-WebSocket-Protocol": "wsgate.v1"}}, nil
	}
	tg := start(t, Options{}, fns)
	ws, _ := tg.dial(t, &websocket.DialOptions{Subprotocols: []string{"wsgate.v1", "other"}})
	assert.Equal(t, "wsgate.v1", ws.Subprotocol())
}

func TestConnect_IdleAndOverAgeConnectionsAreClosed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		opts       Options
		keepTyping bool
		wantReason string
	}{
		{name: "idle", opts: Options{IdleTimeout: 200 * time.Millisecond}, wantReason: "Connection Idle Timeout"},
		{name: "max lifetime", opts: Options{MaxLifetime: 400 * time.Millisecond}, keepTyping: true, wantReason: "Connection Duration Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fns := newFunctions()
			tg := start(t, tt.opts, fns)
			ws, id := tg.dial(t, nil)
			stop := make(chan struct{})
			defer close(stop)
			if tt.keepTyping {
				go func() {
					for {
						select {
						case <-stop:
							return
						case <-time.After(50 * time.Millisecond):
							_ = ws.Write(context.Background(), websocket.MessageText, []byte("still here"))
						}
					}
				}()
			}
			assert.Equal(t, websocket.StatusGoingAway, closeStatus(t, ws, 5*time.Second))
			require.Eventually(t, func() bool { _, ok := fns.disconnected(id); return ok }, 5*time.Second, 10*time.Millisecond)
			ev, _ := fns.disconnected(id)
			assert.Equal(t, "DISCONNECT", ev.RequestContext.EventType)
			assert.Equal(t, int64(websocket.StatusGoingAway), ev.RequestContext.DisconnectStatusCode)
			require.NotNil(t, ev.RequestContext.DisconnectReason)
			assert.Equal(t, tt.wantReason, *ev.RequestContext.DisconnectReason)
		})
	}
}

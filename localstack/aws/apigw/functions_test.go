package apigw

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// handler is one fake function behind a route.
type handler func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error)

// functions is an in-process Invoker standing in for the three route
// functions, recording every event the gateway sends. A nil handler
// answers 200 with no body.
type functions struct {
	connect, message, disconnect handler

	mu     sync.Mutex
	events []recorded
	// accepted receives the id of every connection $connect accepted.
	accepted chan string
}

// recorded is one invocation: the event as the function decoded it and
// as raw JSON.
type recorded struct {
	fn  string
	req events.APIGatewayWebsocketProxyRequest
	raw map[string]any
}

const (
	fnConnect    = "connect-fn"
	fnMessage    = "message-fn"
	fnDisconnect = "disconnect-fn"
	testStage    = "test"
)

func newFunctions() *functions { return &functions{accepted: make(chan string, 64)} }

func (f *functions) Invoke(ctx context.Context, name string, payload []byte) ([]byte, error) {
	var rec recorded
	rec.fn = name
	if err := json.Unmarshal(payload, &rec.req); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(payload, &rec.raw); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.events = append(f.events, rec)
	h := map[string]handler{fnConnect: f.connect, fnMessage: f.message, fnDisconnect: f.disconnect}[name]
	f.mu.Unlock()
	resp := events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	if h != nil {
		var err error
		if resp, err = h(ctx, rec.req); err != nil {
			return nil, err
		}
	}
	if name == fnConnect && resp.StatusCode/100 == 2 {
		f.accepted <- rec.req.RequestContext.ConnectionID
	}
	return json.Marshal(resp)
}

// of returns the events one function received, oldest first.
func (f *functions) of(fn string) []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []recorded
	for _, e := range f.events {
		if e.fn == fn {
			out = append(out, e)
		}
	}
	return out
}

// disconnected reports whether $disconnect ran for id, and with what.
func (f *functions) disconnected(id string) (events.APIGatewayWebsocketProxyRequest, bool) {
	for _, e := range f.of(fnDisconnect) {
		if e.req.RequestContext.ConnectionID == id {
			return e.req, true
		}
	}
	return events.APIGatewayWebsocketProxyRequest{}, false
}

// testGateway is a Gateway behind an httptest server, as the stack mounts
// it: @connections paths to ServeManagement, the rest to ServeHTTP.
type testGateway struct {
	*Gateway
	fns  *functions
	srv  *httptest.Server
	mgmt *apigatewaymanagementapi.Client
}

func start(t *testing.T, opts Options, fns *functions) *testGateway {
	t.Helper()
	opts.Stage = testStage
	opts.Routes = Routes{Connect: fnConnect, Disconnect: fnDisconnect, Default: fnMessage, DisconnectQueue: opts.Routes.DisconnectQueue}
	opts.Invoker = fns
	g := New(opts)
	tg := &testGateway{Gateway: g, fns: fns}
	tg.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.ManagementPath(r) {
			g.ServeManagement(w, r)
			return
		}
		g.ServeHTTP(w, r)
	}))
	t.Cleanup(tg.srv.Close)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.CloseAll(ctx)
		g.Close()
	})
	tg.mgmt = apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint:     aws.String(tg.srv.URL + "/" + testStage),
		RetryMaxAttempts: 1,
	})
	return tg
}

// url is the client endpoint, with a query string if given.
func (tg *testGateway) url(query string) string {
	u := "ws" + strings.TrimPrefix(tg.srv.URL, "http") + "/" + testStage
	if query != "" {
		u += "?" + query
	}
	return u
}

// dial connects a client and returns it with its connection id, once the
// gateway has registered it: the client reads the 101 a moment before.
func (tg *testGateway) dial(t *testing.T, opts *websocket.DialOptions) (*websocket.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, tg.url(""), opts)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	t.Cleanup(func() { _ = ws.CloseNow() })
	ws.SetReadLimit(1 << 20)
	select {
	case id := <-tg.fns.accepted:
		tg.waitRegistered(t, id)
		return ws, id
	case <-ctx.Done():
		t.Fatal("no connection id")
		return nil, ""
	}
}

// waitRegistered waits until the gateway holds the connection.
func (tg *testGateway) waitRegistered(t *testing.T, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		tg.mu.RLock()
		defer tg.mu.RUnlock()
		return tg.conns[id] != nil
	}, 5*time.Second, time.Millisecond)
}

// read returns the client's next message, failing after d.
func read(t *testing.T, ws *websocket.Conn, d time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, data, err := ws.Read(ctx)
	require.NoError(t, err)
	return string(data)
}

// send writes one text message from the client.
func send(t *testing.T, ws *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(msg)))
}

// closeStatus reads until the connection ends and returns the close code
// the server sent (-1 if none).
func closeStatus(t *testing.T, ws *websocket.Conn, d time.Duration) websocket.StatusCode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		if _, _, err := ws.Read(ctx); err != nil {
			require.NoError(t, ctx.Err(), "the connection did not close in time")
			return websocket.CloseStatus(err)
		}
	}
}

// reply answers a route with a body.
func reply(body string) events.APIGatewayProxyResponse {
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: body}
}

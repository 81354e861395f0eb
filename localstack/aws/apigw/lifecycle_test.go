package apigw

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLifecycle_OnlyTheStagePathAcceptsClients(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	tg := start(t, Options{}, fns)
	base := "ws" + strings.TrimPrefix(tg.srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for _, path := range []string{"/", "/" + testStage, "/" + testStage + "/"} {
		ws, _, err := websocket.Dial(ctx, base+path, nil)
		require.NoError(t, err, path)
		_ = ws.CloseNow()
	}
	_, resp, err := websocket.Dial(ctx, base+"/other", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.Len(t, fns.of(fnConnect), 3, "no $connect for another path")

	plain, err := http.Get(tg.srv.URL + "/" + testStage)
	require.NoError(t, err)
	_ = plain.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, plain.StatusCode, "a plain GET is told to upgrade")
}

func TestLifecycle_ConnectResponseBodyIsNotSent(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	fns.connect = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		return reply("welcome from $connect"), nil
	}
	tg := start(t, Options{}, fns)
	ws, id := tg.dial(t, nil)
	require.NoError(t, tg.post(id, "first post"))
	assert.Equal(t, "first post", read(t, ws, 5*time.Second), "an accepting $connect's body goes nowhere")
}

func TestLifecycle_FailingDisconnectChangesNothing(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	fns.disconnect = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		return events.APIGatewayProxyResponse{}, errors.New("boom")
	}
	tg := start(t, Options{}, fns)
	ws, id := tg.dial(t, nil)
	require.NoError(t, ws.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { _, ok := fns.disconnected(id); return ok }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, tg.Count())
	assert.True(t, isGone(tg.post(id, "after")))

	ws2, id2 := tg.dial(t, nil)
	require.NoError(t, tg.post(id2, "still serving"))
	assert.Equal(t, "still serving", read(t, ws2, 5*time.Second))
}

func TestLifecycle_ClientActivityKeepsAConnectionOpen(t *testing.T) {
	t.Parallel()
	const idle = 500 * time.Millisecond
	tests := []struct {
		name  string
		touch func(ctx context.Context, ws *websocket.Conn) error
	}{
		{name: "messages", touch: func(ctx context.Context, ws *websocket.Conn) error {
			return ws.Write(ctx, websocket.MessageText, []byte("still here"))
		}},
		{name: "pings", touch: func(ctx context.Context, ws *websocket.Conn) error { return ws.Ping(ctx) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fns := newFunctions()
			tg := start(t, Options{IdleTimeout: idle}, fns)
			ws, id := tg.dial(t, nil)
			closed := make(chan error, 1)
			go func() { // reads, so pings get their pongs
				for {
					if _, _, err := ws.Read(context.Background()); err != nil {
						closed <- err
						return
					}
				}
			}()
			for until := time.Now().Add(3 * idle); time.Now().Before(until); {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				require.NoError(t, tt.touch(ctx, ws), "open after %s of activity", 3*idle-time.Until(until))
				cancel()
				time.Sleep(idle / 6)
			}
			_, gone := fns.disconnected(id)
			assert.False(t, gone)

			select { // once quiet, the idle cut comes
			case err := <-closed:
				assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err))
			case <-time.After(5 * time.Second):
				t.Fatal("an idle connection stayed open")
			}
			require.Eventually(t, func() bool { _, ok := fns.disconnected(id); return ok }, 5*time.Second, 5*time.Millisecond)
			ev, _ := fns.disconnected(id)
			require.NotNil(t, ev.RequestContext.DisconnectReason)
			assert.Equal(t, "Connection Idle Timeout", *ev.RequestContext.DisconnectReason)
		})
	}
}

func TestLifecycle_CutConnections(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		cut            func(t *testing.T, g *Gateway)
		wantClientCode websocket.StatusCode // -1: cut without a close frame
		wantDisconnect int64                // $disconnect's status code; 0: no $disconnect
	}{
		{name: "drop, as a network failure", cut: func(t *testing.T, g *Gateway) { assert.Equal(t, 1, g.Drop()) },
			wantClientCode: -1, wantDisconnect: int64(websocket.StatusAbnormalClosure)},
		{name: "crash, as a dying gateway", cut: func(t *testing.T, g *Gateway) { assert.Equal(t, 1, g.Crash()) },
			wantClientCode: -1},
		{name: "close all, as a stage deletion", cut: func(_ *testing.T, g *Gateway) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			g.CloseAll(ctx)
		}, wantClientCode: websocket.StatusGoingAway, wantDisconnect: int64(websocket.StatusGoingAway)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fns := newFunctions()
			tg := start(t, Options{}, fns)
			ws, id := tg.dial(t, nil)
			code := make(chan websocket.StatusCode, 1)
			go func() { // reads, so the close handshake is answered
				for {
					if _, _, err := ws.Read(context.Background()); err != nil {
						code <- websocket.CloseStatus(err)
						return
					}
				}
			}()
			tt.cut(t, tg.Gateway)
			select {
			case got := <-code:
				assert.Equal(t, tt.wantClientCode, got)
			case <-time.After(5 * time.Second):
				t.Fatal("the client was not cut")
			}

			// Once the gateway has let go of the connection, CloseAll only
			// waits for its $disconnect (it would close it itself before).
			require.Eventually(t, func() bool { return tg.Count() == 0 }, 5*time.Second, time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tg.CloseAll(ctx) // returns once every $disconnect has run
			ev, ran := fns.disconnected(id)
			require.Equal(t, tt.wantDisconnect != 0, ran, "$disconnect ran")
			if ran {
				assert.Equal(t, tt.wantDisconnect, ev.RequestContext.DisconnectStatusCode)
			}
		})
	}
}

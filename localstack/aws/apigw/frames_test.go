package apigw

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// blockUntilSecond is a $default function for which frame "first" waits
// until frame "second" has been invoked, or gives up after a second.
func blockUntilSecond() handler {
	second := make(chan struct{})
	var once sync.Once
	return func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		switch req.Body {
		case "first":
			select {
			case <-second:
				return reply("first done"), nil
			case <-time.After(time.Second):
				return reply("first gave up"), nil
			}
		case "second":
			once.Do(func() { close(second) })
			return reply("second done"), nil
		}
		return reply("?"), nil
	}
}

func TestFrames_OneConnectionsFramesRunConcurrently(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	fns.message = blockUntilSecond()
	tg := start(t, Options{}, fns)
	ws, _ := tg.dial(t, nil)
	send(t, ws, "first")
	send(t, ws, "second")
	got := []string{read(t, ws, 5*time.Second), read(t, ws, 5*time.Second)}
	assert.ElementsMatch(t, []string{"first done", "second done"}, got, "the second frame was invoked while the first was in flight")
}

func TestFrames_SerialFramesKeepsArrivalOrder(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	fns.message = blockUntilSecond()
	var inFlight, maxInFlight atomic.Int64
	blocking := fns.message
	fns.message = func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := maxInFlight.Load(); n > m && !maxInFlight.CompareAndSwap(m, n); m = maxInFlight.Load() {
		}
		if req.Body == "first" || req.Body == "second" {
			return blocking(ctx, req)
		}
		return reply(req.Body), nil
	}
	tg := start(t, Options{SerialFrames: true, FrameJitter: 5 * time.Millisecond}, fns)
	ws, _ := tg.dial(t, nil)
	send(t, ws, "first")
	send(t, ws, "second")
	assert.Equal(t, "first gave up", read(t, ws, 5*time.Second), "the second frame waits for the first")
	assert.Equal(t, "second done", read(t, ws, 5*time.Second))
	for i := range 20 {
		send(t, ws, strconv.Itoa(i))
	}
	for i := range 20 {
		assert.Equal(t, strconv.Itoa(i), read(t, ws, 5*time.Second))
	}
	assert.Equal(t, int64(1), maxInFlight.Load())
}

func TestFrames_FrameJitterReordersInvocations(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	tg := start(t, Options{FrameJitter: 50 * time.Millisecond}, fns)
	ws, _ := tg.dial(t, nil)
	const n = 20
	for i := range n {
		send(t, ws, strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return len(fns.of(fnMessage)) == n }, 5*time.Second, 5*time.Millisecond)
	var order []string
	for _, e := range fns.of(fnMessage) {
		order = append(order, e.req.Body)
	}
	sorted := make([]string, n)
	for i := range sorted {
		sorted[i] = strconv.Itoa(i)
	}
	assert.NotEqual(t, sorted, order, "with 50 ms of jitter, 20 frames are not invoked in arrival order (odds 1 in 20!)")
	assert.ElementsMatch(t, sorted, order, "every frame is invoked once")
}

func TestFrames_InFlightInvocationOutlivesTheConnection(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	release := make(chan struct{})
	var finished atomic.Bool
	fns.message = func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		<-release
		finished.Store(true)
		return reply("too late"), nil
	}
	tg := start(t, Options{}, fns)
	ws, id := tg.dial(t, nil)
	send(t, ws, "slow")
	require.Eventually(t, func() bool { return len(fns.of(fnMessage)) == 1 }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, ws.Close(websocket.StatusNormalClosure, "bye"))

	require.Eventually(t, func() bool { _, ok := fns.disconnected(id); return ok }, 5*time.Second, 5*time.Millisecond,
		"$disconnect runs while the frame is still in flight")
	assert.False(t, finished.Load())
	close(release)
	require.Eventually(t, finished.Load, 5*time.Second, 5*time.Millisecond, "the invocation completes")
	require.Eventually(t, func() bool { return tg.Stats().DroppedResponses.Load() == 1 }, 5*time.Second, 5*time.Millisecond,
		"its route response has nowhere to go")
}

func TestFrames_MaxFramesInFlightStopsReading(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	release := make(chan struct{}, 10)
	var inFlight atomic.Int64
	fns.message = func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return reply(req.Body), nil
	}
	tg := start(t, Options{MaxFramesInFlight: 2}, fns)
	ws, _ := tg.dial(t, nil)
	for i := range 3 {
		send(t, ws, strconv.Itoa(i))
	}
	require.Eventually(t, func() bool { return inFlight.Load() == 2 }, 5*time.Second, 5*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // the absence of a third cannot be polled for
	assert.Len(t, fns.of(fnMessage), 2, "the third frame waits for a slot")
	release <- struct{}{}
	require.Eventually(t, func() bool { return len(fns.of(fnMessage)) == 3 }, 5*time.Second, 5*time.Millisecond)
	release <- struct{}{}
	release <- struct{}{}
	got := []string{read(t, ws, 5*time.Second), read(t, ws, 5*time.Second), read(t, ws, 5*time.Second)}
	assert.ElementsMatch(t, []string{"0", "1", "2"}, got)
}

func TestFrames_RouteResponses(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	fns.message = func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		switch req.Body {
		case "fail":
			return events.APIGatewayProxyResponse{}, errors.New("boom")
		case "quiet":
			return events.APIGatewayProxyResponse{StatusCode: 200}, nil
		}
		return reply("echo " + req.Body), nil
	}
	tg := start(t, Options{SerialFrames: true}, fns)
	ws, id := tg.dial(t, nil)

	send(t, ws, "hello")
	assert.Equal(t, "echo hello", read(t, ws, 5*time.Second))

	send(t, ws, "fail")
	var failure map[string]string
	require.NoError(t, json.Unmarshal([]byte(read(t, ws, 5*time.Second)), &failure))
	assert.Equal(t, "Internal server error", failure["message"])
	assert.Equal(t, id, failure["connectionId"])
	assert.NotEmpty(t, failure["requestId"])

	send(t, ws, "quiet") // no body, no response: the next message is the echo
	send(t, ws, "again")
	assert.Equal(t, "echo again", read(t, ws, 5*time.Second))

	msgs := fns.of(fnMessage)
	require.NotEmpty(t, msgs)
	rc := msgs[0].req.RequestContext
	assert.Equal(t, "MESSAGE", rc.EventType)
	assert.Equal(t, "$default", rc.RouteKey)
	assert.Equal(t, id, rc.ConnectionID)
	assert.NotEmpty(t, rc.MessageID)
}

func TestFrames_ClientLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		write    func(ctx context.Context, ws *websocket.Conn) error
		wantCode websocket.StatusCode
	}{
		{name: "binary frame", wantCode: websocket.StatusUnsupportedData, write: func(ctx context.Context, ws *websocket.Conn) error {
			return ws.Write(ctx, websocket.MessageBinary, []byte("x"))
		}},
		{name: "invalid UTF-8 text frame", wantCode: websocket.StatusInvalidFramePayloadData, write: func(ctx context.Context, ws *websocket.Conn) error {
			return ws.Write(ctx, websocket.MessageText, []byte("{\"type\":\"ping\",\"id\":\"\xff\xfe\"}"))
		}},
		{name: "UTF-8 sequence cut off at the end of a text message", wantCode: websocket.StatusInvalidFramePayloadData, write: func(ctx context.Context, ws *websocket.Conn) error {
			return ws.Write(ctx, websocket.MessageText, []byte("caf\xc3"))
		}},
		{name: "frame over 32 KB", wantCode: websocket.StatusMessageTooBig, write: func(ctx context.Context, ws *websocket.Conn) error {
			return ws.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 32*1024+1)))
		}},
		{name: "message over 128 KB in 32 KB frames", wantCode: websocket.StatusMessageTooBig, write: func(ctx context.Context, ws *websocket.Conn) error {
			return writeFragmented(ctx, ws, 128*1024+1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fns := newFunctions()
			tg := start(t, Options{}, fns)
			ws, id := tg.dial(t, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tt.write(ctx, ws) // the server may close mid-message
			assert.Equal(t, tt.wantCode, closeStatus(t, ws, 5*time.Second))
			require.Eventually(t, func() bool { _, ok := fns.disconnected(id); return ok }, 5*time.Second, 5*time.Millisecond)
			assert.Empty(t, fns.of(fnMessage), "nothing routed")
		})
	}
}

func TestFrames_MessageOf128KBInFramesIsRouted(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	tg := start(t, Options{}, fns)
	ws, _ := tg.dial(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, writeFragmented(ctx, ws, 128*1024))
	require.Eventually(t, func() bool { return len(fns.of(fnMessage)) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.Len(t, fns.of(fnMessage)[0].req.Body, 128*1024)
}

// writeFragmented sends one text message of n bytes in frames of 32 KB.
func writeFragmented(ctx context.Context, ws *websocket.Conn, n int) error {
	w, err := ws.Writer(ctx, websocket.MessageText)
	if err != nil {
		return err
	}
	for n > 0 {
		k := min(n, 32*1024)
		if _, err := w.Write([]byte(strings.Repeat("y", k))); err != nil {
			return err
		}
		n -= k
	}
	return w.Close()
}

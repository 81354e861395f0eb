package apigw

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	mgmttypes "github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/smithy-go"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func (tg *testGateway) post(id, data string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tg.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte(data)})
	return err
}

func (tg *testGateway) get(id string) (*apigatewaymanagementapi.GetConnectionOutput, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tg.mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
}

func (tg *testGateway) delete(id string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := tg.mgmt.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)})
	return err
}

func isGone(err error) bool {
	var gone *mgmttypes.GoneException
	return errors.As(err, &gone)
}

func TestManagement_ConnectionIsGoneDuringConnectLag(t *testing.T) {
	t.Parallel()
	const lag = 2 * time.Second
	fns := newFunctions()
	fns.message = func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		return reply("routed " + req.Body), nil
	}
	var returned atomic.Int64 // when $connect returned, in Unix ns
	fns.connect = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		returned.Store(time.Now().UnixNano())
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
	}
	tg := start(t, Options{ConnectLag: lag}, fns)
	ws, id := tg.dial(t, nil)
	sinceConnect := func() time.Duration { return time.Since(time.Unix(0, returned.Load())) }

	send(t, ws, "early")
	assert.Equal(t, "routed early", read(t, ws, 5*time.Second), "frames are routed during the lag")
	postErr, getErr := tg.post(id, "too soon"), func() error { _, err := tg.get(id); return err }()
	deleteErr := tg.delete(id)
	require.Less(t, sinceConnect(), lag, "the machine is too slow for this test's window")
	assert.True(t, isGone(postErr), "POST: %v", postErr)
	assert.True(t, isGone(getErr), "GET: %v", getErr)
	assert.True(t, isGone(deleteErr), "DELETE: %v", deleteErr)
	assert.Equal(t, int64(3), tg.Stats().GoneDuringConnect.Load())
	assert.Equal(t, int64(1), tg.Stats().Gone.Load())

	require.Eventually(t, func() bool { return tg.post(id, "welcome") == nil }, 5*time.Second, 20*time.Millisecond)
	assert.GreaterOrEqual(t, sinceConnect(), lag, "usable only once the lag has passed")
	assert.Equal(t, "welcome", read(t, ws, 5*time.Second), "the too-soon post was never delivered")
}

func TestManagement_PostRacingConnectIsGone(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	var tg *testGateway
	var postErr, getErr error
	fns.connect = func(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		id := req.RequestContext.ConnectionID
		postErr = tg.post(id, "hello from $connect")
		_, getErr = tg.get(id)
		return events.APIGatewayProxyResponse{StatusCode: 200}, nil
	}
	tg = start(t, Options{}, fns) // no ConnectLag: still gone until $connect returns
	ws, id := tg.dial(t, nil)
	assert.True(t, isGone(postErr), "POST from $connect: %v", postErr)
	assert.True(t, isGone(getErr), "GET from $connect: %v", getErr)
	assert.Equal(t, int64(2), tg.Stats().GoneDuringConnect.Load())

	require.NoError(t, tg.post(id, "after"))
	assert.Equal(t, "after", read(t, ws, 5*time.Second))
}

func TestManagement_GetConnection(t *testing.T) {
	t.Parallel()
	tg := start(t, Options{}, newFunctions())
	h := http.Header{}
	h.Set("User-Agent", "apigw-test/2")
	before := time.Now().Add(-time.Second)
	_, id := tg.dial(t, &websocket.DialOptions{HTTPHeader: h})

	out, err := tg.get(id)
	require.NoError(t, err)
	require.NotNil(t, out.ConnectedAt)
	require.NotNil(t, out.LastActiveAt)
	require.NotNil(t, out.Identity)
	assert.WithinRange(t, *out.ConnectedAt, before, time.Now())
	assert.False(t, out.LastActiveAt.Before(out.ConnectedAt.Add(-time.Second)))
	assert.Equal(t, "127.0.0.1", aws.ToString(out.Identity.SourceIp))
	assert.Equal(t, "apigw-test/2", aws.ToString(out.Identity.UserAgent))
}

func TestManagement_DeleteClosesTheConnectionAfterQueuedPosts(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	tg := start(t, Options{}, fns)
	ws, id := tg.dial(t, nil)

	require.NoError(t, tg.post(id, "last words"))
	require.NoError(t, tg.delete(id))
	assert.Equal(t, "last words", read(t, ws, 5*time.Second))
	assert.Equal(t, websocket.StatusNormalClosure, closeStatus(t, ws, 5*time.Second))
	require.Eventually(t, func() bool { _, ok := fns.disconnected(id); return ok }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, tg.Count())
	assert.True(t, isGone(tg.post(id, "after")))
	assert.True(t, isGone(tg.delete(id)))
}

func TestManagement_UnknownConnectionIsGone(t *testing.T) {
	t.Parallel()
	tg := start(t, Options{}, newFunctions())
	const id = "Nope0000000000A="
	assert.True(t, isGone(tg.post(id, "x")))
	_, err := tg.get(id)
	assert.True(t, isGone(err))
	assert.True(t, isGone(tg.delete(id)))
	assert.Equal(t, int64(1), tg.Stats().Gone.Load())
	assert.Zero(t, tg.Stats().GoneDuringConnect.Load(), "never connecting is not connecting")
}

func TestManagement_PostPayloadLimit(t *testing.T) {
	t.Parallel()
	tg := start(t, Options{}, newFunctions())
	ws, id := tg.dial(t, nil)

	err := tg.post(id, strings.Repeat("x", 128*1024+1))
	var tooLarge *mgmttypes.PayloadTooLargeException
	assert.ErrorAs(t, err, &tooLarge, "over 128 KB")

	require.NoError(t, tg.post(id, strings.Repeat("x", 128*1024)))
	assert.Len(t, read(t, ws, 5*time.Second), 128*1024)
}

func TestManagement_LargePostReachesTheClientIn32KBFrames(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	tg := start(t, Options{}, fns)
	raw := dialRaw(t, tg)
	id := <-fns.accepted
	tg.waitRegistered(t, id)

	const size = 100 * 1024
	require.NoError(t, tg.post(id, strings.Repeat("z", size)))
	var total int
	for first := true; ; first = false {
		fin, opcode, n := raw.frame(t)
		if first {
			assert.Equal(t, byte(0x1), opcode, "a text message")
		} else {
			assert.Equal(t, byte(0x0), opcode, "continued")
		}
		assert.LessOrEqual(t, n, 32*1024)
		total += n
		if fin {
			break
		}
	}
	assert.Equal(t, size, total)
}

// rawClient is a WebSocket client that shows the frames the server sends.
type rawClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, tg *testGateway) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(tg.srv.URL, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, "GET /"+testStage+" HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	r := bufio.NewReader(conn)
	resp, err := http.ReadResponse(r, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return &rawClient{conn: conn, r: r}
}

// frame reads one unmasked server frame.
func (c *rawClient) frame(t *testing.T) (fin bool, opcode byte, n int) {
	t.Helper()
	var h [2]byte
	_, err := io.ReadFull(c.r, h[:])
	require.NoError(t, err)
	length := int64(h[1] & 0x7f)
	switch length {
	case 126:
		var b [2]byte
		_, err = io.ReadFull(c.r, b[:])
		length = int64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		_, err = io.ReadFull(c.r, b[:])
		length = int64(binary.BigEndian.Uint64(b[:]))
	}
	require.NoError(t, err)
	_, err = io.CopyN(io.Discard, c.r, length)
	require.NoError(t, err)
	return h[0]&0x80 != 0, h[0] & 0x0f, int(length)
}

func TestManagement_LastActiveAtFollowsClientFrames(t *testing.T) {
	t.Parallel()
	tg := start(t, Options{}, newFunctions())
	ws, id := tg.dial(t, nil)
	first, err := tg.get(id)
	require.NoError(t, err)
	require.NotNil(t, first.LastActiveAt)

	time.Sleep(10 * time.Millisecond) // past the first answer's millisecond
	send(t, ws, "activity")
	require.Eventually(t, func() bool {
		out, err := tg.get(id)
		return err == nil && out.LastActiveAt != nil && out.LastActiveAt.After(*first.LastActiveAt)
	}, 5*time.Second, 5*time.Millisecond)
}

func TestManagement_PostsKeepTheirFrameType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want websocket.MessageType
	}{
		{name: "UTF-8 as text", data: "héllo {\"json\":true}", want: websocket.MessageText},
		{name: "other bytes as binary", data: "\xff\xfe\x00\x01", want: websocket.MessageBinary},
	}
	tg := start(t, Options{}, newFunctions())
	ws, id := tg.dial(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, tg.post(id, tt.data))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			typ, data, err := ws.Read(ctx)
			require.NoError(t, err)
			assert.Equal(t, tt.want, typ)
			assert.Equal(t, []byte(tt.data), data, "byte for byte")
		})
	}
}

func TestManagement_FullSendQueueIsThrottled(t *testing.T) {
	t.Parallel()
	tg := start(t, Options{SendQueue: 1}, newFunctions())
	_, id := tg.dial(t, nil) // a client that never reads: the socket's buffers fill
	big := strings.Repeat("b", 128*1024)
	var err error
	for range 2000 {
		if err = tg.post(id, big); err != nil {
			break
		}
	}
	var throttled *mgmttypes.LimitExceededException
	require.ErrorAs(t, err, &throttled, "a client that reads nothing is throttled, not gone")
	assert.Equal(t, int64(1), tg.Stats().Throttled.Load())
	assert.Equal(t, 1, tg.Count(), "the connection stays open")
}

func TestManagement_InjectedFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		faults   Faults
		wantCode string // the error's code; "" for a post that succeeds
	}{
		{name: "throttled", faults: Faults{ThrottleRate: 1}, wantCode: "LimitExceededException"},
		{name: "failed", faults: Faults{ErrorRate: 1}, wantCode: "InternalServerErrorException"},
		{name: "slow", faults: Faults{Latency: 200 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tg := start(t, Options{}, newFunctions())
			ws, id := tg.dial(t, nil)
			tg.SetFaults(tt.faults)
			assert.Equal(t, tt.faults, tg.CurrentFaults())
			began := time.Now()
			err := tg.post(id, "faulty")
			took := time.Since(began)
			tg.SetFaults(Faults{})
			if tt.wantCode == "" {
				require.NoError(t, err)
				assert.GreaterOrEqual(t, took, tt.faults.Latency)
				assert.Equal(t, "faulty", read(t, ws, 5*time.Second))
				return
			}
			var apiErr smithy.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tt.wantCode, apiErr.ErrorCode())
			assert.Equal(t, int64(1), tg.Stats().Injected.Load())
			require.NoError(t, tg.post(id, "after"))
			assert.Equal(t, "after", read(t, ws, 5*time.Second), "the faulty post was not delivered")
		})
	}
}

func TestManagement_SkippedDisconnect(t *testing.T) {
	t.Parallel()
	fns := newFunctions()
	tg := start(t, Options{}, fns)
	tg.SetFaults(Faults{SkipDisconnectRate: 1})
	ws, id := tg.dial(t, nil)
	require.NoError(t, ws.Close(websocket.StatusNormalClosure, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tg.CloseAll(ctx) // returns once the closed connection's handling is done
	_, ran := fns.disconnected(id)
	assert.False(t, ran, "API Gateway invokes $disconnect on a best-effort basis")
	assert.Equal(t, int64(1), tg.Stats().SkippedDisconnects.Load())
	assert.True(t, isGone(tg.post(id, "after")))
}

func TestManagement_MalformedRequests(t *testing.T) {
	t.Parallel()
	tg := start(t, Options{}, newFunctions())
	_, id := tg.dial(t, nil)
	tests := []struct {
		name, method, path string
		want               int
	}{
		{name: "no id", method: http.MethodPost, path: "/" + testStage + "/@connections/", want: http.StatusNotFound},
		{name: "id with a slash", method: http.MethodGet, path: "/" + testStage + "/@connections/a%2Fb", want: http.StatusNotFound},
		{name: "other method", method: http.MethodPut, path: "/" + testStage + "/@connections/" + url.PathEscape(id), want: http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tg.srv.URL+tt.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, tt.want, resp.StatusCode)
		})
	}
	assert.Equal(t, 1, tg.Count(), "the connection is untouched")
}

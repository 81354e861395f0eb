package stack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	mgmttypes "github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/localstack/devtools/devcli"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
	"github.com/wsgate/wsgate/shared/topic"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

func token(t *testing.T, s *stack.Stack, g auth.Grant) string {
	t.Helper()
	tok, err := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(g)
	require.NoError(t, err)
	return tok
}

func busClient(s *stack.Stack) *eventbridge.Client {
	return eventbridge.New(eventbridge.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.AWSEndpoint),
		Credentials: s.Credentials(),
	})
}

func storeOf(s *stack.Stack) *store.Store {
	return store.New(dynamolocal.Client(s.DynamoDBEndpoint), s.Table)
}

func putEvent(t *testing.T, s *stack.Stack, detail string) {
	t.Helper()
	out, err := busClient(s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		EventBusName: aws.String(s.BusName), Source: aws.String("e2e"), DetailType: aws.String("test"), Detail: aws.String(detail),
	}}})
	require.NoError(t, err)
	require.Zero(t, out.FailedEntryCount)
}

func TestE2E_ConnectSubscribePublishReceive(t *testing.T) {
	s := stacktest.Start(t)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "alice", Topics: []string{"demo.>"}})})
	c.SendJSON(map[string]any{"type": "subscribe", "topic": "demo.*", "id": 1})
	sub := c.Expect("subscribed", 5*time.Second)
	assert.Equal(t, 1.0, sub["id"], "the route response carries the reply")

	// Warm the broadcast function once, then measure a publish.
	putEvent(t, s, `{"topic":"demo.warm","payload":{"n":0}}`)
	assert.JSONEq(t, `{"n":0}`, string(c.Next(10*time.Second)))

	var latencies []time.Duration
	for i := range 20 {
		start := time.Now()
		putEvent(t, s, fmt.Sprintf(`{"topic":"demo.hello","payload":{"hello":"world","i":%d}}`, i))
		got := c.Next(time.Second)
		latencies = append(latencies, time.Since(start))
		assert.JSONEq(t, fmt.Sprintf(`{"hello":"world","i":%d}`, i), string(got), "received within a second")
	}
	slices.Sort(latencies)
	t.Logf("publish-to-receive over %d events: p50 %s, p95 %s, max %s", len(latencies),
		latencies[len(latencies)/2].Round(time.Millisecond), latencies[len(latencies)*95/100].Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
}

func TestE2E_RefusedHandshakeIsSeenByTheClient(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.Env = map[string]string{config.EnvAuthMessage: "false"} })
	for name, q := range map[string]map[string]string{
		"no token":  nil,
		"bad token": {"token": "not-a-jwt"},
	} {
		t.Run(name, func(t *testing.T) {
			_, resp, err := stacktest.Dial(t, s.WebSocketURL, q, nil)
			require.Error(t, err)
			require.NotNil(t, resp)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		})
	}
	_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "bob", Topics: []string{"a.*"}}), "topic": "b.1"}, nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
}

func TestE2E_SubprotocolTokenIsEchoed(t *testing.T) {
	s := stacktest.Start(t)
	tok := token(t, s, auth.Grant{Sub: "carol"})
	c, _, err := stacktest.Dial(t, s.WebSocketURL, nil, &websocket.DialOptions{Subprotocols: []string{"wsgate", "bearer." + tok}})
	require.NoError(t, err)
	assert.Equal(t, "wsgate", c.WS.Subprotocol())
	c.SendJSON(map[string]string{"type": "ping"})
	c.Expect("pong", 5*time.Second)
}

func waitGone(t *testing.T, st *store.Store, id string) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, err := st.GetConnection(context.Background(), id)
		return err == store.ErrNotFound
	}, 10*time.Second, 50*time.Millisecond, "connection %s still stored", id)
}

// connectionID asks the gateway which id a client has, through the store:
// the only subscriber of its direct topic.
func connectionID(t *testing.T, st *store.Store, sub string) string {
	t.Helper()
	var id string
	require.Eventually(t, func() bool {
		subs, _, err := st.Subscribers(context.Background(), "direct.user."+sub, "", 10)
		if err != nil || len(subs) != 1 {
			return false
		}
		id = subs[0].ConnectionID
		return true
	}, 5*time.Second, 20*time.Millisecond)
	return id
}

func TestE2E_DropWithoutCloseFrameCleansTheStore(t *testing.T) {
	s := stacktest.Start(t)
	st := storeOf(s)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "dave", Topics: []string{"x.>"}})})
	c.SendJSON(map[string]string{"type": "subscribe", "topic": "x.*"})
	c.Expect("subscribed", 5*time.Second)
	id := connectionID(t, st, "dave")
	require.NoError(t, c.WS.CloseNow(), "TCP close, no close frame")
	waitGone(t, st, id)
	subs, err := st.ConnectionSubscriptions(context.Background(), id)
	require.NoError(t, err)
	assert.Empty(t, subs)
	fwd, _, err := st.Subscribers(context.Background(), "x.*", "", 10)
	require.NoError(t, err)
	assert.Empty(t, fwd)
}

func TestE2E_PostToGoneConnectionIs410AndTheSubscriberIsRemoved(t *testing.T) {
	s := stacktest.Start(t)
	st := storeOf(s)
	mgmt := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.AWSEndpoint + "/" + s.Stage),
		Credentials: s.Credentials(), RetryMaxAttempts: 1,
	})
	_, err := mgmt.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String("Nope0000000000A="), Data: []byte("x")})
	var gone *mgmttypes.GoneException
	assert.ErrorAs(t, err, &gone, "410 for an unknown id")

	// A subscriber whose $disconnect never ran: its records are still there.
	now := time.Now()
	ghost := store.Connection{ID: "Ghost000000000A=", Principal: auth.Principal{Identity: auth.Identity{Sub: "ghost", Type: "user"}, Topics: []string{">"}},
		ConnectedAt: now, ExpiresAt: now.Add(time.Hour), Limits: config.Limits{MaxSubscriptions: 10, MessagesPerSecond: 10, MaxMessageBytes: 1000, MaxConnectionsPerPrincipal: 10}}
	require.NoError(t, st.PutConnection(context.Background(), ghost, []store.NewSubscription{{Pattern: topic.MustPattern("news.today")}}))
	live := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "erin", Topics: []string{"news.>"}})})
	live.SendJSON(map[string]string{"type": "subscribe", "topic": "news.today"})
	live.Expect("subscribed", 5*time.Second)

	putEvent(t, s, `{"topic":"news.today","payload":{"headline":"x"}}`)
	assert.JSONEq(t, `{"headline":"x"}`, string(live.Next(10*time.Second)))
	waitGone(t, st, ghost.ID)
	subs, _, err := st.Subscribers(context.Background(), "news.today", "", 10)
	require.NoError(t, err)
	require.Len(t, subs, 1)
	assert.NotEqual(t, ghost.ID, subs[0].ConnectionID)
}

func TestE2E_OversizeClientMessageClosesWith1009(t *testing.T) {
	s := stacktest.Start(t)
	tok := token(t, s, auth.Grant{Sub: "frank"})
	frame := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": tok})
	frame.Send(`{"type":"ping","pad":"` + strings.Repeat("x", 33*1024) + `"}`)
	assert.Equal(t, websocket.StatusMessageTooBig, frame.CloseStatus(10*time.Second), "a frame over 32 KB")

	// Under the limits the same connection type works.
	ok := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": tok})
	ok.Send(`{"type":"ping","id":"small"}`)
	ok.Expect("pong", 5*time.Second)
}

func TestE2E_BinaryFrameClosesWith1003(t *testing.T) {
	s := stacktest.Start(t)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "gina"})})
	require.NoError(t, c.WS.Write(context.Background(), websocket.MessageBinary, []byte{1, 2, 3}))
	assert.Equal(t, websocket.StatusUnsupportedData, c.CloseStatus(10*time.Second))
}

func TestE2E_PanickingInvocationIsReportedAndTheNextWorks(t *testing.T) {
	dir := t.TempDir()
	panicky := filepath.Join(dir, "panicky", "bootstrap")
	require.NoError(t, stacktest.BuildPackage(panicky, "github.com/wsgate/wsgate/localstack/aws/stack/testdata/panicky"))
	s := stacktest.Start(t, func(o *stack.Options) {
		o.FunctionPaths = map[string]string{stack.FnMessage: panicky}
		o.Concurrency = 1
	})
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "hank"})})
	c.Send("panic")
	failed := c.NextJSON(10 * time.Second)
	assert.Equal(t, "Internal server error", failed["message"], "API Gateway's answer to a failed integration")
	c.Send("hello")
	assert.Equal(t, map[string]any{"type": "echo", "body": "hello"}, c.NextJSON(10*time.Second))
	st := s.Host.Stats(stack.FnMessage)
	assert.Equal(t, 1, st.Errors)
	assert.Equal(t, 2, st.ColdStarts, "the panicked process was replaced")
}

func TestE2E_IdleConnectionIsClosedAndCleaned(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.IdleTimeout = 1500 * time.Millisecond })
	st := storeOf(s)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "ivy"})})
	id := connectionID(t, st, "ivy")
	assert.Equal(t, websocket.StatusGoingAway, c.CloseStatus(10*time.Second))
	waitGone(t, st, id)
}

func TestE2E_AuthMessageModeWithDeadline(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.Env = map[string]string{config.EnvAuthDeadline: "2s"} })
	slow := stacktest.MustDial(t, s.WebSocketURL, nil)
	ok := stacktest.MustDial(t, s.WebSocketURL, nil)
	ok.SendJSON(map[string]string{"type": "auth", "token": token(t, s, auth.Grant{Sub: "jack"})})
	assert.Equal(t, true, ok.Expect("auth_response", 5*time.Second)["success"])
	late := slow.Expect("auth_response", 10*time.Second)
	assert.Equal(t, "auth_timeout", late["error"], "the delayed task closed it")
	assert.Equal(t, websocket.StatusNormalClosure, slow.CloseStatus(5*time.Second))
	ok.SendJSON(map[string]string{"type": "ping"})
	ok.Expect("pong", 5*time.Second)
}

func TestE2E_PutEventsValidationLikeAWS(t *testing.T) {
	s := stacktest.Start(t)
	entries := make([]ebtypes.PutEventsRequestEntry, 11)
	for i := range entries {
		entries[i] = ebtypes.PutEventsRequestEntry{EventBusName: aws.String(s.BusName), Source: aws.String("s"), DetailType: aws.String("d"), Detail: aws.String(`{"topic":"a"}`)}
	}
	_, err := busClient(s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: entries})
	require.Error(t, err, "more than 10 entries")
	out, err := busClient(s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{
		{EventBusName: aws.String(s.BusName), Source: aws.String("s"), DetailType: aws.String("d"), Detail: aws.String(`{"topic":"a","payload":1}`)},
		{EventBusName: aws.String(s.BusName), DetailType: aws.String("d"), Detail: aws.String(`{}`)},
		{EventBusName: aws.String(s.BusName), Source: aws.String("s"), DetailType: aws.String("d"), Detail: aws.String(`not json`)},
	}})
	require.NoError(t, err)
	assert.Equal(t, int32(2), out.FailedEntryCount)
	assert.NotEmpty(t, aws.ToString(out.Entries[0].EventId))
	assert.Equal(t, "InvalidArgument", aws.ToString(out.Entries[1].ErrorCode))
	assert.Equal(t, "MalformedDetail", aws.ToString(out.Entries[2].ErrorCode))
}

// The printed commands of `make dev` work: publish reaches listen.
func TestE2E_DevCLIPublishReachesListen(t *testing.T) {
	s := stacktest.Start(t)
	tok := token(t, s, auth.Grant{Sub: "dev", Topics: []string{">"}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- devcli.Listen(ctx, []string{"--url", s.WebSocketURL, "--token", tok, "--subscribe", "demo.>"}, devcli.Streams{Out: out, Err: io.Discard})
	}()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `"subscribed"`) }, 10*time.Second, 20*time.Millisecond)

	var pubOut bytes.Buffer
	require.NoError(t, devcli.Publish(context.Background(), []string{"--endpoint", s.AWSEndpoint, "--bus", s.BusName, "--topic", "demo.hello", "--payload", `{"hello":"world"}`}, devcli.Streams{Out: &pubOut, Err: io.Discard}))
	assert.Contains(t, pubOut.String(), "published demo.hello")
	require.Eventually(t, func() bool { return strings.Contains(out.String(), `{"hello":"world"}`) }, 10*time.Second, 20*time.Millisecond)
	cancel()
	<-done
}

func TestE2E_ConcurrentClientsAllReceive(t *testing.T) {
	s := stacktest.Start(t)
	var clients []*stacktest.Client
	for i := range 20 {
		c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: fmt.Sprintf("u%d", i), Topics: []string{"room.>"}})})
		c.SendJSON(map[string]string{"type": "subscribe", "topic": "room.1"})
		c.Expect("subscribed", 10*time.Second)
		clients = append(clients, c)
	}
	putEvent(t, s, `{"topic":"room.1","payload":{"say":"hi"}}`)
	for _, c := range clients {
		assert.JSONEq(t, `{"say":"hi"}`, string(c.Next(10*time.Second)))
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestE2E_ManagementAPIGetAndDeleteConnection(t *testing.T) {
	s := stacktest.Start(t)
	st := storeOf(s)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "kim"})})
	id := connectionID(t, st, "kim")
	mgmt := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.AWSEndpoint + "/" + s.Stage),
		Credentials: s.Credentials(), RetryMaxAttempts: 1,
	})
	// API Gateway registers a connection a moment after $connect returns:
	// until then @connections answers 410 for it.
	var info *apigatewaymanagementapi.GetConnectionOutput
	var err error
	require.Eventually(t, func() bool {
		info, err = mgmt.GetConnection(context.Background(), &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
		return err == nil
	}, 5*time.Second, 50*time.Millisecond, "registered after the connect lag: %v", err)
	assert.WithinDuration(t, time.Now(), aws.ToTime(info.ConnectedAt), time.Minute)
	assert.Equal(t, "127.0.0.1", aws.ToString(info.Identity.SourceIp))
	assert.NotNil(t, info.LastActiveAt)

	_, err = mgmt.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: []byte("before close")})
	require.NoError(t, err)
	_, err = mgmt.DeleteConnection(context.Background(), &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: aws.String(id)})
	require.NoError(t, err)
	assert.Equal(t, "before close", string(c.Next(5*time.Second)), "frames posted before the delete arrive first")
	assert.Equal(t, websocket.StatusNormalClosure, c.CloseStatus(5*time.Second))
	waitGone(t, st, id)
	_, err = mgmt.GetConnection(context.Background(), &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(id)})
	var gone *mgmttypes.GoneException
	assert.ErrorAs(t, err, &gone)
}

// A WebSocket node in its own process (here a goroutine running the same
// code) serves clients for the stack; posts for its connections reach it.
func TestE2E_WebSocketNodeServesClientsOfTheStack(t *testing.T) {
	s := stacktest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- devcli.Node(ctx, []string{"--stack", s.AWSEndpoint, "--prefix", "N7"}, devcli.Streams{Out: out, Err: io.Discard})
	}()
	defer func() { cancel(); <-done }()
	var node struct{ Websocket string }
	require.Eventually(t, func() bool { return json.Unmarshal([]byte(out.String()), &node) == nil && node.Websocket != "" }, 10*time.Second, 10*time.Millisecond)

	c := stacktest.MustDial(t, node.Websocket, map[string]string{"token": token(t, s, auth.Grant{Sub: "nina", Topics: []string{"n.>"}})})
	c.SendJSON(map[string]string{"type": "subscribe", "topic": "n.1"})
	c.Expect("subscribed", 10*time.Second)
	id := connectionID(t, storeOf(s), "nina")
	assert.True(t, strings.HasPrefix(id, "N7"), id)
	putEvent(t, s, `{"topic":"n.1","payload":{"via":"node"}}`)
	assert.JSONEq(t, `{"via":"node"}`, string(c.Next(10*time.Second)))
	require.NoError(t, c.WS.CloseNow())
	waitGone(t, storeOf(s), id)
}

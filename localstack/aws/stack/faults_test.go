package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	client "github.com/wsgate/wsgate/clients/go"
	"github.com/wsgate/wsgate/localstack/aws/apigw"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

// listener is a Go-client (clients/go) subscriber that records what it hands the
// application.
type listener struct {
	c          *client.Client
	mu         sync.Mutex
	seqs       map[string][]uint64
	ns         map[string][]int // the payloads' "n"
	subscribed chan struct{}
	once       sync.Once
}

// listen starts a client of sub subscribed to topics and waits until the
// gateway confirmed the subscription.
func listen(t *testing.T, s *stack.Stack, sub string, topics ...string) *listener {
	t.Helper()
	l := &listener{seqs: map[string][]uint64{}, ns: map[string][]int{}, subscribed: make(chan struct{})}
	tok := func(context.Context) (string, error) {
		return auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(auth.Grant{Sub: sub, Topics: []string{"fault.>"}})
	}
	c, err := client.New(client.Options{
		URL: s.WebSocketURL, Token: tok, Topics: topics,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, GapWait: 500 * time.Millisecond,
		OnEvent: func(e client.Event) {
			l.mu.Lock()
			l.seqs[e.Topic] = append(l.seqs[e.Topic], e.Seq)
			var p struct{ N int }
			_ = json.Unmarshal(e.Data, &p)
			l.ns[e.Topic] = append(l.ns[e.Topic], p.N)
			l.mu.Unlock()
		},
		OnReply: func(b []byte) {
			var r struct{ Type string }
			if json.Unmarshal(b, &r) == nil && r.Type == "subscribed" {
				l.once.Do(func() { close(l.subscribed) })
			}
		},
	})
	require.NoError(t, err)
	l.c = c
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-l.subscribed:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: not subscribed", sub)
	}
	return l
}

// payloads is the "n" of each event of topic handed over, in order.
func (l *listener) payloads(topic string) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ns[topic])
}

func (l *listener) got(topic string) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.seqs[topic])
}

// assertEachOnceInOrder checks that l got each of the payloads first..last
// of topic once, in increasing seq. Seqs may have holes: an attempt whose
// lease lapsed while it drew a number marks that number skipped, which
// clients resume across.
func assertEachOnceInOrder(t *testing.T, l *listener, topic string, first, last int, msgAndArgs ...any) {
	t.Helper()
	ns := l.payloads(topic)
	slices.Sort(ns)
	want := make([]int, 0, last-first+1)
	for n := first; n <= last; n++ {
		want = append(want, n)
	}
	assert.Equal(t, want, ns, msgAndArgs...)
	seqs := l.got(topic)
	assert.True(t, slices.IsSorted(seqs) && len(slices.Compact(slices.Clone(seqs))) == len(seqs), "seqs strictly increasing: %v", seqs)
}

// waitAll waits until every listener has n events of topic.
func waitAll(t *testing.T, ls []*listener, topic string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for _, l := range ls {
		for len(l.got(topic)) < n {
			if time.Now().After(deadline) {
				t.Fatalf("a client has %v of %s after %s, want %d events", l.got(topic), topic, within, n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func detail(topic string, n int) publish.Detail {
	return publish.Detail{Topic: topic, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
}

func TestFaults_PostToConnectionThrottleStormsAndServerErrorsAreRetried(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvHistoryDefault: "true"}
	})
	var ls []*listener
	for i := range 6 {
		ls = append(ls, listen(t, s, fmt.Sprint("u", i), "fault.storm"))
	}
	// Four posts in ten throttled, two failing with 500: a storm. Most
	// deliveries get through on a retry; the few that run out of attempts
	// the clients recover from the topic's history.
	s.SetFaults(stack.Faults{Faults: apigw.Faults{ThrottleRate: 0.4, ErrorRate: 0.2}})
	for i := range 10 {
		stacktest.PublishAndWait(t, s, detail("fault.storm", i+1))
	}
	s.SetFaults(stack.Faults{})
	// One event after the storm shows a client that lost the last ones
	// its gap.
	stacktest.PublishAndWait(t, s, detail("fault.storm", 11))

	waitAll(t, ls, "fault.storm", 11, 20*time.Second)
	time.Sleep(200 * time.Millisecond)
	for i, l := range ls {
		assertEachOnceInOrder(t, l, "fault.storm", 1, 11, "client %d: every event once, in order", i)
		assert.Zero(t, l.c.Stats().Gaps, "client %d: nothing lost", i)
	}
	st := s.Gateway.Stats()
	assert.Positive(t, st.Throttled.Load(), "429s were injected")
	assert.Greater(t, st.Injected.Load(), st.Throttled.Load(), "500s were injected")
}

func TestFaults_BroadcastKilledMidFanOutCompletesWithoutDuplicateSeq(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		// Buckets split past 20, ranges of about 20 (a few for 60
		// subscribers), each posting one at a time at 50 ms: a second per
		// range, time to kill the broadcast processes mid-way.
		o.Env = map[string]string{config.EnvFanoutPageSize: "20", config.EnvBucketSplitAt: "20", config.EnvFanoutWorkers: "1", config.EnvEventLease: "2s", config.EnvHistoryDefault: "true"}
		o.BroadcastConcurrency = 4
		o.FunctionTimeout = 4 * time.Second // the task queue's visibility timeout is twice this
		o.RetryScale = 0.005                // retries 300 ms and 600 ms later
	})
	var ls []*listener
	for i := range 60 {
		ls = append(ls, listen(t, s, fmt.Sprint("k", i), "fault.kill"))
	}
	s.SetFaults(stack.Faults{Faults: apigw.Faults{Latency: 50 * time.Millisecond}})

	_, err := stacktest.Publisher(s).Publish(context.Background(), detail("fault.kill", 1))
	require.NoError(t, err)
	delivered := func() int {
		n := 0
		for _, l := range ls {
			n += len(l.got("fault.kill"))
		}
		return n
	}
	require.Eventually(t, func() bool { return delivered() >= 10 }, 20*time.Second, 5*time.Millisecond)
	killed := s.Host.Crash(stack.FnBroadcast)
	require.Positive(t, killed, "broadcast processes were mid fan-out")
	require.Less(t, delivered(), 60, "killed before the fan-out ended")
	t.Logf("killed %d broadcast processes after %d of 60 deliveries", killed, delivered())

	waitAll(t, ls, "fault.kill", 1, 40*time.Second)
	s.SetFaults(stack.Faults{})
	stacktest.PublishAndWait(t, s, detail("fault.kill", 2))
	waitAll(t, ls, "fault.kill", 2, 10*time.Second)
	dups := 0
	for i, l := range ls {
		assert.Equal(t, []int{1, 2}, l.payloads("fault.kill"), "client %d: each event once, in order", i)
		// The redeliveries took the event over with its number and drew
		// none of their own.
		assert.Equal(t, []uint64{1, 2}, l.got("fault.kill"), "client %d: the first event keeps the number its first attempt drew", i)
		assert.Zero(t, l.c.Stats().Gaps, "client %d: nothing lost", i)
		dups += l.c.Stats().Duplicates
	}
	t.Logf("repeated on the wire and dropped by the clients: %d", dups)
}

func TestFaults_DynamoDBThrottlingIsRetriedThenRecovered(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.RetryScale = 0.005 }) // retries 300 ms and 600 ms later
	l := listen(t, s, "d", "fault.ddb")

	// Some throttling: the SDK's own retries absorb it.
	s.SetFaults(stack.Faults{DynamoDBThrottleRate: 0.3})
	for i := range 5 {
		stacktest.PublishAndWait(t, s, detail("fault.ddb", i))
	}
	assert.Positive(t, s.DynamoDBThrottled(), "requests were throttled")
	waitAll(t, []*listener{l}, "fault.ddb", 5, 10*time.Second)

	// Throttled throughout: the invocation fails cleanly once the SDK gives
	// up, and EventBridge's retry delivers once the table recovers.
	s.SetFaults(stack.Faults{DynamoDBThrottleRate: 1})
	retried := s.Bus.Stats().Retried.Load()
	_, err := stacktest.Publisher(s).Publish(context.Background(), detail("fault.ddb", 6))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Bus.Stats().Retried.Load() > retried }, 30*time.Second, 5*time.Millisecond, "the invocation failed")
	s.SetFaults(stack.Faults{})
	assert.Len(t, l.got("fault.ddb"), 5, "nothing delivered while the table refused")
	waitAll(t, []*listener{l}, "fault.ddb", 6, 20*time.Second)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, []int{0, 1, 2, 3, 4, 6}, l.payloads("fault.ddb"), "every event once, in order")
	seqs := l.got("fault.ddb")
	assert.True(t, slices.IsSorted(seqs) && len(slices.Compact(slices.Clone(seqs))) == len(seqs),
		"increasing numbers (an attempt that failed may have drawn one): %v", seqs)
	assert.Zero(t, s.Bus.Stats().DeadLettered.Load())
}

func TestFaults_MissedDisconnectIsRemovedAtTheFirst410AndNeverPostedToAgain(t *testing.T) {
	s := stacktest.Start(t)
	st := storeOf(s)
	ctx := context.Background()
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "gone", Topics: []string{"fault.>"}})})
	c.SendJSON(map[string]any{"type": "subscribe", "topic": "fault.gone"})
	c.Expect("subscribed", 10*time.Second)
	subs, _, err := st.Subscribers(ctx, "fault.gone", "", 0)
	require.NoError(t, err)
	require.Len(t, subs, 1)
	id := subs[0].ConnectionID

	// API Gateway drops the $disconnect of a client that vanishes.
	s.SetFaults(stack.Faults{Faults: apigw.Faults{SkipDisconnectRate: 1}})
	require.NoError(t, c.WS.CloseNow())
	require.Eventually(t, func() bool { return s.Gateway.Stats().SkippedDisconnects.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	s.SetFaults(stack.Faults{})
	rec, err := st.GetConnection(ctx, id)
	require.NoError(t, err, "the record outlives the connection")
	assert.WithinDuration(t, time.Now().Add(config.DefaultConnectionTTL), rec.ExpiresAt, time.Minute, "until its TTL")
	assert.WithinDuration(t, rec.ExpiresAt, subs[0].ExpiresAt, time.Second, "and so do its subscriptions")

	// A 410 within fanout.ConnectWindow of $connect may be API Gateway
	// still registering the connection, and is retried: let it age first.
	time.Sleep(time.Until(rec.ConnectedAt.Add(fanout.ConnectWindow)))
	gone := s.Gateway.Stats().Gone.Load()
	stacktest.PublishAndWait(t, s, detail("fault.gone", 1))
	assert.Equal(t, gone+1, s.Gateway.Stats().Gone.Load(), "one post, answered 410")
	_, err = st.GetConnection(ctx, id)
	assert.ErrorIs(t, err, store.ErrNotFound, "removed at the 410")
	subs, _, err = st.Subscribers(ctx, "fault.gone", "", 0)
	require.NoError(t, err)
	assert.Empty(t, subs)

	posts := s.Gateway.Stats().Posts.Load()
	stacktest.PublishAndWait(t, s, detail("fault.gone", 2))
	assert.Equal(t, posts, s.Gateway.Stats().Posts.Load(), "never posted to again")
}

func TestFaults_RecordPastItsTTLIsNeverDeliveredTo(t *testing.T) {
	s := stacktest.Start(t)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "old", Topics: []string{"fault.>"}})})
	c.SendJSON(map[string]any{"type": "subscribe", "topic": "fault.ttl"})
	c.Expect("subscribed", 10*time.Second)
	// Its $disconnect was lost long ago and the record's TTL has passed,
	// but DynamoDB has not deleted it yet (that can take days).
	st := storeOf(s)
	subs, _, err := st.Subscribers(context.Background(), "fault.ttl", "", 0)
	require.NoError(t, err)
	require.Len(t, subs, 1)
	expireConnection(t, s, subs[0].ConnectionID, "fault.ttl")

	posts := s.Gateway.Stats().Posts.Load()
	stacktest.PublishAndWait(t, s, detail("fault.ttl", 1))
	assert.Equal(t, posts, s.Gateway.Stats().Posts.Load(), "no post to an expired record")
	c.Quiet(200 * time.Millisecond)
}

func TestFaults_GatewayRestartedWhileClientsReconnectAndResume(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvHistoryDefault: "true"}
	})
	var ls []*listener
	for i := range 12 {
		ls = append(ls, listen(t, s, fmt.Sprint("r", i), "fault.restart"))
	}
	const total = 60
	published := make(chan error, 1)
	go func() {
		pub := stacktest.Publisher(s)
		for i := range total {
			if _, err := pub.Publish(context.Background(), detail("fault.restart", i)); err != nil {
				published <- err
				return
			}
			time.Sleep(40 * time.Millisecond)
		}
		published <- nil
	}()
	time.Sleep(600 * time.Millisecond)
	require.NoError(t, s.RestartWebSocket(800*time.Millisecond), "every connection cut, no $disconnect")
	require.NoError(t, <-published)

	waitAll(t, ls, "fault.restart", total, 30*time.Second)
	time.Sleep(300 * time.Millisecond)
	for i, l := range ls {
		assertEachOnceInOrder(t, l, "fault.restart", 0, total-1, "client %d: every event once, in order", i)
		assert.GreaterOrEqual(t, l.c.Stats().Connects, 2, "client %d reconnected", i)
	}
	// The cut connections' records go at their first 410.
	stacktest.PublishAndWait(t, s, detail("fault.restart", total))
	subs, _, err := storeOf(s).Subscribers(context.Background(), "fault.restart", "", 0)
	require.NoError(t, err)
	assert.Len(t, subs, len(ls), "only the live connections remain")
}

// expireConnection moves the TTL of a connection subscribed to topic
// into the past, on the items the store's layout documents.
func expireConnection(t *testing.T, s *stack.Stack, id, topic string) {
	t.Helper()
	db := dynamolocal.Client(s.DynamoDBEndpoint)
	past := strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)
	for _, k := range [][2]string{{"C#" + id, "#META"}, {"C#" + id, "S#" + topic}, {"P#" + topic, store.EntrySK(id)}} {
		_, err := db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
			TableName: aws.String(s.Table),
			Key: map[string]ddbtypes.AttributeValue{
				store.PartitionKey: &ddbtypes.AttributeValueMemberS{Value: k[0]},
				store.SortKey:      &ddbtypes.AttributeValueMemberS{Value: k[1]},
			},
			UpdateExpression:          aws.String("SET #ttl = :past"),
			ConditionExpression:       aws.String("attribute_exists(pk)"),
			ExpressionAttributeNames:  map[string]string{"#ttl": store.TTLAttribute},
			ExpressionAttributeValues: map[string]ddbtypes.AttributeValue{":past": &ddbtypes.AttributeValueMemberN{Value: past}},
		})
		require.NoError(t, err, "%s / %s", k[0], k[1])
	}
}

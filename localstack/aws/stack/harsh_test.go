package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/publish/publishtest"
	"github.com/wsgate/wsgate/shared/topic"
)

// These tests run on the stack as harsh as AWS (concurrent frames, connect
// lag, stale reads, transaction conflicts, signatures, AWS's retry
// delays), each on a defect that the kinder stack hid.

// A subscription made a moment before an event is published is found by
// its fan-out, however stale eventually consistent reads are.
func TestHarsh_SubscribeThenPublishAtOnceIsDelivered(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.ReadLag = 2 * time.Second })
	// An event first: any eventually consistent read its fan-out makes
	// gives the table its lagging replica.
	stacktest.PublishAndWait(t, s, publish.Detail{Topic: "fresh.warm", Payload: json.RawMessage(`{"n":0}`)})
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "ann", Topics: []string{"fresh.>"}})})
	c.SendJSON(map[string]any{"type": "subscribe", "topic": "fresh.*", "id": 1})
	c.Expect("subscribed", 5*time.Second)
	putEvent(t, s, `{"topic":"fresh.one","payload":{"n":1}}`)
	assert.JSONEq(t, `{"n":1}`, string(c.Next(10*time.Second)), "the new subscription was found")
}

// Frames of one connection run at once on API Gateway and meet each other
// in the store: every subscribe still takes effect, whole, and is answered.
func TestHarsh_ConcurrentSubscribeFramesAllTakeEffect(t *testing.T) {
	s := stacktest.Start(t)
	st := storeOf(s)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "bo", Topics: []string{"many.>"}})})
	id := connectionID(t, st, "bo")
	const n = 12
	for i := range n {
		c.SendJSON(map[string]any{"type": "subscribe", "topic": fmt.Sprintf("many.t%d", i), "id": i})
	}
	answered := map[float64]string{}
	for replies := 0; replies < n; replies++ {
		m := c.NextJSON(20 * time.Second)
		require.NotNil(t, m, "every subscribe is answered")
		typ, _ := m["type"].(string)
		if typ == "error" {
			typ += ":" + fmt.Sprint(m["code"])
		}
		id, ok := m["id"].(float64)
		if !assert.True(t, ok, "a reply without its command's id: %v", m) {
			continue
		}
		answered[id] = typ
	}
	for i := range n {
		assert.Equal(t, "subscribed", answered[float64(i)], "subscribe %d", i)
	}
	subs, err := st.ConnectionSubscriptions(context.Background(), id)
	require.NoError(t, err)
	assert.Len(t, subs, n+1, "each subscription whole, plus the direct topic")
	conn, err := st.GetConnection(context.Background(), id)
	require.NoError(t, err)
	assert.Equal(t, n+1, conn.Subscriptions, "the count agrees with the entries")
	for i := range n {
		fwd, _, err := st.Subscribers(context.Background(), fmt.Sprintf("many.t%d", i), "", 10)
		require.NoError(t, err)
		assert.Len(t, fwd, 1, "many.t%d indexed for fan-out", i)
	}
}

// An event posted to a connection API Gateway is still registering (410
// for a moment after $connect) reaches it, and the connection is kept.
func TestHarsh_PostDuringConnectLagIsRetriedNotTakenAsGone(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.ConnectLag = 2 * time.Second })
	st := storeOf(s)
	// The broadcast function warm, so the post comes within the lag.
	stacktest.PublishAndWait(t, s, publish.Detail{Topic: "lag.warm", Payload: json.RawMessage(`{"n":0}`)})
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "cy", Topics: []string{"lag.>"}})})
	c.SendJSON(map[string]any{"type": "subscribe", "topic": "lag.t", "id": 1})
	c.Expect("subscribed", 5*time.Second)
	id := connectionID(t, st, "cy")
	putEvent(t, s, `{"topic":"lag.t","payload":{"n":1}}`)
	assert.JSONEq(t, `{"n":1}`, string(c.Next(15*time.Second)), "delivered once registered")
	assert.Positive(t, s.Gateway.Stats().GoneDuringConnect.Load(), "the first post met the lag")
	_, err := st.GetConnection(context.Background(), id)
	require.NoError(t, err, "the connection was not removed")
	fwd, _, err := st.Subscribers(context.Background(), "lag.t", "", 10)
	require.NoError(t, err)
	assert.Len(t, fwd, 1)
}

// Events carrying state on one hot topic, published at once, are all
// delivered promptly: none waits out Lambda's minute-long retry after a
// transaction conflict, and the stored state is the last one's.
func TestHarsh_ParallelStateEventsOnOneTopicAllGoThrough(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.RetryScale = 1 }) // AWS's 1 and 2 minutes
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "di", Topics: []string{"hot.>"}})})
	c.SendJSON(map[string]any{"type": "subscribe", "topic": "hot.state", "id": 1})
	c.Expect("subscribed", 5*time.Second)
	const n = 20
	var details []publish.Detail
	for i := range n {
		details = append(details, publish.Detail{Topic: "hot.state", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)), State: []json.RawMessage{json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}})
	}
	start := time.Now()
	_, err := s.Publisher("e2e").Publish(context.Background(), details...)
	require.NoError(t, err)
	for range n {
		require.NotNil(t, c.Next(20*time.Second), "all delivered well before a Lambda retry (1 minute)")
	}
	t.Logf("%d state events on one topic delivered in %s", n, time.Since(start).Round(time.Millisecond))
	st, err := storeOf(s).GetState(context.Background(), topic.MustPattern("hot.state"))
	require.NoError(t, err)
	assert.Equal(t, uint64(n), st.Seq, "the state is the last-numbered event's")
}

// A large event to an audience in many shards fits SQS's limits: the
// detail is stored once and each shard names it.
func TestHarsh_LargeEventInManyShardsIsDelivered(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvFanoutPageSize: "1", config.EnvBucketSplitAt: "1"}
	})
	const n = 12
	clients := make([]*stacktest.Client, n)
	for i := range clients {
		clients[i] = stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: fmt.Sprintf("s%d", i), Topics: []string{"big.>"}})})
		clients[i].SendJSON(map[string]any{"type": "subscribe", "topic": "big.one"})
		clients[i].Expect("subscribed", 5*time.Second)
	}
	blob := strings.Repeat("y", 120_000) // ten range tasks carrying it would be 1.2 MB, over a 1 MiB batch
	putEvent(t, s, `{"topic":"big.one","payload":{"blob":"`+blob+`"}}`)
	for i, c := range clients {
		got := c.Next(30 * time.Second)
		require.NotNil(t, got, "client %d", i)
		assert.Contains(t, string(got), blob)
	}
}

// The largest event the gateway accepts, published with the Go helper,
// with state and history, reaches every client of an audience in several
// shards, and its state and history are stored; one byte more is refused
// by the helper before anything is sent.
func TestHarsh_EventAtTheCapReachesEveryShardWithStateAndHistory(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvFanoutPageSize: "1", config.EnvBucketSplitAt: "1"}
	})
	const n = 3
	clients := make([]*stacktest.Client, n)
	for i := range clients {
		clients[i] = stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: fmt.Sprintf("s%d", i), Topics: []string{"big.>"}})})
		clients[i].SendJSON(map[string]any{"type": "subscribe", "topic": "big.cap"})
		clients[i].Expect("subscribed", 5*time.Second)
	}
	d := publishtest.DetailOfSize("big.cap", publish.MaxDetailBytes)
	stacktest.PublishAndWait(t, s, d)
	for i, c := range clients {
		got := c.Next(30 * time.Second)
		require.NotNil(t, got, "client %d", i)
		assert.JSONEq(t, string(d.Payload), string(got))
	}
	ctx := context.Background()
	st, err := storeOf(s).GetState(ctx, topic.MustPattern("big.cap"))
	require.NoError(t, err)
	assert.Len(t, st.Frames, len(d.State))
	hist, err := storeOf(s).History(ctx, topic.MustPattern("big.cap"), 0, 10)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	assert.Equal(t, []byte(d.Payload), hist[0].Payload)

	_, err = stacktest.Publisher(s).Publish(ctx, publishtest.DetailOfSize("big.cap", publish.MaxDetailBytes+1))
	require.ErrorIs(t, err, publish.ErrTooLarge)
	assert.Contains(t, err.Error(), "the gateway takes at most")
}

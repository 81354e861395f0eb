package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/apigw"
	"github.com/wsgate/wsgate/localstack/aws/sqslocal"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// shardRetryStack runs one broadcast instance, so a queued shard starts
// only after the coordinator (slowed by post latency) has finished and the
// one poller receives the next task only once the last one is over, and
// eight enveloped subscribers of topic spread over buckets (a bucket
// splits past two), so that an event is cut into several hash ranges of
// about two. The task queue's visibility timeout is twice timeout.
func shardRetryStack(t *testing.T, topic string, timeout time.Duration) (*stack.Stack, []*stacktest.Client) {
	t.Helper()
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvFanoutPageSize: "2", config.EnvBucketSplitAt: "2", config.EnvFanoutWorkers: "1", config.EnvEventLease: "1s", config.EnvHistoryDefault: "true"}
		o.BroadcastConcurrency = 1
		o.FunctionTimeout = timeout
	})
	var clients []*stacktest.Client
	for i := range 8 {
		c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1",
			"token": token(t, s, auth.Grant{Sub: fmt.Sprintf("r%d", i), Topics: []string{"retry.>"}})})
		c.SendJSON(map[string]any{"type": "subscribe", "topic": topic})
		c.Expect("subscribed", 10*time.Second)
		clients = append(clients, c)
	}
	s.SetFaults(stack.Faults{Faults: apigw.Faults{Latency: 300 * time.Millisecond}})
	return s, clients
}

// publishHoldingAQueuedShard publishes one event and, as soon as its
// coordinator has cut it into ranges, makes a live attempt hold the first
// queued range that has subscribers (connection ids, and so the ranges,
// are random), so that its first delivery waits the lease out and fails;
// once that attempt is over (its retry is scheduled) it returns the
// holder's release and how many subscribers the held range has.
func publishHoldingAQueuedShard(t *testing.T, s *stack.Stack, d publish.Detail) (release func(), held int) {
	t.Helper()
	ids, err := stacktest.Publisher(s).Publish(context.Background(), d)
	require.NoError(t, err)
	st, ctx := storeOf(s), context.Background()
	var rec store.EventRecord
	require.Eventually(t, func() bool {
		rec, _, err = st.Event(ctx, ids[0])
		return err == nil && rec.Cut > 0
	}, 10*time.Second, 5*time.Millisecond, "the event is cut into ranges")
	tp := topic.MustPattern(d.Topic)
	layout, err := st.PatternLayout(ctx, tp)
	require.NoError(t, err)
	shard := 0
	for r := 1; r < 1<<rec.Cut && shard == 0; r++ {
		subs, err := st.RangeSubscribers(ctx, d.Topic, layout.Levels, store.Range{K: rec.Cut, R: r}, 0)
		require.NoError(t, err)
		if len(subs) > 0 {
			shard, held = 1<<rec.Cut+r, len(subs)
		}
	}
	require.Positive(t, shard, "a queued range with subscribers")
	require.NoError(t, st.PutShard(ctx, ids[0], shard, "live-worker", time.Minute, store.ShardProgress{}))
	require.Eventually(t, func() bool { return queueStats(t, s).VisibilityChanged >= 1 }, 20*time.Second, 10*time.Millisecond,
		"the held range's attempt is over")
	return func() {
		require.NoError(t, st.PutShard(ctx, ids[0], shard, "live-worker", -time.Second, store.ShardProgress{}))
	}, held
}

func queueStats(t *testing.T, s *stack.Stack) sqslocal.QueueStats {
	t.Helper()
	st, err := s.SQS.Stats(s.QueueURL)
	require.NoError(t, err)
	return st
}

// seqs reads a client's events until then and returns their numbers in order.
func seqs(t *testing.T, c *stacktest.Client, then time.Time) []float64 {
	t.Helper()
	var out []float64
	for {
		m, err := c.Read(time.Until(then))
		if err != nil {
			return out
		}
		var ev struct {
			Type string
			Seq  float64
		}
		require.NoError(t, json.Unmarshal(m.Data, &ev), string(m.Data))
		if ev.Type == "event" {
			out = append(out, ev.Seq)
		}
	}
}

// A fan-out shard whose delivery fails comes back within seconds, not
// after the task queue's visibility timeout (20 s here, 6 minutes on
// AWS), and no other shard's message is received again.
func TestShardRetry_FailedShardIsRetriedWithinSecondsAndAlone(t *testing.T) {
	s, clients := shardRetryStack(t, "retry.soon", 10*time.Second)
	release, _ := publishHoldingAQueuedShard(t, s, detail("retry.soon", 1))
	released := time.Now()
	release()
	for i, c := range clients {
		assert.Equal(t, []float64{1}, seqs(t, c, released.Add(5*time.Second)), "client %d: the event, once, within seconds", i)
	}
	st := queueStats(t, s)
	assert.Equal(t, int64(1), st.Redelivered, "only the failed shard was received again")
	assert.Equal(t, int64(1), st.VisibilityChanged, "on its receipt, sooner than the queue's timeout")
	assert.Zero(t, st.DeadLettered)
}

// A later event published while a shard waits for its retry reaches every
// subscriber, and the retried shard then never delivers the older event
// after it; its subscribers' clients resume the hole.
func TestShardRetry_RetriedShardNeverDeliversAnOlderEventAfterANewerOne(t *testing.T) {
	s, clients := shardRetryStack(t, "retry.order", 5*time.Second)
	release, want := publishHoldingAQueuedShard(t, s, detail("retry.order", 1))
	time.Sleep(1100 * time.Millisecond) // more than a second after the first: the promise covers the pair
	stacktest.PublishAndWait(t, s, detail("retry.order", 2))
	release()
	// Read past the queue's 10 s visibility timeout from the first receive.
	until := time.Now().Add(9 * time.Second)
	held := 0
	for i, c := range clients {
		got := seqs(t, c, until)
		if len(got) == 1 {
			held++
		}
		assert.Contains(t, [][]float64{{1, 2}, {2}}, got, "client %d: in order, the older one never after the newer", i)
	}
	assert.Equal(t, want, held, "the held range's subscribers got the newer event only")
}

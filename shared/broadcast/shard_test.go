package broadcast_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// audienceOf connects n subscribers of topic (ids s00..), some enveloped,
// some trimming the payload, so the shards carry several frame variants.
func audienceOf(t *testing.T, h *gatewaytest.Harness, n int, topic string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("s%02d", i)
		q := map[string]string{}
		if i%3 == 0 {
			q["envelope"] = "1"
		}
		h.MustConnect(id, h.Token(auth.Grant{Sub: id, Topics: []string{"room.>"}}), q)
		filters := ""
		if i%4 == 0 {
			filters = `,"filters":{"metrics":["a"]}`
		}
		h.Send(id, `{"type":"subscribe","topic":"`+topic+`"`+filters+`}`)
		ids = append(ids, id)
	}
	h.Tasks.Take() // the token-expiry checks of the connections
	return ids
}

func shardTasks(t *testing.T, h *gatewaytest.Harness) []queue.Task {
	t.Helper()
	tasks, _ := h.Tasks.Take()
	for _, task := range tasks {
		require.Equal(t, queue.KindShard, task.Kind)
		require.NotNil(t, task.Range, "a shard is a hash range")
		assert.Len(t, tasks, 1<<task.Range.K-1, "one range here, the others queued")
	}
	return tasks
}

// sharded makes a harness whose small audiences spread over several
// buckets (a bucket splits past 2 subscribers, counted exactly) and
// events over several ranges (a page of 2).
func sharded(t *testing.T, opts ...func(*config.Config)) *gatewaytest.Harness {
	return gatewaytest.New(t, append([]func(*config.Config){func(c *config.Config) {
		c.FanoutPageSize, c.BucketSplitAt = 2, 2
	}}, opts...)...)
}

// inRange are the ids whose connection's hash is in task's range.
func inRange(task queue.Task, ids []string) []string {
	var out []string
	for _, id := range ids {
		if task.Range.K == 0 || int(store.Hash(id)>>(64-task.Range.K)) == task.Range.R {
			out = append(out, id)
		}
	}
	return out
}

// withSubscribers picks the tasks whose range holds some of ids.
func withSubscribers(tasks []queue.Task, ids []string) []queue.Task {
	var out []queue.Task
	for _, task := range tasks {
		if len(inRange(task, ids)) > 0 {
			out = append(out, task)
		}
	}
	return out
}

// hashes are the connections' hashes as a shard records them.
func hashes(ids ...string) []byte {
	var out []byte
	for _, id := range ids {
		out = binary.BigEndian.AppendUint64(out, store.Hash(id))
	}
	return out
}

func runTasks(t *testing.T, h *gatewaytest.Harness, tasks []queue.Task) {
	t.Helper()
	var recs []lambdaevents.SQSMessage
	for i, task := range tasks {
		b, err := json.Marshal(task)
		require.NoError(t, err)
		recs = append(recs, lambdaevents.SQSMessage{MessageId: fmt.Sprint(i), Body: string(b)})
	}
	resp := h.Broadcast.HandleTasks(context.Background(), lambdaevents.SQSEvent{Records: recs})
	require.Empty(t, resp.BatchItemFailures)
}

const shardedEvent = `{"topic":"room.1","payload":{"m":{"a":1,"b":2}},"attributes":{"metrics":["a","b"]},"project":{"metrics":"m"}}`

func TestShards_EverySubscriberExactlyOnceAcrossShards(t *testing.T) {
	h := sharded(t)
	ids := audienceOf(t, h, 10, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := shardTasks(t, h)
	require.NotEmpty(t, tasks, "10 subscribers over several buckets: several ranges")
	runTasks(t, h, tasks)
	for i, id := range ids {
		got := h.Received(id)
		require.Len(t, got, 1, "%s exactly once", id)
		switch {
		case i%3 == 0:
			assert.Contains(t, got[0], `"type":"event"`, "%s asked for the envelope", id)
		default:
			assert.NotContains(t, got[0], `"type":"event"`)
		}
		if i%4 == 0 {
			assert.Contains(t, got[0], `"m":{"a":1}`, "%s trims the payload", id)
		} else {
			assert.Contains(t, got[0], `"a":1,"b":2`)
		}
	}
}

func TestShards_RetriedShardDeliversNoDuplicates(t *testing.T) {
	h := sharded(t)
	ids := audienceOf(t, h, 8, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := shardTasks(t, h)
	require.NotEmpty(t, tasks)
	runTasks(t, h, tasks)
	runTasks(t, h, tasks) // SQS delivers the shards again, e.g. after a lost delete
	assert.Equal(t, float64(len(tasks)), h.Metrics.Sum("ShardsSkipped"))
	for _, id := range ids {
		assert.Len(t, h.Received(id), 1, "%s exactly once", id)
	}

	// The coordinator's event redelivered after it queued the shards: done.
	require.NoError(t, h.Publish("big", shardedEvent))
	assert.Empty(t, shardTasks(t, h))
	for _, id := range ids {
		assert.Len(t, h.Received(id), 1)
	}
}

func TestShards_ResumeSkipsWhatADeadWorkerDelivered(t *testing.T) {
	h := sharded(t)
	ids := audienceOf(t, h, 12, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := withSubscribers(shardTasks(t, h), ids)
	var task queue.Task
	for _, tk := range tasks {
		if len(inRange(tk, ids)) >= 3 {
			task = tk
		}
	}
	require.NotNil(t, task.Range, "a range of three subscribers or more")
	conns := inRange(task, ids)
	// A worker died after delivering the range's first two connections
	// and checkpointing them.
	st := h.Store
	require.NoError(t, st.PutShard(context.Background(), task.EventID, task.Shard, "dead-worker", -time.Second, store.ShardProgress{Delivered: hashes(conns[:2]...)}))
	runTasks(t, h, []queue.Task{task})
	for i, id := range conns {
		want := 1
		if i < 2 {
			want = 0 // the dead worker's deliveries are not repeated
		}
		assert.Len(t, h.Received(id), want, id)
	}
	assert.Equal(t, 2.0, h.Metrics.Last("ResumedDeliveries"))
}

// A range retried after subscribers joined and left re-delivers to
// nobody: its record names the connections delivered, not positions in
// an audience that has changed since.
func TestShards_RetriedRangeAfterMembershipChangeRedeliversToNobody(t *testing.T) {
	h := sharded(t)
	ids := audienceOf(t, h, 12, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	var task queue.Task
	for _, tk := range shardTasks(t, h) {
		if len(inRange(tk, ids)) >= 2 {
			task = tk
		}
	}
	require.NotNil(t, task.Range)
	conns := inRange(task, ids)
	// A worker delivered the whole range but died before it recorded the
	// range done (the harness saw no posts: a post would be a duplicate).
	require.NoError(t, h.Store.PutShard(context.Background(), task.EventID, task.Shard, "dead-worker", -time.Second, store.ShardProgress{Delivered: hashes(conns...)}))
	// Meanwhile the first subscriber of the range left, and others joined,
	// some of them in the range (they sort anywhere among the others).
	h.Send(conns[0], `{"type":"unsubscribe","topic":"room.1"}`)
	var joined []string
	for i := 0; len(inRange(task, joined)) < 2; i++ {
		id := fmt.Sprintf("j%02d", i)
		h.MustConnect(id, h.Token(auth.Grant{Sub: id, Topics: []string{"room.>"}}), nil)
		h.Send(id, `{"type":"subscribe","topic":"room.1"}`)
		joined = append(joined, id)
	}
	h.Tasks.Take()
	runTasks(t, h, []queue.Task{task})
	for _, id := range conns {
		assert.Empty(t, h.Received(id), "%s: delivered before, not again", id)
	}
	assert.Equal(t, float64(len(conns)-1), h.Metrics.Last("ResumedDeliveries"), "everyone still subscribed was skipped")
}

func TestShards_AShardALiveWorkerHoldsIsNotDeliveredTwice(t *testing.T) {
	h := sharded(t, func(c *config.Config) { c.EventLease = time.Second })
	ids := audienceOf(t, h, 8, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := withSubscribers(shardTasks(t, h), ids)
	require.NotEmpty(t, tasks)
	tasks = tasks[:1]
	task := tasks[0]
	conns := inRange(task, ids)
	// SQS handed the same task to a second worker while the first, alive,
	// holds the shard: the second waits out the claim, then gives up.
	ctx := context.Background()
	require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", time.Minute, store.ShardProgress{}))
	b, err := json.Marshal(task)
	require.NoError(t, err)
	start := time.Now()
	resp := h.Broadcast.HandleTasks(ctx, lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: "m1", Body: string(b)}}})
	assert.Len(t, resp.BatchItemFailures, 1, "the task goes back to the queue")
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "it waited for the holder's lease")
	for _, id := range conns {
		assert.Empty(t, h.Received(id), "%s: nothing sent while the shard is held", id)
	}

	// The holder finished: the redelivered task finds the shard done.
	require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", time.Minute, store.ShardProgress{Done: true}))
	runTasks(t, h, tasks)
	for _, id := range conns {
		assert.Empty(t, h.Received(id))
	}
	assert.Equal(t, 1.0, h.Metrics.Last("ShardsSkipped"))
}

// A large detail is stored once and the shards name it, so every shard
// task is small whatever the event's size; each shard still delivers the
// whole payload.
func TestShards_LargeDetailIsStoredOnceAndReferenced(t *testing.T) {
	h := sharded(t)
	ids := audienceOf(t, h, 8, "room.big")
	blob := strings.Repeat("x", 100_000)
	require.NoError(t, h.Publish("huge", `{"topic":"room.big","payload":{"blob":"`+blob+`"}}`))
	tasks := shardTasks(t, h)
	require.NotEmpty(t, tasks)
	for _, task := range tasks {
		assert.Empty(t, task.Detail)
		assert.Equal(t, "huge", task.DetailRef)
		b, err := json.Marshal(task)
		require.NoError(t, err)
		assert.Less(t, len(b), 4096, "the task carries a reference, not the 100 KB detail")
	}
	runTasks(t, h, tasks)
	for _, id := range ids {
		got := h.Received(id)
		require.Len(t, got, 1, id)
		assert.Contains(t, got[0], blob)
	}

	// A small detail still travels in the task: no extra write.
	require.NoError(t, h.Publish("small", `{"topic":"room.big","payload":{"n":1}}`))
	for _, task := range shardTasks(t, h) {
		assert.NotEmpty(t, task.Detail)
		assert.Empty(t, task.DetailRef)
	}
}

// 5,000 subscribers with a split at 50: the topic's levels grow, the
// event is cut into many ranges, and every subscriber gets it exactly
// once (the store's test shows each range reads only its own keys).
func TestShards_FiveThousandSubscribersOverManyRangesExactlyOnce(t *testing.T) {
	const n = 5000
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize, c.BucketSplitAt = 100, 50 })
	ctx := context.Background()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				id := fmt.Sprintf("c%04d", i)
				c := store.Connection{
					ID: id, Principal: auth.Principal{Identity: auth.Identity{Sub: id, Type: "user"}, Topics: []string{">"}},
					ConnectedAt: h.Now, ExpiresAt: h.Now.Add(time.Hour), Limits: h.Cfg.Limits,
				}
				assert.NoError(t, h.Store.PutConnection(ctx, c, []store.NewSubscription{{Pattern: topic.MustPattern("room.1")}}))
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()

	require.NoError(t, h.Publish("big", `{"topic":"room.1","payload":{"n":1}}`))
	tasks := shardTasks(t, h)
	require.GreaterOrEqual(t, len(tasks), 15, "many ranges")
	runTasks(t, h, tasks)
	for i := range n {
		id := fmt.Sprintf("c%04d", i)
		require.Len(t, h.Received(id), 1, "%s exactly once", id)
	}
}

// A connection subscribed to a topic and to a wildcard matching it gets
// an event cut into ranges once, with its filters merged, and an audience
// still restricts it.
func TestShards_OverlappingPatternsOnOneConnectionDeliverOnce(t *testing.T) {
	h := sharded(t)
	var ids []string
	for i := range 10 {
		id := fmt.Sprintf("s%02d", i)
		h.MustConnect(id, h.Token(auth.Grant{Sub: id, Topics: []string{"room.>"}}), nil)
		h.Send(id, `{"type":"subscribe","topic":"room.1"}`)
		if i%2 == 0 {
			h.Send(id, `{"type":"subscribe","topic":"room.*","filters":{"metrics":["z"]}}`)
		}
		ids = append(ids, id)
	}
	h.Tasks.Take()
	require.NoError(t, h.Publish("e1", `{"topic":"room.1","payload":{"n":1},"attributes":{"metrics":["a"]}}`))
	runTasks(t, h, shardTasks(t, h))
	for _, id := range ids {
		assert.Len(t, h.Received(id), 1, "%s once: one of its subscriptions lets it through", id)
	}
	require.NoError(t, h.Publish("e2", `{"topic":"room.1","payload":{"n":2},"audience":{"subs":["s03","s04"]}}`))
	runTasks(t, h, shardTasks(t, h))
	for _, id := range ids {
		want := 1
		if id == "s03" || id == "s04" {
			want = 2
		}
		assert.Len(t, h.Received(id), want, "%s: the audience applies", id)
	}
}

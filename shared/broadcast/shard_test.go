package broadcast_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
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
	}
	return tasks
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
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 3 })
	ids := audienceOf(t, h, 10, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := shardTasks(t, h)
	assert.Len(t, tasks, 3, "10 subscribers in shards of 3: the first delivered inline, three queued")
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
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 4 })
	ids := audienceOf(t, h, 8, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := shardTasks(t, h)
	require.Len(t, tasks, 1)
	runTasks(t, h, tasks)
	runTasks(t, h, tasks) // SQS delivers the shard again, e.g. after a lost delete
	assert.Equal(t, 1.0, h.Metrics.Last("ShardsSkipped"))
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
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 4 })
	audienceOf(t, h, 8, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := shardTasks(t, h)
	require.Len(t, tasks, 1)
	task := tasks[0]
	// A worker died after delivering the shard's first two connections and
	// checkpointing them.
	st := h.Store
	require.NoError(t, st.PutShard(context.Background(), task.EventID, task.Shard, "dead-worker", -time.Second, store.ShardProgress{Delivered: []byte{0b0011}, First: task.Conns[0]}))
	runTasks(t, h, tasks)
	for i, id := range task.Conns {
		want := 1
		if i < 2 {
			want = 0 // the dead worker's deliveries are not repeated
		}
		assert.Len(t, h.Received(id), want, id)
	}
	assert.Equal(t, 2.0, h.Metrics.Last("ResumedDeliveries"))
}

func TestShards_AShardALiveWorkerHoldsIsNotDeliveredTwice(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 4; c.EventLease = time.Second })
	audienceOf(t, h, 8, "room.1")
	require.NoError(t, h.Publish("big", shardedEvent))
	tasks := shardTasks(t, h)
	require.Len(t, tasks, 1)
	task := tasks[0]
	// SQS handed the same task to a second worker while the first, alive,
	// holds the shard: the second waits out the claim, then gives up.
	ctx := context.Background()
	require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", time.Minute, store.ShardProgress{First: task.Conns[0]}))
	b, err := json.Marshal(task)
	require.NoError(t, err)
	start := time.Now()
	resp := h.Broadcast.HandleTasks(ctx, lambdaevents.SQSEvent{Records: []lambdaevents.SQSMessage{{MessageId: "m1", Body: string(b)}}})
	assert.Len(t, resp.BatchItemFailures, 1, "the task goes back to the queue")
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "it waited for the holder's lease")
	for _, id := range task.Conns {
		assert.Empty(t, h.Received(id), "%s: nothing sent while the shard is held", id)
	}

	// The holder finished: the redelivered task finds the shard done.
	require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", time.Minute, store.ShardProgress{Done: true, First: task.Conns[0]}))
	runTasks(t, h, tasks)
	for _, id := range task.Conns {
		assert.Empty(t, h.Received(id))
	}
	assert.Equal(t, 1.0, h.Metrics.Last("ShardsSkipped"))
}

// A large detail is stored once and the shards name it, so every shard
// task is small whatever the event's size; each shard still delivers the
// whole payload.
func TestShards_LargeDetailIsStoredOnceAndReferenced(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 2 })
	ids := audienceOf(t, h, 8, "room.big")
	blob := strings.Repeat("x", 100_000)
	require.NoError(t, h.Publish("huge", `{"topic":"room.big","payload":{"blob":"`+blob+`"}}`))
	tasks := shardTasks(t, h)
	require.Len(t, tasks, 3)
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

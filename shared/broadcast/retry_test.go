package broadcast_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// sqsRecord is task as the event source mapping hands it out for the
// receive-th time.
func sqsRecord(t *testing.T, task queue.Task, receive int) lambdaevents.SQSMessage {
	t.Helper()
	b, err := json.Marshal(task)
	require.NoError(t, err)
	id := fmt.Sprintf("msg-%d", task.Shard)
	return lambdaevents.SQSMessage{
		MessageId: id, ReceiptHandle: fmt.Sprintf("%s-receipt-%d", id, receive), Body: string(b),
		Attributes: map[string]string{"ApproximateReceiveCount": strconv.Itoa(receive)},
	}
}

func handleRecords(h *gatewaytest.Harness, recs ...lambdaevents.SQSMessage) []string {
	resp := h.Broadcast.HandleTasks(context.Background(), lambdaevents.SQSEvent{Records: recs})
	var failed []string
	for _, f := range resp.BatchItemFailures {
		failed = append(failed, f.ItemIdentifier)
	}
	return failed
}

// holdShard makes a live attempt hold shard of an event, so that an
// attempt to deliver it waits the lease out and then fails; release ends
// that attempt's life.
func holdShard(t *testing.T, h *gatewaytest.Harness, task queue.Task) (release func()) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", time.Hour, store.ShardProgress{}))
	return func() {
		require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", -time.Second, store.ShardProgress{}))
	}
}

// numbered is the "n" of each event a connection received, in order.
func numbered(t *testing.T, h *gatewaytest.Harness, id string) []int {
	t.Helper()
	var out []int
	for _, f := range h.Received(id) {
		var body struct {
			N    *int
			Data struct{ N int }
		}
		require.NoError(t, json.Unmarshal([]byte(f), &body), f)
		if body.N != nil {
			out = append(out, *body.N)
		} else {
			out = append(out, body.Data.N)
		}
	}
	return out
}

func numberedEvent(n int) string {
	return fmt.Sprintf(`{"topic":"room.1","payload":{"n":%d},"attributes":{"metrics":["a"]},"history":true}`, n)
}

// A shard whose delivery fails is reported alone, so SQS deletes the
// batch's other shards, and comes back after queue.RetryDelay (a second
// the first time) instead of the queue's visibility timeout of minutes.
func TestShards_FailedShardIsRetriedInSecondsAndAlone(t *testing.T) {
	h := sharded(t, func(c *config.Config) { c.EventLease = 300 * time.Millisecond })
	ids := audienceOf(t, h, 12, "room.1")
	require.NoError(t, h.Publish("e1", numberedEvent(1)))
	tasks := shardTasks(t, h)
	require.GreaterOrEqual(t, len(withSubscribers(tasks, ids)), 2, "range 0 delivered inline, several queued")
	held := withSubscribers(tasks, ids)[0]
	msg := fmt.Sprintf("msg-%d", held.Shard)
	release := holdShard(t, h, held)

	var recs []lambdaevents.SQSMessage
	for _, task := range tasks {
		recs = append(recs, sqsRecord(t, task, 1))
	}
	assert.Equal(t, []string{msg}, handleRecords(h, recs...), "only the failed shard is reported")
	assert.Equal(t, []gatewaytest.Retried{{ReceiptHandle: msg + "-receipt-1", Delay: time.Second}}, h.Tasks.TakeRetried(),
		"it comes back in a second, on the receipt it came with")
	for _, id := range ids {
		if slices.Contains(inRange(held, ids), id) {
			assert.Empty(t, h.Received(id), "%s: nothing yet", id)
		} else {
			assert.Equal(t, []int{1}, numbered(t, h, id), "%s: the other shards delivered", id)
		}
	}

	// Failing again, it backs off.
	require.Equal(t, []string{msg}, handleRecords(h, sqsRecord(t, held, 3)))
	retried := h.Tasks.TakeRetried()
	require.Len(t, retried, 1)
	assert.Equal(t, msg+"-receipt-3", retried[0].ReceiptHandle)
	assert.GreaterOrEqual(t, retried[0].Delay, 2*time.Second, "the third receive waits 2 to 4 s")
	assert.LessOrEqual(t, retried[0].Delay, 4*time.Second)

	// The holder is gone: the next receive delivers, nothing later having
	// been numbered on the topic.
	release()
	assert.Empty(t, handleRecords(h, sqsRecord(t, held, 4)))
	assert.Empty(t, h.Tasks.TakeRetried())
	for _, id := range inRange(held, ids) {
		assert.Equal(t, []int{1}, numbered(t, h, id), "%s: delivered on the retry", id)
	}
	assert.Zero(t, h.Metrics.Sum("Superseded"))
}

// A shard retried after a later event on its topic reached its
// subscribers sends nothing: an older event never arrives after a newer
// one. The subscribers find the hole by its number and resume it.
func TestShards_RetriedShardNeverDeliversAnOlderEventAfterANewerOne(t *testing.T) {
	h := sharded(t, func(c *config.Config) { c.EventLease = 300 * time.Millisecond })
	ids := audienceOf(t, h, 12, "room.1")
	require.NoError(t, h.Publish("e1", numberedEvent(1)))
	var held queue.Task
	for _, task := range withSubscribers(shardTasks(t, h), ids) {
		for _, id := range inRange(task, ids) {
			if i, _ := strconv.Atoi(id[1:]); i%3 == 0 {
				held = task // a range with an enveloped subscriber
			}
		}
	}
	require.NotNil(t, held.Range)
	conns := inRange(held, ids)
	msg := fmt.Sprintf("msg-%d", held.Shard)
	release := holdShard(t, h, held)
	require.Equal(t, []string{msg}, handleRecords(h, sqsRecord(t, held, 1)))
	h.Tasks.TakeRetried()

	// Two seconds later the next event reaches everyone, that range too.
	h.Advance(2 * time.Second)
	require.NoError(t, h.Publish("e2", numberedEvent(2)))
	runTasks(t, h, shardTasks(t, h))

	// Then the first event's range comes back.
	release()
	assert.Empty(t, handleRecords(h, sqsRecord(t, held, 2)), "done with: not retried again")
	assert.Equal(t, float64(len(conns)), h.Metrics.Sum("Superseded"))
	for _, id := range conns {
		assert.Equal(t, []int{2}, numbered(t, h, id), "%s: never the older event after the newer", id)
	}
	assert.Empty(t, handleRecords(h, sqsRecord(t, held, 3)), "a further receive finds the shard done")
	assert.Equal(t, 1.0, h.Metrics.Last("ShardsSkipped"))

	// An enveloped subscriber of that range (every third asked for the
	// envelope) resumes the hole in order.
	var env string
	for _, id := range conns {
		if i, _ := strconv.Atoi(id[1:]); i%3 == 0 {
			env = id
		}
	}
	require.NotEmpty(t, env)
	got := h.Send(env, `{"type":"resume","topic":"room.1","since":0,"until":1}`)
	require.Len(t, got, 2)
	assert.Contains(t, got[0], `"seq":1`)
	assert.Contains(t, got[1], `"type":"resumed"`)
}

// A retried shard that is still sending when a later event is numbered
// stops within a check: the rest of the shard is not sent.
func TestShards_RetriedShardStopsSendingOnceALaterEventIsNumbered(t *testing.T) {
	const n = 48
	h := sharded(t, func(c *config.Config) { c.EventLease = 300 * time.Millisecond })
	audienceOf(t, h, 4, "room.1")
	require.NoError(t, h.Publish("e1", numberedEvent(1)))
	tasks := shardTasks(t, h)
	require.NotEmpty(t, tasks)
	task := tasks[len(tasks)-1]

	// The range as a large page would be: n subscribers in it (the levels
	// stop growing, so they are on the levels the task reads); the harness
	// posts 16 at a time, each taking 200 ms here, so it sends in three
	// rounds.
	h.Store.Bucketing.SplitAt = 1 << 20
	var conns []string
	for i := 0; len(conns) < n; i++ {
		id := fmt.Sprintf("p%03d", i)
		if len(inRange(task, []string{id})) == 0 {
			continue
		}
		c := store.Connection{
			ID: id, Principal: auth.Principal{Identity: auth.Identity{Sub: id, Type: "user"}, Topics: []string{">"}},
			ConnectedAt: h.Now, ExpiresAt: h.Now.Add(time.Hour), Limits: h.Cfg.Limits,
		}
		require.NoError(t, h.Store.PutConnection(context.Background(), c, []store.NewSubscription{{Pattern: topic.MustPattern("room.1")}}))
		conns = append(conns, id)
	}
	h.Conns.Latency(200 * time.Millisecond)
	var wg sync.WaitGroup
	var failed []string
	wg.Go(func() { failed = handleRecords(h, sqsRecord(t, task, 2)) })
	time.Sleep(100 * time.Millisecond)
	ev, err := publish.Parse("e2", h.Now, []byte(numberedEvent(2)), false)
	require.NoError(t, err)
	_, err = h.Store.BeginEvent(context.Background(), ev, "other", time.Minute, time.Hour)
	require.NoError(t, err)
	wg.Wait()

	assert.Empty(t, failed)
	sent := 0
	for _, id := range conns {
		sent += len(h.Received(id))
	}
	assert.Less(t, sent, n, "the last round was not sent")
	assert.Positive(t, h.Metrics.Sum("Superseded"))
}

package broadcast_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
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
	require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", time.Hour, store.ShardProgress{First: task.Conns[0]}))
	return func() {
		require.NoError(t, h.Store.PutShard(ctx, task.EventID, task.Shard, "live-worker", -time.Second, store.ShardProgress{First: task.Conns[0]}))
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
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 2; c.EventLease = 300 * time.Millisecond })
	audienceOf(t, h, 8, "room.1")
	require.NoError(t, h.Publish("e1", numberedEvent(1)))
	tasks := shardTasks(t, h)
	require.Len(t, tasks, 3, "shard 0 delivered inline, 1 to 3 queued")
	release := holdShard(t, h, tasks[1])

	var recs []lambdaevents.SQSMessage
	for _, task := range tasks {
		recs = append(recs, sqsRecord(t, task, 1))
	}
	assert.Equal(t, []string{"msg-2"}, handleRecords(h, recs...), "only the failed shard is reported")
	assert.Equal(t, []gatewaytest.Retried{{ReceiptHandle: "msg-2-receipt-1", Delay: time.Second}}, h.Tasks.TakeRetried(),
		"it comes back in a second, on the receipt it came with")
	for _, task := range []queue.Task{tasks[0], tasks[2]} {
		for _, id := range task.Conns {
			assert.Equal(t, []int{1}, numbered(t, h, id), "%s: the other shards delivered", id)
		}
	}
	for _, id := range tasks[1].Conns {
		assert.Empty(t, h.Received(id), "%s: nothing yet", id)
	}

	// Failing again, it backs off.
	require.Equal(t, []string{"msg-2"}, handleRecords(h, sqsRecord(t, tasks[1], 3)))
	retried := h.Tasks.TakeRetried()
	require.Len(t, retried, 1)
	assert.Equal(t, "msg-2-receipt-3", retried[0].ReceiptHandle)
	assert.GreaterOrEqual(t, retried[0].Delay, 2*time.Second, "the third receive waits 2 to 4 s")
	assert.LessOrEqual(t, retried[0].Delay, 4*time.Second)

	// The holder is gone: the next receive delivers, nothing later having
	// been numbered on the topic.
	release()
	assert.Empty(t, handleRecords(h, sqsRecord(t, tasks[1], 4)))
	assert.Empty(t, h.Tasks.TakeRetried())
	for _, id := range tasks[1].Conns {
		assert.Equal(t, []int{1}, numbered(t, h, id), "%s: delivered on the retry", id)
	}
	assert.Zero(t, h.Metrics.Sum("Superseded"))
}

// A shard retried after a later event on its topic reached its
// subscribers sends nothing: an older event never arrives after a newer
// one. The subscribers find the hole by its number and resume it.
func TestShards_RetriedShardNeverDeliversAnOlderEventAfterANewerOne(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 2; c.EventLease = 300 * time.Millisecond })
	audienceOf(t, h, 4, "room.1")
	require.NoError(t, h.Publish("e1", numberedEvent(1)))
	first := shardTasks(t, h)
	require.Len(t, first, 1)
	release := holdShard(t, h, first[0])
	require.Equal(t, []string{"msg-1"}, handleRecords(h, sqsRecord(t, first[0], 1)))
	h.Tasks.TakeRetried()

	// Two seconds later the next event reaches everyone, shard 1 too.
	h.Advance(2 * time.Second)
	require.NoError(t, h.Publish("e2", numberedEvent(2)))
	second := shardTasks(t, h)
	require.Len(t, second, 1)
	require.Equal(t, first[0].Conns, second[0].Conns, "the same subscribers")
	require.Empty(t, handleRecords(h, sqsRecord(t, second[0], 1)))

	// Then the first event's shard comes back.
	release()
	assert.Empty(t, handleRecords(h, sqsRecord(t, first[0], 2)), "done with: not retried again")
	assert.Equal(t, 2.0, h.Metrics.Sum("Superseded"))
	for _, id := range first[0].Conns {
		assert.Equal(t, []int{2}, numbered(t, h, id), "%s: never the older event after the newer", id)
	}
	assert.Empty(t, handleRecords(h, sqsRecord(t, first[0], 3)), "a further receive finds the shard done")
	assert.Equal(t, 1.0, h.Metrics.Last("ShardsSkipped"))

	// An enveloped subscriber of that shard (every third asked for the
	// envelope) resumes the hole in order.
	var env string
	for _, id := range first[0].Conns {
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
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = 2; c.EventLease = 300 * time.Millisecond })
	audienceOf(t, h, 3, "room.1")
	require.NoError(t, h.Publish("e1", numberedEvent(1)))
	tasks := shardTasks(t, h)
	require.Len(t, tasks, 1)

	// The shard as a large page would be: the harness posts 16 at a time,
	// each taking 200 ms here, so it sends in three rounds.
	task := tasks[0]
	task.Conns, task.VariantOf = nil, nil
	for i := range n {
		task.Conns = append(task.Conns, fmt.Sprintf("p%02d", i))
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
	for _, id := range task.Conns {
		sent += len(h.Received(id))
	}
	assert.Less(t, sent, n, "the last round was not sent")
	assert.Positive(t, h.Metrics.Sum("Superseded"))
}

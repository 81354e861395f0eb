package sqslocal

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// function records the events an event source mapping delivers and answers
// with respond.
type function struct {
	mu      sync.Mutex
	batches []events.SQSEvent
	got     chan events.SQSEvent
	respond func(ev events.SQSEvent) ([]byte, error)
}

func newFunction(respond func(ev events.SQSEvent) ([]byte, error)) *function {
	if respond == nil {
		respond = func(events.SQSEvent) ([]byte, error) { return nil, nil }
	}
	return &function{got: make(chan events.SQSEvent, 1000), respond: respond}
}

func (f *function) Invoke(_ context.Context, payload []byte) ([]byte, error) {
	var ev events.SQSEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.batches = append(f.batches, ev)
	f.mu.Unlock()
	f.got <- ev
	return f.respond(ev)
}

// next waits for the next invocation.
func (f *function) next(t *testing.T, within time.Duration) events.SQSEvent {
	t.Helper()
	select {
	case ev := <-f.got:
		return ev
	case <-time.After(within):
		t.Fatalf("no invocation within %v", within)
		return events.SQSEvent{}
	}
}

func (f *function) invocations() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.batches)
}

// eventually waits for cond with generous bounds for a loaded machine.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 10*time.Millisecond, msg)
}

func sendBatch(t *testing.T, h *harness, queueURL string, bodies ...string) {
	t.Helper()
	entries := make([]types.SendMessageBatchRequestEntry, len(bodies))
	for i, b := range bodies {
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String("m" + strconv.Itoa(i)), MessageBody: aws.String(b)}
	}
	out, err := h.client.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
	require.NoError(t, err)
	require.Empty(t, out.Failed)
}

func TestEventSource_InvokesFunctionWithSQSEventAndDeletesOnSuccess(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "events", nil)
	arn, err := h.svc.QueueARN(queueURL)
	require.NoError(t, err)
	fn := newFunction(nil)
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})
	defer stop()

	id := h.send(t, queueURL, "hello")

	ev := fn.next(t, 10*time.Second)
	require.Len(t, ev.Records, 1)
	r := ev.Records[0]
	assert.Equal(t, id, r.MessageId)
	assert.NotEmpty(t, r.ReceiptHandle)
	assert.Equal(t, "hello", r.Body)
	assert.Equal(t, md5Hex("hello"), r.Md5OfBody)
	assert.Equal(t, "aws:sqs", r.EventSource)
	assert.Equal(t, arn, r.EventSourceARN)
	assert.Equal(t, "us-east-1", r.AWSRegion)
	assert.Equal(t, "1", r.Attributes["ApproximateReceiveCount"])
	assert.Equal(t, testAccessKey, r.Attributes["SenderId"])
	for _, name := range []string{"SentTimestamp", "ApproximateFirstReceiveTimestamp"} {
		_, err := strconv.ParseInt(r.Attributes[name], 10, 64)
		assert.NoError(t, err, name)
	}
	assert.NotNil(t, r.MessageAttributes, "an empty object, as Lambda sends it")
	assert.Empty(t, r.MessageAttributes)

	eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, "a successful batch is deleted")
}

func TestEventSource_BatchesUpToBatchSize(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "batched", nil)
	fn := newFunction(nil)
	var bodies []string
	for i := range 25 {
		bodies = append(bodies, "m"+strconv.Itoa(i))
	}
	sendBatch(t, h, queueURL, bodies[:10]...)
	sendBatch(t, h, queueURL, bodies[10:20]...)
	sendBatch(t, h, queueURL, bodies[20:]...)

	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, MaxConcurrency: 1, Invoke: fn.Invoke})
	defer stop()

	var got []string
	largest := 0
	for len(got) < 25 {
		ev := fn.next(t, 10*time.Second)
		assert.LessOrEqual(t, len(ev.Records), 10)
		largest = max(largest, len(ev.Records))
		for _, r := range ev.Records {
			got = append(got, r.Body)
		}
	}
	assert.ElementsMatch(t, bodies, got)
	assert.Equal(t, 10, largest, "a backlog is delivered in full batches of 10")
	eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, "all delivered messages are deleted")
}

func TestEventSource_ReactsPromptlyToNewMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "prompt", nil)
	fn := newFunction(nil)
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})
	defer stop()
	time.Sleep(100 * time.Millisecond) // let the pollers go to sleep on the empty queue

	for range 3 {
		start := time.Now()
		h.send(t, queueURL, "ping")
		fn.next(t, 10*time.Second)
		assert.Less(t, time.Since(start), time.Second, "pollers wake on send rather than on a polling interval")
	}
}

func TestEventSource_DeliversDelayedMessageWhenDelayPasses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "deadline", nil)
	fn := newFunction(nil)
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})
	defer stop()

	start := time.Now()
	_, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("auth deadline"), DelaySeconds: 1})
	require.NoError(t, err)
	ev := fn.next(t, 10*time.Second)
	require.Len(t, ev.Records, 1)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestEventSource_PartialBatchFailuresAreRedeliveredWhileSuccessesAreDeleted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "partial", map[string]string{"VisibilityTimeout": "1"})
	var failedOnce sync.Map
	fn := newFunction(func(ev events.SQSEvent) ([]byte, error) {
		var resp events.SQSEventResponse
		for _, r := range ev.Records {
			if r.Body == "fail-once" {
				if _, seen := failedOnce.LoadOrStore(r.MessageId, true); !seen {
					resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
				}
			}
		}
		return json.Marshal(resp)
	})
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, ReportBatchItemFailures: true, Invoke: fn.Invoke})
	defer stop()

	sendBatch(t, h, queueURL, "ok", "fail-once", "ok", "fail-once")
	deliveries := map[string][]string{} // message id -> receive counts seen
	bodies := map[string]string{}
	for n := 0; n < 6; {
		ev := fn.next(t, 15*time.Second)
		for _, r := range ev.Records {
			deliveries[r.MessageId] = append(deliveries[r.MessageId], r.Attributes["ApproximateReceiveCount"])
			bodies[r.MessageId] = r.Body
			n++
		}
	}
	require.Len(t, deliveries, 4)
	for id, counts := range deliveries {
		if bodies[id] == "ok" {
			assert.Equal(t, []string{"1"}, counts, "a success is deleted, never redelivered")
		} else {
			assert.Equal(t, []string{"1", "2"}, counts, "a reported failure comes back after the visibility timeout")
		}
	}
	eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, "the queue drains")
}

func TestEventSource_InvalidBatchResponseFailsWholeBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		response func(ev events.SQSEvent) []byte
	}{
		{"not JSON", func(events.SQSEvent) []byte { return []byte("oops") }},
		{"unknown itemIdentifier", func(events.SQSEvent) []byte {
			return []byte(`{"batchItemFailures":[{"itemIdentifier":"not-in-batch"}]}`)
		}},
		{"empty itemIdentifier", func(events.SQSEvent) []byte {
			return []byte(`{"batchItemFailures":[{"itemIdentifier":""}]}`)
		}},
		{"misspelt key", func(ev events.SQSEvent) []byte {
			return []byte(`{"batchItemFailures":[{"itemId":"` + ev.Records[0].MessageId + `"}]}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Options{})
			queueURL := h.createQueue(t, "whole-batch", map[string]string{"VisibilityTimeout": "1"})
			var calls atomic.Int32
			fn := newFunction(func(ev events.SQSEvent) ([]byte, error) {
				if calls.Add(1) == 1 {
					return tt.response(ev), nil
				}
				return nil, nil
			})
			stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, ReportBatchItemFailures: true, MaxConcurrency: 1, Invoke: fn.Invoke})
			defer stop()

			sendBatch(t, h, queueURL, "a", "b", "c")
			first := fn.next(t, 10*time.Second)
			require.Len(t, first.Records, 3)
			var again []events.SQSMessage
			for len(again) < 3 {
				again = append(again, fn.next(t, 15*time.Second).Records...)
			}
			for _, r := range again {
				assert.Equal(t, "2", r.Attributes["ApproximateReceiveCount"], "every message of the batch is redelivered")
			}
			eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, "the retry succeeds")
		})
	}
}

func TestEventSource_EmptyResponseWithReportBatchItemFailuresIsSuccess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		response []byte
	}{
		{"nil", nil},
		{"null", []byte("null")},
		{"empty object", []byte("{}")},
		{"empty list", []byte(`{"batchItemFailures":[]}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Options{})
			queueURL := h.createQueue(t, "empty-response", nil)
			fn := newFunction(func(events.SQSEvent) ([]byte, error) { return tt.response, nil })
			stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, ReportBatchItemFailures: true, Invoke: fn.Invoke})
			defer stop()
			sendBatch(t, h, queueURL, "a", "b")
			eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, "the batch is deleted")
		})
	}
}

func TestEventSource_FailingFunctionSendsMessagesToDeadLetterQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	dlqURL := h.createQueue(t, "esm-dlq", nil)
	dlqARN, err := h.svc.QueueARN(dlqURL)
	require.NoError(t, err)
	queueURL := h.createQueue(t, "esm-source", map[string]string{
		"VisibilityTimeout": "1",
		"RedrivePolicy":     `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":"2"}`,
	})
	fn := newFunction(func(events.SQSEvent) ([]byte, error) { return nil, errors.New("function crashed") })
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})
	defer stop()

	id := h.send(t, queueURL, "poison")
	eventually(t, func() bool { return h.depth(t, dlqURL) == [3]int{1, 0, 0} }, "the message reaches the dead-letter queue")
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, queueURL))
	assert.Equal(t, 2, fn.invocations(), "the function saw the message maxReceiveCount times")

	assert.Equal(t, map[string]string{id: "poison"}, h.stored(t, dlqURL), "the message keeps its id and body")
}

func TestEventSource_RespectsMaxConcurrency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "concurrent", nil)
	var running, peak atomic.Int32
	var processed atomic.Int32
	invoke := func(ctx context.Context, payload []byte) ([]byte, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(30 * time.Millisecond)
		var ev events.SQSEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, err
		}
		processed.Add(int32(len(ev.Records)))
		running.Add(-1)
		return nil, nil
	}
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, BatchSize: 1, MaxConcurrency: 3, Invoke: invoke})
	defer stop()

	for i := 0; i < 30; i += 10 {
		var bodies []string
		for j := range 10 {
			bodies = append(bodies, strconv.Itoa(i+j))
		}
		sendBatch(t, h, queueURL, bodies...)
	}
	eventually(t, func() bool { return processed.Load() == 30 }, "every message is processed")
	assert.LessOrEqual(t, peak.Load(), int32(3), "never more than MaxConcurrency invocations at once")
	assert.GreaterOrEqual(t, peak.Load(), int32(2), "invocations do run in parallel")
}

func TestEventSource_StopEndsPolling(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "stoppable", nil)
	fn := newFunction(nil)
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})

	h.send(t, queueURL, "before")
	fn.next(t, 10*time.Second)
	stop()
	stop() // idempotent

	h.send(t, queueURL, "after")
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, 1, fn.invocations())
	assert.Equal(t, [3]int{1, 0, 0}, h.depth(t, queueURL), "the message waits for a consumer")
}

func TestEventSource_StopCancelsInvocationInProgress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "cancelled", map[string]string{"VisibilityTimeout": "60"})
	started := make(chan struct{})
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, MaxConcurrency: 1, Invoke: func(ctx context.Context, _ []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	h.send(t, queueURL, "slow")
	<-started

	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return")
	}
	assert.Equal(t, [3]int{0, 1, 0}, h.depth(t, queueURL), "a cancelled batch is not deleted")
}

func TestClose_StopsEventSources(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "closed", nil)
	fn := newFunction(nil)
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, MaxConcurrency: 4, Invoke: fn.Invoke})
	defer stop()

	closed := make(chan struct{})
	go func() { h.svc.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	h.send(t, queueURL, "after close")
	time.Sleep(200 * time.Millisecond)
	assert.Zero(t, fn.invocations())

	stopLate := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})
	stopLate()
	assert.Zero(t, fn.invocations(), "a mapping added after Close never polls")
}

func TestEventSource_WaitsForQueueCreatedLater(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	fn := newFunction(nil)
	queueURL := "http://localhost:4566/000000000000/not-yet"
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})
	defer stop()

	time.Sleep(150 * time.Millisecond)
	h.createQueue(t, "not-yet", nil)
	h.send(t, queueURL, "hello")
	ev := fn.next(t, 10*time.Second)
	require.Len(t, ev.Records, 1)
}

func TestEventSource_FailedBatchComesBackAfterVisibilityTimeoutWithNewHandle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "visibility", map[string]string{"VisibilityTimeout": "1"})
	var calls atomic.Int32
	fn := newFunction(func(events.SQSEvent) ([]byte, error) {
		if calls.Add(1) == 1 {
			return nil, errors.New("function crashed")
		}
		return nil, nil
	})
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, Invoke: fn.Invoke})
	defer stop()

	id := h.send(t, queueURL, "redeliver me")
	first := fn.next(t, 10*time.Second).Records[0]
	failedAt := time.Now()
	second := fn.next(t, 10*time.Second).Records[0]
	assert.GreaterOrEqual(t, time.Since(failedAt), 900*time.Millisecond, "invisible until the visibility timeout passes")
	assert.Equal(t, id, second.MessageId)
	assert.Equal(t, "2", second.Attributes["ApproximateReceiveCount"])
	assert.Equal(t, first.Attributes["ApproximateFirstReceiveTimestamp"], second.Attributes["ApproximateFirstReceiveTimestamp"])
	assert.NotEqual(t, first.ReceiptHandle, second.ReceiptHandle)
	eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, "the second attempt deletes it")
}

// An invocation that outlives the visibility timeout cannot delete the
// message another invocation now holds: only the latest receipt counts.
func TestEventSource_SlowInvocationDoesNotDeleteRedeliveredMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "slow", map[string]string{"VisibilityTimeout": "1"})
	releaseFirst, releaseSecond := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	invoke := func(context.Context, []byte) ([]byte, error) {
		if calls.Add(1) == 1 {
			<-releaseFirst
		} else {
			<-releaseSecond
		}
		return nil, nil
	}
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, MaxConcurrency: 2, Invoke: invoke})
	defer stop()
	defer close(releaseSecond)

	h.send(t, queueURL, "slow")
	eventually(t, func() bool { return calls.Load() == 2 }, "redelivered to the other poller after the visibility timeout")
	close(releaseFirst)
	time.Sleep(100 * time.Millisecond) // let the first invocation settle
	assert.Equal(t, [3]int{0, 1, 0}, h.depth(t, queueURL), "the stale receipt deleted nothing")
}

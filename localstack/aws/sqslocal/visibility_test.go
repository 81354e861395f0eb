package sqslocal

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// receiveOne takes the next visible message of a queue as a poller would.
func (h *harness) receiveOne(t *testing.T, queueURL string) delivery {
	t.Helper()
	h.svc.mu.Lock()
	q, ok := h.svc.queueByURL(queueURL)
	h.svc.mu.Unlock()
	require.True(t, ok, queueURL)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	got := h.svc.receive(ctx, q, 1)
	require.Len(t, got, 1, "a message to receive")
	return got[0]
}

func (h *harness) changeVisibility(ctx context.Context, queueURL, handle string, seconds int32) error {
	_, err := h.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(queueURL), ReceiptHandle: aws.String(handle), VisibilityTimeout: seconds,
	})
	return err
}

// The new timeout counts from the call: 0 makes the message visible at
// once, a few seconds bring it back that much later, whatever the queue's
// timeout.
func TestChangeMessageVisibility_NewTimeoutCountsFromTheCall(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "cmv", map[string]string{"VisibilityTimeout": "600"})
	h.send(t, queueURL, "x")

	first := h.receiveOne(t, queueURL)
	require.NoError(t, h.changeVisibility(t.Context(), queueURL, first.receiptHandle, 0))
	assert.Equal(t, [3]int{1, 0, 0}, h.depth(t, queueURL), "visible at once")

	second := h.receiveOne(t, queueURL)
	assert.Equal(t, 2, second.receiveCount)
	assert.NotEqual(t, first.receiptHandle, second.receiptHandle)
	changed := time.Now()
	require.NoError(t, h.changeVisibility(t.Context(), queueURL, second.receiptHandle, 1))
	assert.Equal(t, [3]int{0, 1, 0}, h.depth(t, queueURL), "in flight until the new timeout")
	third := h.receiveOne(t, queueURL)
	assert.GreaterOrEqual(t, time.Since(changed), 950*time.Millisecond)
	assert.Less(t, time.Since(changed), 5*time.Second, "back after 1 s, not the queue's 600 s")
	assert.Equal(t, 3, third.receiveCount)
}

// What SQS refuses, with its codes: a handle that is not one, a handle of
// a message deleted or received again since, a message no longer in
// flight, a timeout out of range or past 12 hours in flight.
func TestChangeMessageVisibility_RefusesWhatSQSRefuses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "cmv-refusals", map[string]string{"VisibilityTimeout": "1"})

	h.send(t, queueURL, "stale")
	stale := h.receiveOne(t, queueURL)
	h.receiveOne(t, queueURL) // after the timeout: received again, a new handle

	h.send(t, queueURL, "deleted")
	deleted := h.receiveOne(t, queueURL)
	h.svc.mu.Lock()
	q, _ := h.svc.queueByURL(queueURL)
	q.settle(deleted)
	h.svc.mu.Unlock()

	h.send(t, queueURL, "visible again")
	lapsed := h.receiveOne(t, queueURL)
	time.Sleep(1100 * time.Millisecond) // its timeout passes; nobody receives it

	other := h.createQueue(t, "cmv-long", map[string]string{"VisibilityTimeout": "30"})
	h.send(t, other, "long")
	long := h.receiveOne(t, other)
	require.NoError(t, h.changeVisibility(t.Context(), other, long.receiptHandle, maxVisibilityTimeout), "12 hours from the receive is the most")

	tests := []struct {
		name     string
		queueURL string
		handle   string
		seconds  int32
		code     string
	}{
		{"not a receipt handle", queueURL, "garbage", 1, "ReceiptHandleIsInvalid"},
		{"a handle superseded by a later receive", queueURL, stale.receiptHandle, 1, "InvalidParameterValue"},
		{"a deleted message", queueURL, deleted.receiptHandle, 1, "InvalidParameterValue"},
		{"a message visible again", queueURL, lapsed.receiptHandle, 1, "AWS.SimpleQueueService.MessageNotInflight"},
		{"a negative timeout", other, long.receiptHandle, -1, "InvalidParameterValue"},
		{"over 12 hours", other, long.receiptHandle, maxVisibilityTimeout + 1, "InvalidParameterValue"},
		{"12 hours counted from the receive", other, long.receiptHandle, maxVisibilityTimeout, "InvalidParameterValue"},
	}
	time.Sleep(time.Second) // the long message has been in flight a second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireCode(t, h.changeVisibility(t.Context(), tt.queueURL, tt.handle, tt.seconds), tt.code)
		})
	}
	require.NoError(t, h.changeVisibility(t.Context(), other, long.receiptHandle, maxVisibilityTimeout-2), "within 12 hours of the receive")

	err := h.changeVisibility(t.Context(), h.url+"/000000000000/missing", long.receiptHandle, 1)
	var notFound *types.QueueDoesNotExist
	assert.ErrorAs(t, err, &notFound)
}

// A function that reports a message as failed and shortens its
// visibility gets it back that much later, alone: the batch's other
// messages are deleted. The same holds when the whole invocation fails.
func TestEventSource_FailedMessageWithShortenedVisibilityComesBackSoonAndAlone(t *testing.T) {
	t.Parallel()
	for _, wholeBatch := range []bool{false, true} {
		name := "reported in batchItemFailures"
		if wholeBatch {
			name = "the invocation failed"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, Options{})
			queueURL := h.createQueue(t, "retry-soon", map[string]string{"VisibilityTimeout": "60"})
			var mu sync.Mutex
			failedAt := time.Time{}
			fn := newFunction(func(ev events.SQSEvent) ([]byte, error) {
				var resp events.SQSEventResponse
				for _, r := range ev.Records {
					if r.Body != "fail once" || r.Attributes["ApproximateReceiveCount"] != "1" {
						continue
					}
					if err := h.changeVisibility(context.Background(), queueURL, r.ReceiptHandle, 1); err != nil {
						return nil, err
					}
					mu.Lock()
					failedAt = time.Now()
					mu.Unlock()
					if wholeBatch {
						return nil, errors.New("function error")
					}
					resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
				}
				return json.Marshal(resp)
			})
			stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, BatchSize: 10, MaxConcurrency: 1, ReportBatchItemFailures: true, Invoke: fn.Invoke})
			defer stop()

			bodies := []string{"ok", "fail once"}
			if !wholeBatch {
				bodies = append(bodies, "ok too")
			}
			sendBatch(t, h, queueURL, bodies...)
			receives := map[string][]string{}
			for n := 0; n < len(bodies)+1; {
				for _, r := range fn.next(t, 10*time.Second).Records {
					receives[r.Body] = append(receives[r.Body], r.Attributes["ApproximateReceiveCount"])
					n++
				}
			}
			mu.Lock()
			since := time.Since(failedAt)
			mu.Unlock()
			assert.Less(t, since, 5*time.Second, "back after its 1 s, not the queue's 60 s")
			assert.Equal(t, []string{"1", "2"}, receives["fail once"])
			if !wholeBatch {
				assert.Equal(t, []string{"1"}, receives["ok"], "a success is deleted, never redelivered")
				assert.Equal(t, []string{"1"}, receives["ok too"])
				eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, "the queue drains")
				st, err := h.svc.Stats(queueURL)
				require.NoError(t, err)
				assert.Equal(t, QueueStats{Received: 4, Redelivered: 1, VisibilityChanged: 1}, st)
			} else {
				assert.Empty(t, receives["ok"][1:], "the failed batch's other message waits out the queue's timeout")
				assert.Equal(t, [3]int{0, 1, 0}, h.depth(t, queueURL))
			}
		})
	}
}

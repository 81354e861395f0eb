package broadcast

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/queue"
)

// TaskRetrier brings the message a failed task came in back after delay
// (queue.Queue.Retry: ChangeMessageVisibility on its receipt handle).
type TaskRetrier interface {
	Retry(ctx context.Context, receiptHandle string, delay time.Duration) error
}

// retryCallTimeout bounds the ChangeMessageVisibility call, which runs
// even when the invocation's own time is up.
const retryCallTimeout = 2 * time.Second

// HandleTasks runs an SQS batch. A failed message is reported in
// batchItemFailures, so the others are deleted and only it comes back,
// and made visible again after queue.RetryDelay rather than the queue's
// visibility timeout: a failed shard is retried within seconds, and one
// that keeps failing backs off until the queue's redrive (MaxReceives)
// sends it to the dead-letter queue.
func (h *Handler) HandleTasks(ctx context.Context, ev lambdaevents.SQSEvent) lambdaevents.SQSEventResponse {
	var resp lambdaevents.SQSEventResponse
	for _, r := range ev.Records {
		t, err := queue.Decode(r.Body)
		if err != nil {
			h.log.Error("task dropped", "message_id", r.MessageId, "error", err.Error())
			continue
		}
		receives := receiveCount(r)
		if err := h.runTask(ctx, t, receives); err != nil {
			delay := queue.RetryDelay(receives)
			h.log.Warn("task failed; it will be retried", "message_id", r.MessageId, "kind", t.Kind, "event_id", t.EventID,
				"receive", receives, "retry_in_ms", delay.Milliseconds(), "error", err.Error())
			h.retryLater(ctx, r, delay)
			resp.BatchItemFailures = append(resp.BatchItemFailures, lambdaevents.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp
}

// receiveCount is how often SQS has handed the message out, this time
// included (1 when the attribute is missing).
func receiveCount(r lambdaevents.SQSMessage) int {
	n, err := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// retryLater makes a failed task's message visible again after delay. If
// that fails, the message comes back after the queue's visibility timeout.
func (h *Handler) retryLater(ctx context.Context, r lambdaevents.SQSMessage, delay time.Duration) {
	if h.retrier == nil || r.ReceiptHandle == "" {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), retryCallTimeout)
	defer cancel()
	if err := h.retrier.Retry(rctx, r.ReceiptHandle, delay); err != nil {
		h.log.Warn("task's retry not brought forward; it comes back after the queue's visibility timeout",
			"message_id", r.MessageId, "error", err.Error())
	}
}

// runTask runs one task by its kind; receives is how often SQS has handed
// it out (more than 1: an earlier attempt failed or was lost).
func (h *Handler) runTask(ctx context.Context, t queue.Task, receives int) error {
	switch t.Kind {
	case queue.KindAuthDeadline:
		return h.authDeadline(ctx, t)
	case queue.KindReplay:
		return h.replay(ctx, t)
	case queue.KindShard:
		return h.shardTask(ctx, t, receives > 1)
	case queue.KindTokenExpiry:
		return h.tokenExpiry(ctx, t)
	case queue.KindPresence:
		return h.presenceTask(ctx, t)
	}
	return fmt.Errorf("task kind %q is not handled here", t.Kind)
}

// waitAgain puts task t back on the queue until at: SQS delays a message
// 15 minutes at most, so a later time takes several rounds.
func (h *Handler) waitAgain(ctx context.Context, t queue.Task, at time.Time) error {
	if h.tasks == nil {
		return errors.New("not due yet and no queue to wait on")
	}
	return h.tasks.Send(ctx, t, at.Sub(h.now())+time.Second)
}

package broadcast

import (
	"context"
	"errors"
	"fmt"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/queue"
)

// HandleTasks runs an SQS batch; failed messages are reported for retry.
func (h *Handler) HandleTasks(ctx context.Context, ev lambdaevents.SQSEvent) lambdaevents.SQSEventResponse {
	var resp lambdaevents.SQSEventResponse
	for _, r := range ev.Records {
		t, err := queue.Decode(r.Body)
		if err != nil {
			h.log.Error("task dropped", "message_id", r.MessageId, "error", err.Error())
			continue
		}
		if err := h.runTask(ctx, t); err != nil {
			h.log.Warn("task failed; SQS will retry", "message_id", r.MessageId, "kind", t.Kind, "error", err.Error())
			resp.BatchItemFailures = append(resp.BatchItemFailures, lambdaevents.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp
}

// runTask runs one task by its kind.
func (h *Handler) runTask(ctx context.Context, t queue.Task) error {
	switch t.Kind {
	case queue.KindAuthDeadline:
		return h.authDeadline(ctx, t)
	case queue.KindReplay:
		return h.replay(ctx, t)
	case queue.KindShard:
		return h.shardTask(ctx, t)
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

package sqslocal

import (
	"context"
	"time"
)

// delivery is what one receive hands out: a snapshot of the message's
// delivery bookkeeping, taken under the service lock.
type delivery struct {
	msg             *message
	receiptHandle   string
	receiveCount    int
	firstReceivedAt time.Time
}

// receive takes up to limit visible messages from q, making them invisible
// for the queue's visibility timeout. It blocks until there is at least one
// and returns nothing only when ctx ends.
func (s *Service) receive(ctx context.Context, q *queue, limit int) []delivery {
	for ctx.Err() == nil {
		s.mu.Lock()
		now := time.Now()
		q.advance(now)
		out := s.take(q, now, limit)
		changed, next := q.changed, q.nextWake()
		s.mu.Unlock()
		if len(out) > 0 {
			return out
		}
		waitChange(ctx, changed, next)
	}
	return nil
}

// waitChange blocks until changed is closed (something was sent or made
// visible), the time next comes (a delayed or in-flight message becomes
// visible; never when zero) or ctx ends.
func waitChange(ctx context.Context, changed <-chan struct{}, next time.Time) {
	var timeout <-chan time.Time
	if !next.IsZero() {
		// A millisecond of slack so the timer never fires just before the
		// moment it waits for.
		timer := time.NewTimer(max(time.Until(next)+time.Millisecond, 0))
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-changed:
	case <-timeout:
	case <-ctx.Done():
	}
}

// take hands out up to limit visible messages. A message already received
// maxReceiveCount times goes to the dead-letter queue instead. Lock held.
func (s *Service) take(q *queue, now time.Time, limit int) []delivery {
	var out []delivery
	for len(out) < limit {
		m := q.popReady()
		if m == nil {
			break
		}
		if s.redrive(q, m, now) {
			continue
		}
		m.receiveCount++
		q.stats.Received++
		if m.receiveCount == 1 {
			m.firstReceivedAt = now
		} else {
			q.stats.Redelivered++
		}
		m.receiptHandle = newReceiptHandle(m.id)
		m.receivedAt = now
		q.setState(m, stateInFlight, now.Add(q.cfg.visibility))
		out = append(out, delivery{
			msg:             m,
			receiptHandle:   m.receiptHandle,
			receiveCount:    m.receiveCount,
			firstReceivedAt: m.firstReceivedAt,
		})
	}
	return out
}

// redrive moves m to q's dead-letter queue if a receive now would exceed
// the redrive policy's maxReceiveCount, and reports whether it did. The
// message keeps its id, body and sent time; its receive count starts again
// at zero. Lock held.
func (s *Service) redrive(q *queue, m *message, now time.Time) bool {
	policy := q.cfg.redrive
	if policy == nil || m.receiveCount < policy.maxReceiveCount {
		return false
	}
	dlq, ok := s.queueByARN(policy.deadLetterTargetARN)
	if !ok || dlq == q {
		return false
	}
	q.remove(m)
	q.stats.DeadLettered++
	moved := &message{id: m.id, body: m.body, md5OfBody: m.md5OfBody, senderID: m.senderID, sentAt: m.sentAt}
	dlq.add(moved, now, 0)
	dlq.notify()
	return true
}

// settle deletes a delivered message, unless a later receive has taken it
// since (its visibility timeout passed and another poller holds it now):
// as in SQS, only the latest receipt handle deletes. Lock held.
func (q *queue) settle(d delivery) {
	if m, ok := q.messages[d.msg.id]; ok && m.receiptHandle == d.receiptHandle {
		q.remove(m)
	}
}

package sqslocal

import (
	"context"
	"time"
)

// receive takes up to limit visible messages from q, making them invisible
// for visibility (the queue's timeout when nil). With a positive wait it
// long-polls: it returns as soon as at least one message is taken, or empty
// when wait passes, ctx ends or the service closes.
func (s *Service) receive(ctx context.Context, q *queue, limit int, visibility *time.Duration, wait time.Duration) ([]delivery, *apiError) {
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		if q.deleted {
			s.mu.Unlock()
			return nil, errQueueDoesNotExist()
		}
		now := s.opts.Now()
		q.advance(now)
		vis := q.cfg.visibility()
		if visibility != nil {
			vis = *visibility
		}
		out := s.take(q, now, limit, vis)
		if len(out) > 0 || wait <= 0 || !time.Now().Before(deadline) {
			s.mu.Unlock()
			return out, nil
		}
		changed, next := q.changed, q.nextWake()
		s.mu.Unlock()
		if !s.wait(ctx, changed, next, deadline) {
			return nil, nil
		}
	}
}

// waitVisible blocks until q has at least n visible messages, the wall
// clock passes deadline (never when zero), ctx ends or the service closes.
// It reports whether the caller should go on: false when ctx ended, the
// service closed or the queue was deleted.
func (s *Service) waitVisible(ctx context.Context, q *queue, n int, deadline time.Time) bool {
	for {
		s.mu.Lock()
		if q.deleted {
			s.mu.Unlock()
			return false
		}
		now := s.opts.Now()
		q.advance(now)
		if q.visible >= n || (!deadline.IsZero() && !time.Now().Before(deadline)) {
			s.mu.Unlock()
			return true
		}
		changed, next := q.changed, q.nextWake()
		s.mu.Unlock()
		if !s.wait(ctx, changed, next, deadline) {
			return false
		}
	}
}

// take hands out up to limit visible messages. A message already received
// maxReceiveCount times goes to the dead-letter queue instead, and one past
// retention is dropped. Lock held.
func (s *Service) take(q *queue, now time.Time, limit int, visibility time.Duration) []delivery {
	var out []delivery
	for len(out) < limit {
		m := q.popReady()
		if m == nil {
			break
		}
		if q.expired(m, now) {
			q.remove(m)
			continue
		}
		if s.redrive(q, m, now) {
			continue
		}
		m.receiveCount++
		if m.receiveCount == 1 {
			m.firstReceivedAt = now
		}
		m.receiptHandle = newReceiptHandle(q.name, m.id)
		q.setState(m, stateInFlight, now.Add(visibility))
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
// message keeps its id, body, attributes and sent time (retention counts
// from the original send, as for SQS standard queues); its receive count
// starts again at zero. Lock held.
func (s *Service) redrive(q *queue, m *message, now time.Time) bool {
	policy := q.cfg.redrive
	if policy == nil || m.receiveCount < policy.maxReceiveCount {
		return false
	}
	dlq := s.queueByARN(policy.deadLetterTargetARN)
	if dlq == nil || dlq == q {
		return false
	}
	q.remove(m)
	moved := &message{
		id:               m.id,
		body:             m.body,
		md5OfBody:        m.md5OfBody,
		attributes:       m.attributes,
		systemAttributes: m.systemAttributes,
		groupID:          m.groupID,
		senderID:         m.senderID,
		sentAt:           m.sentAt,
		deadLetterSource: q.arn,
	}
	dlq.add(moved, now, 0)
	dlq.notify()
	return true
}

// deleteMessage deletes the message a receipt handle names. A handle
// superseded by a later receive, or of a message already gone, deletes
// nothing and is not an error, so a slow consumer can never delete a
// message another consumer now holds. Lock held.
func (s *Service) deleteMessage(q *queue, handle string) *apiError {
	queueName, id, ok := parseReceiptHandle(handle)
	if !ok || queueName != q.name {
		return errInvalidHandle(handle)
	}
	m, ok := q.messages[id]
	if !ok || m.receiptHandle != handle {
		return nil
	}
	q.remove(m)
	return nil
}

// changeVisibility sets the remaining visibility timeout of an in-flight
// message; 0 makes it visible at once. Only the latest receipt handle of
// the message is accepted. Lock held.
func (s *Service) changeVisibility(q *queue, handle string, timeout *int64, now time.Time) *apiError {
	if timeout == nil {
		return errMissing("VisibilityTimeout")
	}
	if *timeout < 0 || *timeout > maxVisibilityTimeout {
		return errInvalidValue("VisibilityTimeout", itoa64(*timeout), "VisibilityTimeout must be >= 0 and <= 43200.")
	}
	queueName, id, ok := parseReceiptHandle(handle)
	if !ok || queueName != q.name {
		return errInvalidHandle(handle)
	}
	q.advance(now)
	m, ok := q.messages[id]
	if !ok || m.receiptHandle != handle {
		return errInvalidValue("ReceiptHandle", handle,
			"Message does not exist or is not available for visibility timeout change.")
	}
	if m.state != stateInFlight {
		return newError(codeMessageNotInflight, "The message referred to isn't in flight.")
	}
	if *timeout == 0 {
		q.setState(m, stateVisible, time.Time{})
	} else {
		q.setState(m, stateInFlight, now.Add(time.Duration(*timeout)*time.Second))
	}
	q.notify()
	return nil
}

func errInvalidHandle(handle string) *apiError {
	return newError(codeReceiptHandleIsInvalid, "The input receipt handle \"%s\" is not a valid receipt handle.", handle)
}

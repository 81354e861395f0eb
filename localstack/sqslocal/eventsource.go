package sqslocal

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/backoff"
)

// EventSourceMapping drains a queue into a function the way Lambda's SQS
// poller does.
type EventSourceMapping struct {
	QueueURL                string
	BatchSize               int // default 10, max 10
	MaxConcurrency          int // parallel invocations, default 2
	ReportBatchItemFailures bool
	// Invoke calls the function with an events.SQSEvent JSON payload and
	// returns its response payload (an events.SQSEventResponse JSON when
	// ReportBatchItemFailures). The context ends when the mapping stops.
	Invoke func(ctx context.Context, payload []byte) ([]byte, error)
}

// Defaults of EventSourceMapping.
const (
	DefaultBatchSize      = 10
	DefaultMaxConcurrency = 2
)

// missingQueueRetry is how long a poller waits before looking again for a
// queue that does not exist yet. A fixed wait, not a backoff policy: the
// queue appears once, at a moment nothing else contends for.
const missingQueueRetry = 100 * time.Millisecond

// AddEventSource starts MaxConcurrency pollers that receive batches from
// the queue and hand them to Invoke:
//
//   - a batch is up to BatchSize visible messages, made invisible for the
//     queue's visibility timeout;
//   - when Invoke fails nothing is deleted, so the batch comes back after
//     the visibility timeout (or sooner, where the function shortened a
//     message's with ChangeMessageVisibility) and, with a redrive policy,
//     ends in the dead-letter queue after maxReceiveCount receives;
//   - when it succeeds every message is deleted, except, with
//     ReportBatchItemFailures, those the response lists in
//     batchItemFailures, which stay in flight as they are. A response that
//     is not valid JSON, or lists an empty or unknown itemIdentifier,
//     fails the whole batch, as in Lambda.
//
// Pollers sleep while the queue has nothing to offer and wake on send; a
// queue that does not exist yet is looked for again every 100 ms. A
// mapping without Invoke does nothing. The returned stop ends the pollers,
// cancelling any Invoke in progress (its batch is not deleted), and waits
// for them; calling it again does nothing. Close stops every mapping.
func (s *Service) AddEventSource(m EventSourceMapping) (stop func()) {
	if m.Invoke == nil {
		return func() {}
	}
	if m.BatchSize <= 0 {
		m.BatchSize = DefaultBatchSize
	}
	m.BatchSize = min(m.BatchSize, maxBatchEntries)
	if m.MaxConcurrency <= 0 {
		m.MaxConcurrency = DefaultMaxConcurrency
	}
	ctx, cancel := context.WithCancel(s.life)
	var wg sync.WaitGroup
	// Under the lock, so that no poller starts once Close has begun to
	// wait for them.
	s.mu.Lock()
	if ctx.Err() == nil {
		s.pollers.Add(m.MaxConcurrency)
		for range m.MaxConcurrency {
			wg.Go(func() {
				defer s.pollers.Done()
				s.poll(ctx, m)
			})
		}
	}
	s.mu.Unlock()
	return func() {
		cancel()
		wg.Wait()
	}
}

// poll is one poller: receive a batch, invoke, settle, repeat.
func (s *Service) poll(ctx context.Context, m EventSourceMapping) {
	q := s.awaitQueue(ctx, m.QueueURL)
	for q != nil {
		batch := s.receive(ctx, q, m.BatchSize)
		if len(batch) == 0 {
			return // ctx ended
		}
		s.invoke(ctx, q, m, batch)
	}
}

// awaitQueue returns the queue at queueURL once it exists, or nil when ctx
// ends first.
func (s *Service) awaitQueue(ctx context.Context, queueURL string) *queue {
	for {
		s.mu.Lock()
		q, ok := s.queueByURL(queueURL)
		s.mu.Unlock()
		if ok {
			return q
		}
		if backoff.Sleep(ctx, missingQueueRetry) != nil {
			return nil
		}
	}
}

// invoke calls the function with a batch and deletes what succeeded.
func (s *Service) invoke(ctx context.Context, q *queue, m EventSourceMapping, batch []delivery) {
	payload, err := json.Marshal(sqsEvent(q, batch))
	if err != nil {
		return
	}
	resp, err := m.Invoke(ctx, payload)
	if err != nil {
		return
	}
	failed, ok := map[string]bool{}, true
	if m.ReportBatchItemFailures {
		failed, ok = batchItemFailures(resp, batch)
	}
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range batch {
		if !failed[d.msg.id] {
			q.settle(d)
		}
	}
}

// batchItemFailures reads an events.SQSEventResponse. It returns the ids
// of the failed messages, or ok false when the whole batch counts as
// failed: invalid JSON, or an itemIdentifier empty or not in the batch. An
// empty or null response means every message succeeded.
func batchItemFailures(resp []byte, batch []delivery) (failed map[string]bool, ok bool) {
	failed = map[string]bool{}
	resp = bytes.TrimSpace(resp)
	if len(resp) == 0 || bytes.Equal(resp, []byte("null")) {
		return failed, true
	}
	var r events.SQSEventResponse
	if err := json.Unmarshal(resp, &r); err != nil {
		return nil, false
	}
	inBatch := make(map[string]bool, len(batch))
	for _, d := range batch {
		inBatch[d.msg.id] = true
	}
	for _, f := range r.BatchItemFailures {
		if !inBatch[f.ItemIdentifier] {
			return nil, false
		}
		failed[f.ItemIdentifier] = true
	}
	return failed, true
}

// sqsEvent builds the event Lambda passes to a function for a batch.
func sqsEvent(q *queue, batch []delivery) events.SQSEvent {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(batch))}
	for _, d := range batch {
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId:     d.msg.id,
			ReceiptHandle: d.receiptHandle,
			Body:          d.msg.body,
			Md5OfBody:     d.msg.md5OfBody,
			Attributes: map[string]string{
				"ApproximateReceiveCount":          strconv.Itoa(d.receiveCount),
				"SentTimestamp":                    epochMillis(d.msg.sentAt),
				"ApproximateFirstReceiveTimestamp": epochMillis(d.firstReceivedAt),
				"SenderId":                         d.msg.senderID,
			},
			MessageAttributes: map[string]events.SQSMessageAttribute{},
			EventSourceARN:    q.arn,
			EventSource:       "aws:sqs",
			AWSRegion:         region,
		})
	}
	return ev
}

func epochMillis(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

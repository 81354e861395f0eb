package sqslocal

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

// EventSourceMapping drains a queue into a function the way Lambda's SQS
// poller does.
type EventSourceMapping struct {
	QueueURL                string
	BatchSize               int           // default 10, max 10
	MaxBatchingWindow       time.Duration // default 0: invoke as soon as messages are available
	MaxConcurrency          int           // parallel invocations, default 2
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
// queue that does not exist (yet, or any more).
const missingQueueRetry = 100 * time.Millisecond

// AddEventSource starts MaxConcurrency pollers that receive batches from
// the queue and hand them to Invoke:
//
//   - a batch is up to BatchSize visible messages, made invisible for the
//     queue's visibility timeout; with MaxBatchingWindow a poller waits up
//     to that long after the first message for a full batch;
//   - when Invoke fails nothing is deleted, so the batch comes back after
//     the visibility timeout and, with a redrive policy, ends in the
//     dead-letter queue after maxReceiveCount receives;
//   - when it succeeds every message is deleted, except, with
//     ReportBatchItemFailures, those the response lists in
//     batchItemFailures. A response that is not valid JSON, or lists an
//     empty or unknown itemIdentifier, fails the whole batch, as in Lambda.
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
	if m.MaxBatchingWindow < 0 {
		m.MaxBatchingWindow = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})

	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		cancel()
		return func() {}
	default:
	}
	id := s.nextID
	s.nextID++
	s.mappings[id] = cancel
	s.pollers.Add(1)
	s.mu.Unlock()

	go func() {
		defer s.pollers.Done()
		defer close(done)
		var wg sync.WaitGroup
		for range m.MaxConcurrency {
			wg.Go(func() { s.poll(ctx, m) })
		}
		wg.Wait()
	}()

	return func() {
		s.mu.Lock()
		delete(s.mappings, id)
		s.mu.Unlock()
		cancel()
		<-done
	}
}

// poll is one poller: receive a batch, invoke, settle, repeat.
func (s *Service) poll(ctx context.Context, m EventSourceMapping) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		default:
		}
		s.mu.Lock()
		q, err := s.queueByURL(m.QueueURL)
		s.mu.Unlock()
		if err != nil {
			s.wait(ctx, nil, time.Time{}, time.Now().Add(missingQueueRetry))
			continue
		}
		batch := s.nextBatch(ctx, q, m)
		if len(batch) == 0 {
			continue
		}
		s.invoke(ctx, q, m, batch)
	}
}

// nextBatch waits for messages and takes a batch; it returns nothing when
// the wait was cut short or another poller took the messages first.
func (s *Service) nextBatch(ctx context.Context, q *queue, m EventSourceMapping) []delivery {
	if !s.waitVisible(ctx, q, 1, time.Time{}) {
		return nil
	}
	if m.MaxBatchingWindow > 0 && m.BatchSize > 1 {
		if !s.waitVisible(ctx, q, m.BatchSize, time.Now().Add(m.MaxBatchingWindow)) {
			return nil
		}
	}
	batch, err := s.receive(ctx, q, m.BatchSize, nil, 0)
	if err != nil {
		return nil
	}
	return batch
}

// invoke calls the function with a batch and deletes what succeeded.
func (s *Service) invoke(ctx context.Context, q *queue, m EventSourceMapping, batch []delivery) {
	payload, err := json.Marshal(s.sqsEvent(q, batch))
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
	if q.deleted {
		return
	}
	for _, d := range batch {
		if !failed[d.msg.id] {
			// A stale handle (the message was received again after its
			// visibility timeout) deletes nothing, as in SQS.
			_ = s.deleteMessage(q, d.receiptHandle)
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
func (s *Service) sqsEvent(q *queue, batch []delivery) events.SQSEvent {
	all := map[string]bool{"All": true}
	ev := events.SQSEvent{Records: make([]events.SQSMessage, 0, len(batch))}
	for _, d := range batch {
		attrs := make(map[string]events.SQSMessageAttribute, len(d.msg.attributes))
		for name, v := range d.msg.attributes {
			attrs[name] = events.SQSMessageAttribute{
				DataType:         deref(v.DataType),
				StringValue:      v.StringValue,
				BinaryValue:      v.BinaryValue,
				StringListValues: []string{},
				BinaryListValues: [][]byte{},
			}
		}
		ev.Records = append(ev.Records, events.SQSMessage{
			MessageId:              d.msg.id,
			ReceiptHandle:          d.receiptHandle,
			Body:                   d.msg.body,
			Md5OfBody:              d.msg.md5OfBody,
			Md5OfMessageAttributes: md5OfAttributes(d.msg.attributes),
			Attributes:             d.systemAttributes(all),
			MessageAttributes:      attrs,
			EventSourceARN:         q.arn,
			EventSource:            "aws:sqs",
			AWSRegion:              s.opts.Region,
		})
	}
	return ev
}

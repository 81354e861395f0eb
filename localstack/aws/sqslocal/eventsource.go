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
	QueueURL  string
	BatchSize int // default 10, max 10
	// MaxConcurrency is ScalingConfig.MaximumConcurrency: at most this
	// many invocations at once. 0 means none set: up to MaxPollers, as
	// Lambda scales a mapping without one.
	MaxConcurrency          int
	ReportBatchItemFailures bool
	// ScaleInterval is how often one more poller starts while messages
	// wait: DefaultScaleInterval (Lambda's 300 a minute) when 0. Tests
	// shorten it. A poller above the first InitialPollers that finds the
	// queue empty for 300 intervals (a minute at Lambda's pace) stops.
	ScaleInterval time.Duration
	// Invoke calls the function with an events.SQSEvent JSON payload and
	// returns its response payload (an events.SQSEventResponse JSON when
	// ReportBatchItemFailures). The context ends when the mapping stops.
	Invoke func(ctx context.Context, payload []byte) ([]byte, error)
}

// Defaults of EventSourceMapping, and Lambda's scaling of a standard
// queue's pollers
// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html):
// it starts with five concurrent batches, adds up to 300 more a minute
// while messages are available, up to 1,000 at once, and scales back to
// five when traffic is low; ScalingConfig.MaximumConcurrency (2 to 1,000,
// https://docs.aws.amazon.com/lambda/latest/dg/API_ScalingConfig.html)
// caps it. (The page said 60 a minute up to 1,250 before 2023; the current
// text is the one above.)
const (
	DefaultBatchSize     = 10
	InitialPollers       = 5
	MaxPollers           = 1000
	DefaultScaleInterval = time.Minute / 300
	// idleIntervals is how many ScaleIntervals an extra poller waits on
	// an empty queue before it stops.
	idleIntervals = 300
)

// missingQueueRetry is how long a poller waits before looking again for a
// queue that does not exist yet. A fixed wait, not a backoff policy: the
// queue appears once, at a moment nothing else contends for.
const missingQueueRetry = 100 * time.Millisecond

// AddEventSource starts pollers that receive batches from the queue and
// hand them to Invoke, min(InitialPollers, MaxConcurrency) at first, one
// more every ScaleInterval while the queue has visible messages, up to
// MaxConcurrency (MaxPollers when 0); those above the first stop again
// when the queue stays empty:
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
		m.MaxConcurrency = MaxPollers
	}
	if m.ScaleInterval <= 0 {
		m.ScaleInterval = DefaultScaleInterval
	}
	ctx, cancel := context.WithCancel(s.life)
	sc := &scaler{s: s, m: m, ctx: ctx}
	for range min(InitialPollers, m.MaxConcurrency) {
		sc.start(0)
	}
	s.mu.Lock()
	if ctx.Err() == nil {
		s.pollers.Add(1)
		sc.wg.Go(func() {
			defer s.pollers.Done()
			sc.grow()
		})
	}
	s.mu.Unlock()
	return func() {
		cancel()
		sc.wg.Wait()
	}
}

// scaler runs one mapping's pollers and grows their number.
type scaler struct {
	s   *Service
	m   EventSourceMapping
	ctx context.Context
	wg  sync.WaitGroup
	// pollers counts the pollers running; guarded by s.mu.
	pollers int
}

// start starts a poller; one that may stop when idle has idle > 0. It
// reports false when the mapping is stopping or at its maximum.
func (sc *scaler) start(idle time.Duration) bool {
	s := sc.s
	// Under the lock, so that no poller starts once Close has begun to
	// wait for them.
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc.ctx.Err() != nil || sc.pollers >= sc.m.MaxConcurrency {
		return false
	}
	sc.pollers++
	s.esmPollers[sc.m.QueueURL]++
	s.pollers.Add(1)
	sc.wg.Go(func() {
		defer s.pollers.Done()
		s.poll(sc.ctx, sc.m, idle)
		s.mu.Lock()
		sc.pollers--
		s.esmPollers[sc.m.QueueURL]--
		s.mu.Unlock()
	})
	return true
}

// grow adds a poller every ScaleInterval while the queue has visible
// messages.
func (sc *scaler) grow() {
	s := sc.s
	q := s.awaitQueue(sc.ctx, sc.m.QueueURL)
	for q != nil && backoff.Sleep(sc.ctx, sc.m.ScaleInterval) == nil {
		s.mu.Lock()
		q.advance(time.Now())
		waiting := q.visible > 0
		s.mu.Unlock()
		if waiting {
			sc.start(idleIntervals * sc.m.ScaleInterval)
		}
	}
}

// EventSourcePollers is how many pollers the mappings of queueURL run now.
func (s *Service) EventSourcePollers(queueURL string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.esmPollers[queueURL]
}

// poll is one poller: receive a batch, invoke, settle, repeat. With idle
// > 0 it stops once it has found nothing to receive for that long.
func (s *Service) poll(ctx context.Context, m EventSourceMapping, idle time.Duration) {
	q := s.awaitQueue(ctx, m.QueueURL)
	for q != nil {
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if idle > 0 {
			rctx, cancel = context.WithTimeout(ctx, idle)
		}
		batch := s.receive(rctx, q, m.BatchSize)
		cancel()
		if len(batch) == 0 {
			return // ctx ended, or idle
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

package fanout

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
)

// job is one delivery's next attempt.
type job struct {
	index   int
	attempt int
	full    bool // the last answer was a full client buffer
	settles int  // 410s retried as a connection still registering
}

// batch is one SendTracked call: the deliveries, the queue of jobs its
// workers take, and what they have done so far.
type batch struct {
	poster     Poster
	opts       Options
	deliveries []Delivery
	delivered  func(i int)
	// work holds every job waiting for a worker; a retry is put back on
	// it later by a timer, so no worker waits for one.
	work                 chan job
	pending              sync.WaitGroup // deliveries not yet settled
	deadline             time.Time
	hasDeadline          bool
	window               *throttleWindow
	calls, done, retried atomic.Int64
	throttled            atomic.Int64
	bufferFull, settling atomic.Int64

	mu                 sync.Mutex
	gone, failed, slow []string
}

// newBatch starts a SendTracked call under ctx's deadline.
func (s *Sender) newBatch(ctx context.Context, deliveries []Delivery, delivered func(int)) *batch {
	b := &batch{poster: s.poster, opts: s.opts, deliveries: deliveries, delivered: delivered,
		work: make(chan job, len(deliveries)), window: newThrottleWindow()}
	b.deadline, b.hasDeadline = ctx.Deadline()
	return b
}

// post makes job j's attempt and settles the delivery (delivered, gone,
// failed) or schedules its retry.
func (b *batch) post(ctx context.Context, j job) {
	d := b.deliveries[j.index]
	if b.opts.Pacer != nil {
		if err := b.opts.Pacer.Wait(ctx); err != nil {
			b.fail(j)
			return
		}
	}
	b.calls.Add(1)
	_, err := b.poster.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
		ConnectionId: &d.ConnectionID, Data: d.Data,
	})
	class := Classify(err)
	accountWide := b.window.record(errors.Is(class, ErrThrottled))
	switch {
	case class == nil:
		b.succeed(j)
	case errors.Is(class, ErrGone) && b.mayBeSettling(ctx, j):
		b.settle(j)
	case errors.Is(class, ErrGone):
		b.mu.Lock()
		b.gone = append(b.gone, d.ConnectionID)
		b.mu.Unlock()
		b.pending.Done()
	case errors.Is(class, ErrRejected), ctx.Err() != nil:
		b.fail(j)
	case errors.Is(class, ErrThrottled) && accountWide:
		// Many clients throttled at once: the account's budget.
		b.throttled.Add(1)
		j.full = false
		if b.opts.Pacer != nil {
			b.opts.Pacer.Throttled()
		}
		b.retry(j)
	case errors.Is(class, ErrThrottled):
		// Others get through: this client's buffer is full. Only it
		// waits; the pacer keeps its pace.
		b.bufferFull.Add(1)
		j.full = true
		b.retry(j)
	default:
		j.full = false
		b.retry(j)
	}
}

// succeed settles job j as delivered.
func (b *batch) succeed(j job) {
	b.done.Add(1)
	if b.opts.Pacer != nil {
		b.opts.Pacer.Succeeded()
	}
	if b.delivered != nil {
		b.delivered(j.index)
	}
	b.pending.Done()
}

// mayBeSettling reports whether a connection that answered 410 may still
// be registering (see Options.Settling), while the window allows retries.
func (b *batch) mayBeSettling(ctx context.Context, j job) bool {
	return j.settles < maxSettles && b.opts.Settling != nil && b.opts.Settling(ctx, b.deliveries[j.index].ConnectionID)
}

// settle tries a connection still registering again once it may be. The
// window bounds these retries, not MaxAttempts.
func (b *batch) settle(j job) {
	b.settling.Add(1)
	if !b.fits(SettleDelay) {
		b.fail(j)
		return
	}
	j.settles++
	b.later(SettleDelay, j)
}

// retry schedules job j's next attempt after its backoff, unless it is out
// of attempts or of time.
func (b *batch) retry(j job) {
	if j.attempt >= b.opts.MaxAttempts {
		b.fail(j)
		return
	}
	delay := b.opts.Backoff(j.attempt)
	if !b.fits(delay) {
		b.fail(j)
		return
	}
	b.retried.Add(1)
	j.attempt++
	b.later(delay, j)
}

// fits reports whether an attempt after delay still leaves the reserve
// before the deadline.
func (b *batch) fits(delay time.Duration) bool {
	return !b.hasDeadline || !time.Now().Add(delay+b.opts.Reserve).After(b.deadline)
}

// later puts j back on the queue after delay, without holding a worker,
// so one slow client's full buffer never stalls the others.
func (b *batch) later(delay time.Duration, j job) {
	time.AfterFunc(delay, func() { b.work <- j })
}

// fail settles job j as given up on.
func (b *batch) fail(j job) {
	id := b.deliveries[j.index].ConnectionID
	b.mu.Lock()
	b.failed = append(b.failed, id)
	if j.full {
		b.slow = append(b.slow, id)
	}
	b.mu.Unlock()
	b.pending.Done()
}

// summary is what the batch did, once every delivery is settled.
func (b *batch) summary(took time.Duration) Summary {
	return Summary{
		Calls: int(b.calls.Load()), Delivered: int(b.done.Load()), Retried: int(b.retried.Load()),
		Throttled: int(b.throttled.Load()), BufferFull: int(b.bufferFull.Load()), Settling: int(b.settling.Load()),
		Gone: b.gone, Failed: b.failed, SlowClients: b.slow, Duration: took,
	}
}

// Package fanout posts ready frames (see frame) to many API Gateway
// connections in parallel, knowing nothing of events:
// a bounded pool of workers over one kept-alive HTTP client, retries with
// jittered exponential backoff inside the invocation's deadline, 410 Gone
// reported for cleanup, and a summary of what happened.
package fanout

import (
	"context"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// Delivery is one frame for one connection.
type Delivery struct {
	ConnectionID string
	Data         []byte
}

// Summary is what one Send did.
type Summary struct {
	// Calls is the number of PostToConnection requests made.
	Calls     int
	Delivered int
	// Retried counts retry attempts. Throttled counts 429 answers judged to
	// be the account's rate limit (they slow the pacer); BufferFull counts
	// 429 answers judged to be one client's full buffer (they only delay
	// that client).
	Retried    int
	Throttled  int
	BufferFull int
	// Settling counts 410 answers from connections still registering
	// (retried, see Options.Settling).
	Settling int
	// Gone lists connections that answered 410; Failed lists deliveries
	// given up on (rejected, out of attempts or out of time); SlowClients
	// are the failed ones whose last answer was a full buffer.
	Gone        []string
	Failed      []string
	SlowClients []string
	Duration    time.Duration
}

// Options tune a Sender.
type Options struct {
	// Workers bounds concurrent PostToConnection calls.
	Workers int
	// MaxAttempts per delivery (first try included).
	MaxAttempts int
	// Backoff computes the delay before retry n (1-based); Backoff by default.
	Backoff func(attempt int) time.Duration
	// Reserve is kept free before the context deadline: no retry is
	// scheduled that could not finish before it.
	Reserve time.Duration
	// Pacer, when set, is waited on before every call.
	Pacer Pacer
	// Settling, when set, is asked about a connection that answered 410:
	// true means it may still be registering (its $connect finished a
	// moment ago, see ConnectWindow), so the post is retried after
	// SettleDelay instead of the connection being reported gone.
	Settling func(ctx context.Context, connectionID string) bool
}

// Pacer bounds the call rate (see NewPacer).
type Pacer interface {
	Wait(ctx context.Context) error
	Throttled()
	Succeeded()
}

// Sender posts deliveries.
type Sender struct {
	poster Poster
	opts   Options
}

// NewSender returns a Sender. The poster's own SDK retries should be off
// (RetryMaxAttempts 1): the Sender retries without blocking its workers.
func NewSender(p Poster, opts Options) *Sender {
	if opts.Workers <= 0 {
		opts.Workers = 64
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 6
	}
	if opts.Backoff == nil {
		opts.Backoff = Backoff
	}
	if opts.Reserve <= 0 {
		opts.Reserve = 500 * time.Millisecond
	}
	return &Sender{poster: p, opts: opts}
}

// Backoff is the delay before retry attempt (1, 2, ...), the default of
// Options.Backoff: full jitter, 25 ms doubling to 2 s; a PostToConnection
// takes tens of milliseconds, so retries start at that scale.
func Backoff(attempt int) time.Duration {
	return backoff.Policy{Base: 25 * time.Millisecond, Max: 2 * time.Second}.Delay(attempt - 1)
}

// Send delivers every frame, each at most once successfully, and returns
// when all are delivered, gone or given up on.
func (s *Sender) Send(ctx context.Context, deliveries []Delivery) Summary {
	return s.SendTracked(ctx, deliveries, nil)
}

// SendTracked is Send, calling delivered(i) (from any goroutine) as soon as
// deliveries[i] is delivered, so a caller can checkpoint progress.
func (s *Sender) SendTracked(ctx context.Context, deliveries []Delivery, delivered func(i int)) Summary {
	start := time.Now()
	if len(deliveries) == 0 {
		return Summary{}
	}
	b := s.newBatch(ctx, deliveries, delivered)
	b.pending.Add(len(deliveries))
	for i := range deliveries {
		b.work <- job{index: i, attempt: 1}
	}
	var wg sync.WaitGroup
	for range min(s.opts.Workers, len(deliveries)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range b.work {
				b.post(ctx, j)
			}
		}()
	}
	b.pending.Wait()
	close(b.work)
	wg.Wait()
	return b.summary(time.Since(start))
}

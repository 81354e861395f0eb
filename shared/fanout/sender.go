// Package fanout posts frames to many API Gateway connections in parallel:
// a bounded pool of workers over one kept-alive HTTP client, retries with
// jittered exponential backoff inside the invocation's deadline, 410 Gone
// reported for cleanup, and a summary of what happened.
package fanout

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Poster is the part of the @connections client fan-out needs.
type Poster interface {
	PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error)
}

// Outcome classes of one PostToConnection call.
var (
	// ErrGone: the connection no longer exists (410); remove it.
	ErrGone = errors.New("connection gone")
	// ErrThrottled: 429 LimitExceededException, the account's rate or the
	// client's full buffer; retried.
	ErrThrottled = errors.New("throttled")
	// ErrRejected: the request can never succeed (403, 413, 400).
	ErrRejected = errors.New("rejected")
)

// Classify maps a PostToConnection error to ErrGone, ErrThrottled,
// ErrRejected, or itself (transient: 5xx, network, timeout).
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var gone *types.GoneException
	var limit *types.LimitExceededException
	var tooLarge *types.PayloadTooLargeException
	var forbidden *types.ForbiddenException
	switch {
	case errors.As(err, &gone):
		return ErrGone
	case errors.As(err, &limit):
		return ErrThrottled
	case errors.As(err, &tooLarge), errors.As(err, &forbidden):
		return ErrRejected
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch code := re.HTTPStatusCode(); {
		case code == http.StatusGone:
			return ErrGone
		case code == http.StatusTooManyRequests:
			return ErrThrottled
		case code >= 400 && code < 500:
			return ErrRejected
		}
	}
	return err
}

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

// ConnectWindow is how long after its $connect a connection may answer
// 410 while API Gateway finishes registering it: AWS documents the lag
// without bounding it, and it is well under a second in practice. Within
// the window a 410 means "not yet", never "gone".
const ConnectWindow = 5 * time.Second

// SettleDelay is the wait before posting again to a settling connection;
// maxSettles bounds those retries whatever the clock says.
const (
	SettleDelay = 250 * time.Millisecond
	maxSettles  = int(ConnectWindow / SettleDelay)
)

// Settling reports whether a connection that connected at connectedAt may
// still be registering at now.
func Settling(connectedAt, now time.Time) bool {
	return !connectedAt.IsZero() && now.Sub(connectedAt) < ConnectWindow
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

type job struct {
	index   int
	attempt int
	full    bool // the last answer was a full client buffer
	settles int  // 410s retried as a connection still registering
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
	var sum Summary
	if len(deliveries) == 0 {
		return sum
	}
	var (
		mu                                          sync.Mutex
		calls, done, retried, throttled, bufferFull atomic.Int64
		settling                                    atomic.Int64
		pending                                     sync.WaitGroup
		work                                        = make(chan job, len(deliveries))
		deadline, hasDeadline                       = ctx.Deadline()
		window                                      = newThrottleWindow()
	)
	fail := func(j job) {
		id := deliveries[j.index].ConnectionID
		mu.Lock()
		sum.Failed = append(sum.Failed, id)
		if j.full {
			sum.SlowClients = append(sum.SlowClients, id)
		}
		mu.Unlock()
		pending.Done()
	}
	pending.Add(len(deliveries))
	for i := range deliveries {
		work <- job{index: i, attempt: 1}
	}
	workers := min(s.opts.Workers, len(deliveries))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				d := deliveries[j.index]
				if s.opts.Pacer != nil {
					if err := s.opts.Pacer.Wait(ctx); err != nil {
						fail(j)
						continue
					}
				}
				calls.Add(1)
				_, err := s.poster.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
					ConnectionId: &d.ConnectionID, Data: d.Data,
				})
				class := Classify(err)
				accountWide := window.record(errors.Is(class, ErrThrottled))
				switch {
				case class == nil:
					done.Add(1)
					if s.opts.Pacer != nil {
						s.opts.Pacer.Succeeded()
					}
					if delivered != nil {
						delivered(j.index)
					}
					pending.Done()
					continue
				case errors.Is(class, ErrGone) && j.settles < maxSettles && s.opts.Settling != nil && s.opts.Settling(ctx, d.ConnectionID):
					// Not registered yet: try again once it may be. The
					// window bounds these retries, not MaxAttempts.
					settling.Add(1)
					if hasDeadline && time.Now().Add(SettleDelay+s.opts.Reserve).After(deadline) {
						fail(j)
						continue
					}
					next := j
					next.settles++
					time.AfterFunc(SettleDelay, func() { work <- next })
					continue
				case errors.Is(class, ErrGone):
					mu.Lock()
					sum.Gone = append(sum.Gone, d.ConnectionID)
					mu.Unlock()
					pending.Done()
					continue
				case errors.Is(class, ErrRejected), ctx.Err() != nil:
					fail(j)
					continue
				case errors.Is(class, ErrThrottled) && accountWide:
					// Many clients throttled at once: the account's budget.
					throttled.Add(1)
					j.full = false
					if s.opts.Pacer != nil {
						s.opts.Pacer.Throttled()
					}
				case errors.Is(class, ErrThrottled):
					// Others get through: this client's buffer is full. Only
					// it waits; the pacer keeps its pace.
					bufferFull.Add(1)
					j.full = true
				default:
					j.full = false
				}
				// Retry later without holding a worker, so one slow client's
				// full buffer never stalls the others.
				if j.attempt >= s.opts.MaxAttempts {
					fail(j)
					continue
				}
				delay := s.opts.Backoff(j.attempt)
				if hasDeadline && time.Now().Add(delay+s.opts.Reserve).After(deadline) {
					fail(j)
					continue
				}
				retried.Add(1)
				j.attempt++
				next := j
				time.AfterFunc(delay, func() { work <- next })
			}
		}()
	}
	pending.Wait()
	close(work)
	wg.Wait()
	sum.Calls = int(calls.Load())
	sum.Delivered = int(done.Load())
	sum.Retried = int(retried.Load())
	sum.Throttled = int(throttled.Load())
	sum.BufferFull = int(bufferFull.Load())
	sum.Settling = int(settling.Load())
	sum.Duration = time.Since(start)
	return sum
}

// throttleWindow remembers whether each of the last calls was throttled, to
// tell the account's rate limit (a large share of calls throttled) from one
// client's full buffer (a few).
type throttleWindow struct {
	mu        sync.Mutex
	ring      [256]bool
	n, next   int
	throttled int
}

// Account-wide throttling: at least this share of the recent calls, over at
// least minSamples of them.
const (
	accountShare = 0.2
	minSamples   = 20
)

func newThrottleWindow() *throttleWindow { return &throttleWindow{} }

// record adds one outcome and reports whether throttling is account-wide.
func (w *throttleWindow) record(throttled bool) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == len(w.ring) {
		if w.ring[w.next] {
			w.throttled--
		}
	} else {
		w.n++
	}
	w.ring[w.next] = throttled
	if throttled {
		w.throttled++
	}
	w.next = (w.next + 1) % len(w.ring)
	return w.n >= minSamples && float64(w.throttled) >= accountShare*float64(w.n)
}

// Backoff is exponential with full jitter: a random delay up to 25 ms
// doubled per attempt, capped at 2 s; a PostToConnection takes tens of
// milliseconds, so retries start at that scale.
func Backoff(attempt int) time.Duration {
	ceiling := min(25*time.Millisecond<<min(attempt-1, 7), 2*time.Second)
	return time.Millisecond + time.Duration(rand.Int64N(int64(ceiling)))
}

// NewHTTPClient returns the kept-alive HTTP client fan-out should give the
// @connections SDK client: enough idle connections per host for every
// worker, so calls reuse TLS sessions instead of dialing.
func NewHTTPClient(workers int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = workers * 2
	tr.MaxIdleConnsPerHost = workers * 2
	tr.MaxConnsPerHost = 0
	tr.IdleConnTimeout = 90 * time.Second
	tr.DialContext = (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

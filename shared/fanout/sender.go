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
	// Retried counts retry attempts; Throttled counts 429 answers.
	Retried   int
	Throttled int
	// Gone lists connections that answered 410; Failed lists deliveries
	// given up on (rejected, out of attempts or out of time).
	Gone     []string
	Failed   []string
	Duration time.Duration
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
	d       Delivery
	attempt int
}

// Send delivers every frame, each at most once successfully, and returns
// when all are delivered, gone or given up on.
func (s *Sender) Send(ctx context.Context, deliveries []Delivery) Summary {
	start := time.Now()
	var sum Summary
	if len(deliveries) == 0 {
		return sum
	}
	var (
		mu                                   sync.Mutex
		calls, delivered, retried, throttled atomic.Int64
		pending                              sync.WaitGroup
		work                                 = make(chan job, len(deliveries))
		deadline, hasDeadline                = ctx.Deadline()
	)
	fail := func(id string) {
		mu.Lock()
		sum.Failed = append(sum.Failed, id)
		mu.Unlock()
	}
	pending.Add(len(deliveries))
	for _, d := range deliveries {
		work <- job{d: d, attempt: 1}
	}
	workers := min(s.opts.Workers, len(deliveries))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				if s.opts.Pacer != nil {
					if err := s.opts.Pacer.Wait(ctx); err != nil {
						fail(j.d.ConnectionID)
						pending.Done()
						continue
					}
				}
				calls.Add(1)
				_, err := s.poster.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{
					ConnectionId: &j.d.ConnectionID, Data: j.d.Data,
				})
				class := Classify(err)
				switch {
				case class == nil:
					delivered.Add(1)
					if s.opts.Pacer != nil {
						s.opts.Pacer.Succeeded()
					}
					pending.Done()
					continue
				case errors.Is(class, ErrGone):
					mu.Lock()
					sum.Gone = append(sum.Gone, j.d.ConnectionID)
					mu.Unlock()
					pending.Done()
					continue
				case errors.Is(class, ErrRejected), ctx.Err() != nil:
					fail(j.d.ConnectionID)
					pending.Done()
					continue
				case errors.Is(class, ErrThrottled):
					throttled.Add(1)
					if s.opts.Pacer != nil {
						s.opts.Pacer.Throttled()
					}
				}
				// Transient or throttled: retry later without holding a worker,
				// so one slow client's full buffer never stalls the others.
				if j.attempt >= s.opts.MaxAttempts {
					fail(j.d.ConnectionID)
					pending.Done()
					continue
				}
				delay := s.opts.Backoff(j.attempt)
				if hasDeadline && time.Now().Add(delay+s.opts.Reserve).After(deadline) {
					fail(j.d.ConnectionID)
					pending.Done()
					continue
				}
				retried.Add(1)
				next := job{d: j.d, attempt: j.attempt + 1}
				time.AfterFunc(delay, func() { work <- next })
			}
		}()
	}
	pending.Wait()
	close(work)
	wg.Wait()
	sum.Calls = int(calls.Load())
	sum.Delivered = int(delivered.Load())
	sum.Retried = int(retried.Load())
	sum.Throttled = int(throttled.Load())
	sum.Duration = time.Since(start)
	return sum
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

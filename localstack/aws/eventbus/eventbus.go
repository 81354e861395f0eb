// Package eventbus emulates Amazon EventBridge's PutEvents on one machine:
// AWS JSON 1.1 requests with AWS's limits, entry validation and per-entry
// results; buses; rules whose event patterns use exact strings, prefix and
// exists (package eventpattern; other operators are refused); and
// asynchronous delivery to Lambda targets, retried on Lambda's schedule
// for asynchronous invocations, as EventBridge invokes Lambda.
//
// Delivery is as loose as AWS's when Options ask for it (the local stack
// does by default): at least once (a share of events is delivered twice,
// the same event id and bytes in two separate invocations) and in no
// particular order (each delivery is held back a random time within a
// window, so an event put later may overtake it).
package eventbus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/eventpattern"
	"github.com/wsgate/wsgate/shared/backoff"
)

// The region and account events carry.
const (
	region    = "us-east-1"
	accountID = "000000000000"
)

// Target receives matched events (the EventBridge event JSON), like an
// asynchronous Lambda invocation.
type Target func(ctx context.Context, event []byte) error

// Rule forwards matching events on a bus to a target.
type Rule struct {
	Name    string
	Bus     string
	Pattern string
	Target  Target
}

// Options configure the service.
type Options struct {
	// RetryDelays are the waits before each retry of a delivery whose
	// target failed, one element per retry. nil means Lambda's schedule
	// for an asynchronous invocation, LambdaRetryDelays(1): a retry after
	// 1 minute, another 2 minutes later. Tests shorten it with
	// LambdaRetryDelays(scale); an empty, non-nil slice means no retries.
	RetryDelays []time.Duration
	// MaxEventAge bounds how long after PutEvents an event is still
	// retried (Lambda's MaximumEventAgeInSeconds): a retry that would start
	// later is not made and the event is dead-lettered. 0 means
	// LambdaMaxEventAge, 6 hours.
	MaxEventAge time.Duration
	// ThrottleRetry paces the retries of a delivery whose target was
	// throttled or met a system error (ErrThrottled): Lambda returns the
	// event to its queue and tries again, exponentially from 1 second up
	// to 5 minutes apart, until MaxEventAge, without using up RetryDelays.
	// The zero value means LambdaThrottleRetry(1).
	ThrottleRetry backoff.Policy
	// DuplicateRate is the share of events (0 to 1) delivered to a target
	// twice, as EventBridge and Lambda's asynchronous queue may: the same
	// event id and bytes, invoked separately, possibly at once. 0: never.
	DuplicateRate float64
	// ReorderWindow holds deliveries back a random time below it before
	// their first attempt, so events put within the window may reach a
	// target in any order, as EventBridge promises no order. 0: none.
	ReorderWindow time.Duration
	// ReorderRate is the share of deliveries (0 to 1) held back; 0 holds
	// every one.
	ReorderRate float64
	Log         *slog.Logger // default: discard
}

// Stats count deliveries. Delivered, Retried and DeadLettered count each
// copy of a duplicated event; Duplicated counts the second copies.
// Overtaken counts deliveries whose first attempt started after a delivery
// of an event put later (to the same rule); Throttled counts the retries
// of throttled attempts.
type Stats struct {
	Accepted, Delivered, Retried, DeadLettered atomic.Int64
	Duplicated, Overtaken, Throttled           atomic.Int64
}

// Service is the local EventBridge.
type Service struct {
	retryDelays   []time.Duration
	maxEventAge   time.Duration
	throttleRetry backoff.Policy
	duplicateRate float64
	reorderWindow time.Duration
	reorderRate   float64
	log           *slog.Logger
	stats         Stats
	// accepted numbers the events in the order they were accepted.
	accepted atomic.Uint64

	mu    sync.RWMutex
	buses map[string]bool
	rules []compiledRule

	// life ends when Close is called, which ends the waits between retries.
	life       context.Context
	end        context.CancelFunc
	deliveries sync.WaitGroup
}

type compiledRule struct {
	Rule
	pattern eventpattern.Pattern
	// started is the highest number (Service.accepted) of an event whose
	// delivery to this rule has started.
	started *atomic.Uint64
}

// New returns a Service with the default bus.
func New(opts Options) *Service {
	s := &Service{
		retryDelays:   LambdaRetryDelays(1),
		maxEventAge:   LambdaMaxEventAge,
		throttleRetry: opts.ThrottleRetry,
		duplicateRate: min(max(opts.DuplicateRate, 0), 1),
		reorderWindow: max(opts.ReorderWindow, 0),
		reorderRate:   reorderRate(opts.ReorderRate),
		log:           opts.Log,
		buses:         map[string]bool{"default": true},
	}
	if s.throttleRetry == (backoff.Policy{}) {
		s.throttleRetry = LambdaThrottleRetry(1)
	}
	if opts.RetryDelays != nil {
		s.retryDelays = append([]time.Duration{}, opts.RetryDelays...)
	}
	if opts.MaxEventAge > 0 {
		s.maxEventAge = opts.MaxEventAge
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.life, s.end = context.WithCancel(context.Background())
	return s
}

// Stats returns the delivery counters.
func (s *Service) Stats() *Stats { return &s.stats }

// CreateBus adds an event bus.
func (s *Service) CreateBus(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buses[name] = true
}

// PutRule adds a rule. Its pattern may match fields with lists of exact
// strings, {"prefix": string} and {"exists": bool}, and nest objects;
// anything else is an error (package eventpattern).
func (s *Service) PutRule(r Rule) error {
	p, err := eventpattern.Compile(r.Pattern)
	if err != nil {
		return fmt.Errorf("eventbus: rule %s: %w", r.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.buses[r.Bus] {
		return fmt.Errorf("eventbus: rule %s: no bus %q", r.Name, r.Bus)
	}
	s.rules = append(s.rules, compiledRule{Rule: r, pattern: p, started: new(atomic.Uint64)})
	return nil
}

// Close stops retries and waits for deliveries in flight.
func (s *Service) Close() {
	s.end()
	s.deliveries.Wait()
}

// targets returns the rules of bus whose pattern matches event, and
// whether the bus exists.
func (s *Service) targets(bus string, event map[string]any) ([]compiledRule, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []compiledRule
	for _, r := range s.rules {
		if r.Bus == bus && r.pattern.Match(event) {
			out = append(out, r)
		}
	}
	return out, s.buses[bus]
}

// reorderRate reads Options.ReorderRate: 0 (or out of range) holds every
// delivery.
func reorderRate(r float64) float64 {
	if r <= 0 || r > 1 {
		return 1
	}
	return r
}

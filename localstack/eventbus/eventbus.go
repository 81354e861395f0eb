// Package eventbus emulates Amazon EventBridge's PutEvents on one machine:
// AWS JSON 1.1 requests with AWS's limits, entry validation and per-entry
// results; buses; rules whose event patterns use exact strings, prefix and
// exists (package eventpattern; other operators are refused); and
// asynchronous delivery to Lambda targets, retried on Lambda's schedule
// for asynchronous invocations, as EventBridge invokes Lambda.
package eventbus

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/localstack/eventpattern"
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
	Log         *slog.Logger // default: discard
}

// Stats count deliveries.
type Stats struct {
	Accepted, Delivered, Retried, DeadLettered atomic.Int64
}

// Service is the local EventBridge.
type Service struct {
	retryDelays []time.Duration
	maxEventAge time.Duration
	log         *slog.Logger
	stats       Stats

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
}

// New returns a Service with the default bus.
func New(opts Options) *Service {
	s := &Service{
		retryDelays: LambdaRetryDelays(1),
		maxEventAge: LambdaMaxEventAge,
		log:         opts.Log,
		buses:       map[string]bool{"default": true},
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
	s.rules = append(s.rules, compiledRule{Rule: r, pattern: p})
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

package eventbus

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// Lambda's defaults for an asynchronous invocation whose function returns
// an error, which is how EventBridge invokes a Lambda target: two more
// attempts, one minute after the first and two minutes after the second,
// for an event at most six hours old (Lambda's EventInvokeConfig
// MaximumRetryAttempts and MaximumEventAgeInSeconds).
const (
	LambdaFirstRetryDelay = time.Minute
	LambdaMaxEventAge     = 6 * time.Hour
)

// Lambda's pacing of a throttled (429) or system-error (5xx) asynchronous
// invocation: the event goes back to the queue and is tried again, the
// interval growing exponentially from 1 second to at most 5 minutes, for
// up to LambdaMaxEventAge. These retries are not MaximumRetryAttempts.
const (
	LambdaFirstThrottleRetry = time.Second
	LambdaMaxThrottleRetry   = 5 * time.Minute
)

// ErrThrottled marks a target's error as Lambda's throttle or a system
// error rather than the function's: the delivery is retried with
// ThrottleRetry until the event is too old, apart from RetryDelays.
var ErrThrottled = errors.New("eventbus: target throttled")

// LambdaRetryDelays returns Lambda's retry schedule with each delay
// multiplied by scale: 1 minute then 2 minutes when scale is 1, 600 ms
// then 1.2 s when it is 0.01. A scale that is not positive counts as 1.
func LambdaRetryDelays(scale float64) []time.Duration {
	if scale <= 0 {
		scale = 1
	}
	first := time.Duration(scale * float64(LambdaFirstRetryDelay))
	return []time.Duration{first, 2 * first}
}

// LambdaThrottleRetry returns Lambda's pacing of throttled attempts with
// its bounds multiplied by scale (not positive counts as 1). The delays are
// jittered (backoff.Equal: at least half the doubled interval): AWS states
// the growth, not exact times.
func LambdaThrottleRetry(scale float64) backoff.Policy {
	if scale <= 0 {
		scale = 1
	}
	return backoff.Policy{
		Base:   time.Duration(scale * float64(LambdaFirstThrottleRetry)),
		Max:    time.Duration(scale * float64(LambdaMaxThrottleRetry)),
		Jitter: backoff.Equal,
	}
}

// delivery is one event on its way to one rule's target.
type delivery struct {
	id    string
	event []byte
	// order is the event's place among the events the service accepted.
	order uint64
}

// dispatch delivers an event to a rule's target, and a share of events
// (DuplicateRate) a second time: the same id and bytes in a separate
// invocation, as EventBridge's at-least-once delivery may.
func (s *Service) dispatch(r compiledRule, d delivery) {
	s.deliver(r, d)
	if s.duplicateRate > 0 && rand.Float64() < s.duplicateRate {
		s.stats.Duplicated.Add(1)
		d.event = bytes.Clone(d.event)
		s.deliver(r, d)
	}
}

// deliver invokes the target asynchronously, as Lambda runs an
// asynchronous invocation: after a random hold within the reorder window,
// retried after each delay of the schedule while the event is younger
// than the max event age, dead-lettered when no attempt succeeded. A
// throttled attempt is retried apart (throttleRetry). The delays after a
// function error are Lambda's fixed schedule, not a jittered
// backoff.Policy: the README and the tests state them exactly.
func (s *Service) deliver(r compiledRule, d delivery) {
	accepted := time.Now()
	s.deliveries.Go(func() {
		if s.reorderWindow > 0 && rand.Float64() < s.reorderRate && backoff.Sleep(s.life, rand.N(s.reorderWindow)) != nil {
			return
		}
		s.noteStart(r, d.order)
		var failed, throttled int
		for {
			// Not the service's life: Close waits for an invocation in
			// flight rather than cancelling it.
			err := r.Target(context.Background(), d.event)
			if err == nil {
				s.stats.Delivered.Add(1)
				return
			}
			var delay time.Duration
			if errors.Is(err, ErrThrottled) {
				delay = s.throttleRetry.Delay(throttled)
				throttled++
			} else if failed < len(s.retryDelays) {
				delay = s.retryDelays[failed]
				failed++
			} else {
				s.deadLetter(r, d.id, "retries exhausted", err)
				return
			}
			if time.Until(accepted.Add(s.maxEventAge)) < delay {
				s.deadLetter(r, d.id, "event too old to retry", err)
				return
			}
			s.countRetry(r, d.id, err, failed+throttled, delay)
			if backoff.Sleep(s.life, delay) != nil {
				return
			}
		}
	})
}

// noteStart counts a delivery that starts after one of an event put
// later to the same rule: it was overtaken.
func (s *Service) noteStart(r compiledRule, order uint64) {
	for {
		top := r.started.Load()
		if order < top {
			s.stats.Overtaken.Add(1)
			return
		}
		if order == top || r.started.CompareAndSwap(top, order) {
			return
		}
	}
}

// countRetry counts and logs a retry about to wait delay.
func (s *Service) countRetry(r compiledRule, id string, err error, attempt int, delay time.Duration) {
	msg := "event delivery failed; retrying"
	if errors.Is(err, ErrThrottled) {
		s.stats.Throttled.Add(1)
		msg = "event delivery throttled; retrying"
	} else {
		s.stats.Retried.Add(1)
	}
	s.log.Warn(msg, "rule", r.Name, "event_id", id, "attempt", attempt, "retry_in", delay.String(), "error", err.Error())
}

// deadLetter counts and logs an event no attempt delivered.
func (s *Service) deadLetter(r compiledRule, id, why string, err error) {
	s.stats.DeadLettered.Add(1)
	s.log.Error("event delivery failed for good", "rule", r.Name, "event_id", id, "reason", why, "error", err.Error())
}

package eventbus

import (
	"context"
	"time"
)

// Lambda's defaults for an asynchronous invocation whose function returns
// an error, which is how EventBridge invokes a Lambda target: two more
// attempts, one minute after the first and two minutes after the second,
// for an event at most six hours old (Lambda's EventInvokeConfig
// MaximumRetryAttempts and MaximumEventAgeInSeconds).
const (
	LambdaRetryAttempts   = 2
	LambdaFirstRetryDelay = time.Minute
	LambdaMaxEventAge     = 6 * time.Hour
)

// defaultRetryDelay is the first delay of the deprecated Retries schedule
// when RetryDelay is not given.
const defaultRetryDelay = time.Second

// LambdaRetryDelays returns Lambda's retry schedule with each delay
// multiplied by scale: 1 minute then 2 minutes when scale is 1, 600 ms
// then 1.2 s when it is 0.01. A scale that is not positive counts as 1.
func LambdaRetryDelays(scale float64) []time.Duration {
	if scale <= 0 {
		scale = 1
	}
	return doubling(LambdaRetryAttempts, time.Duration(scale*float64(LambdaFirstRetryDelay)))
}

// doubling returns n delays, the first first, each next twice the one
// before: the shape of Lambda's schedule.
func doubling(n int, first time.Duration) []time.Duration {
	delays := make([]time.Duration, n)
	for i := range delays {
		delays[i] = first << i
	}
	return delays
}

// retryDelays is the schedule opts ask for, defaults applied.
func retryDelays(opts Options) []time.Duration {
	switch {
	case opts.RetryDelays != nil:
		return append([]time.Duration{}, opts.RetryDelays...)
	case opts.Retries > 0 && opts.RetryDelay > 0:
		return doubling(opts.Retries, opts.RetryDelay)
	case opts.Retries > 0:
		return doubling(opts.Retries, defaultRetryDelay)
	}
	return LambdaRetryDelays(1)
}

// deliver invokes the target asynchronously, as Lambda runs an
// asynchronous invocation: retried after each delay of the schedule while
// the event is younger than MaxEventAge, dead-lettered when no attempt
// succeeded.
func (s *Service) deliver(r compiledRule, id string, event []byte) {
	accepted := time.Now()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for attempt := 0; ; attempt++ {
			err := r.Target(context.Background(), event)
			if err == nil {
				s.stats.Delivered.Add(1)
				return
			}
			if attempt >= len(s.opts.RetryDelays) {
				s.deadLetter(r, id, event, "retries exhausted", err)
				return
			}
			delay := s.opts.RetryDelays[attempt]
			if time.Until(accepted.Add(s.opts.MaxEventAge)) < delay {
				s.deadLetter(r, id, event, "event too old to retry", err)
				return
			}
			s.stats.Retried.Add(1)
			s.log.Warn("event delivery failed; retrying", "rule", r.Name, "event_id", id,
				"attempt", attempt+1, "retry_in", delay.String(), "error", err.Error())
			select {
			case <-s.stop:
				return
			case <-time.After(delay):
			}
		}
	}()
}

// deadLetter keeps an event no attempt delivered.
func (s *Service) deadLetter(r compiledRule, id string, event []byte, why string, err error) {
	s.stats.DeadLettered.Add(1)
	s.dlqMu.Lock()
	s.deadLetters = append(s.deadLetters, event)
	s.dlqMu.Unlock()
	s.log.Error("event delivery failed for good", "rule", r.Name, "event_id", id, "reason", why, "error", err.Error())
}

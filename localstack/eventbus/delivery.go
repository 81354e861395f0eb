package eventbus

import (
	"context"
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

// deliver invokes the target asynchronously, as Lambda runs an
// asynchronous invocation: retried after each delay of the schedule while
// the event is younger than the max event age, dead-lettered when no
// attempt succeeded. The delays are Lambda's fixed schedule, not a
// jittered backoff.Policy: the README and the tests state them exactly.
func (s *Service) deliver(r compiledRule, id string, event []byte) {
	accepted := time.Now()
	s.deliveries.Go(func() {
		for attempt := 0; ; attempt++ {
			// Not the service's life: Close waits for an invocation in
			// flight rather than cancelling it.
			err := r.Target(context.Background(), event)
			if err == nil {
				s.stats.Delivered.Add(1)
				return
			}
			if attempt >= len(s.retryDelays) {
				s.deadLetter(r, id, "retries exhausted", err)
				return
			}
			delay := s.retryDelays[attempt]
			if time.Until(accepted.Add(s.maxEventAge)) < delay {
				s.deadLetter(r, id, "event too old to retry", err)
				return
			}
			s.stats.Retried.Add(1)
			s.log.Warn("event delivery failed; retrying", "rule", r.Name, "event_id", id,
				"attempt", attempt+1, "retry_in", delay.String(), "error", err.Error())
			if backoff.Sleep(s.life, delay) != nil {
				return
			}
		}
	})
}

// deadLetter counts and logs an event no attempt delivered.
func (s *Service) deadLetter(r compiledRule, id, why string, err error) {
	s.stats.DeadLettered.Add(1)
	s.log.Error("event delivery failed for good", "rule", r.Name, "event_id", id, "reason", why, "error", err.Error())
}

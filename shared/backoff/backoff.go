// Package backoff is the project's one retry delay: exponential, capped and
// jittered, so retries of many callers spread out instead of colliding
// again. Every retry loop uses a Policy; the policies differ only in scale.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter is how a delay is randomised.
type Jitter int

const (
	// Full draws the delay from [1ms, d+1ms): the most spread, for
	// contention (conflicting writes, throttling), where colliding again is
	// the risk. The millisecond floor keeps a retry from spinning.
	Full Jitter = iota
	// Equal keeps half of d and draws the other half, from [d/2, d]: a
	// floor that still spreads, for reconnects, where coming back at once
	// is the risk.
	Equal
)

// Policy doubles Base per attempt up to Max and applies Jitter.
type Policy struct {
	Base, Max time.Duration
	Jitter    Jitter
}

// Delay is the wait before retry attempt (0 for the first retry): d is
// Base·2^attempt capped at Max, then jittered as Jitter says. It does not
// overflow, whatever Base and attempt.
func (p Policy) Delay(attempt int) time.Duration {
	d := p.ceiling(max(attempt, 0))
	if d <= 0 {
		return 0
	}
	if p.Jitter == Equal {
		return d/2 + rand.N(d/2+1)
	}
	return time.Millisecond + rand.N(d)
}

// ceiling is Base·2^attempt capped at Max, compared before shifting: a
// shifted Base can pass the int64 range (a 30 s Base does at attempt 29)
// and wrap to a negative or zero delay.
func (p Policy) ceiling(attempt int) time.Duration {
	if p.Base <= 0 {
		return 0
	}
	if attempt >= 63 || p.Base > p.Max>>attempt {
		return p.Max
	}
	return p.Base << attempt
}

// Wait sleeps for the delay of attempt, or until ctx ends (its error).
func (p Policy) Wait(ctx context.Context, attempt int) error {
	return Sleep(ctx, p.Delay(attempt))
}

// Sleep waits d, or until ctx ends (its error); d <= 0 only checks ctx.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

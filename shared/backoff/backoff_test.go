package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wsgate/wsgate/shared/backoff"
)

func TestDelay_GrowsToTheCapWithJitter(t *testing.T) {
	full := backoff.Policy{Base: 10 * time.Millisecond, Max: 200 * time.Millisecond}
	equal := backoff.Policy{Base: 10 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: backoff.Equal}
	for attempt, ceiling := range []time.Duration{10, 20, 40, 80, 160, 200, 200} {
		ceiling *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 200 {
			d := full.Delay(attempt)
			assert.LessOrEqual(t, d, ceiling+time.Millisecond, "attempt %d", attempt)
			assert.Positive(t, d)
			seen[d] = true
			e := equal.Delay(attempt)
			assert.GreaterOrEqual(t, e, ceiling/2, "equal jitter keeps half, attempt %d", attempt)
			assert.LessOrEqual(t, e, ceiling)
		}
		assert.Greater(t, len(seen), 10, "jittered, attempt %d", attempt)
	}
	assert.LessOrEqual(t, full.Delay(1000), 201*time.Millisecond, "no overflow")
	assert.LessOrEqual(t, full.Delay(-1), 11*time.Millisecond)
}

func TestWait_StopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	err := backoff.Policy{Base: time.Hour, Max: time.Hour}.Wait(ctx, 0)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), time.Second)
}

// A large Base must not wrap: JWKS pacing uses 30 s, whose shift passes
// the int64 range at attempt 29 and used to come out as no wait at all.
func TestDelay_LargeBaseStaysWithinItsCapAtEveryAttempt(t *testing.T) {
	for _, p := range []backoff.Policy{
		{Base: time.Millisecond, Max: time.Second},
		{Base: 30 * time.Second, Max: 5 * time.Minute, Jitter: backoff.Equal},
		{Base: 30 * time.Second, Max: 5 * time.Minute},
		{Base: time.Hour, Max: 6 * time.Hour},
		{Base: 3 * time.Hour, Max: 3 * time.Hour, Jitter: backoff.Equal},
		{Base: 5 * time.Hour, Max: 1000 * time.Hour},
	} {
		for attempt := -1; attempt <= 100; attempt++ {
			want := p.Max // the ceiling, Base·2^attempt capped at Max
			if a := max(attempt, 0); a < 62 && p.Base <= p.Max>>a {
				want = p.Base << a
			}
			lo, hi := time.Millisecond, want+time.Millisecond
			if p.Jitter == backoff.Equal {
				lo, hi = want/2, want
			}
			for range 20 {
				d := p.Delay(attempt)
				if d < lo || d > hi {
					t.Fatalf("%+v attempt %d: delay %v outside [%v, %v]", p, attempt, d, lo, hi)
				}
			}
		}
	}
}

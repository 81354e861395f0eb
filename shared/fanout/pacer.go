package fanout

import (
	"context"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// RatePacer spaces calls to at most a rate per second: one invocation's
// share of the account's PostToConnection budget (10,000 per second by
// default on AWS, shared by every concurrent invocation). When the account
// throttles, it halves its rate; each success wins a little back, up to
// the configured rate (additive increase, multiplicative decrease).
type RatePacer struct {
	mu      sync.Mutex
	ceiling float64 // the configured rate
	floor   float64 // the rate halving stops at
	rate    float64
	next    time.Time
	now     func() time.Time
}

// NewPacer returns a pacer allowing rate calls per second.
func NewPacer(rate float64) *RatePacer {
	return &RatePacer{ceiling: rate, floor: max(rate/64, 1), rate: rate, now: time.Now}
}

// Rate is the current rate.
func (p *RatePacer) Rate() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rate
}

// Wait blocks until the next call may start.
func (p *RatePacer) Wait(ctx context.Context) error {
	p.mu.Lock()
	now := p.now()
	slot := p.next
	if slot.Before(now) {
		slot = now
	}
	p.next = slot.Add(time.Duration(float64(time.Second) / p.rate))
	p.mu.Unlock()
	if wait := slot.Sub(now); wait > 0 {
		return backoff.Sleep(ctx, wait)
	}
	return nil
}

// Throttled halves the rate.
func (p *RatePacer) Throttled() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate = max(p.rate/2, p.floor)
}

// Succeeded wins back a little rate.
func (p *RatePacer) Succeeded() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rate < p.ceiling {
		p.rate = min(p.rate+p.ceiling/200, p.ceiling)
	}
}

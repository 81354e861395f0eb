package fanout

import "sync"

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

// newThrottleWindow remembers no calls yet.
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

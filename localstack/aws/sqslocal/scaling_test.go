package sqslocal

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Lambda starts five concurrent batches, adds one more every ScaleInterval
// (300 a minute) while messages wait, never passes MaximumConcurrency, and
// goes back to five once the queue stays empty.
func TestEventSource_PollersRampAsLambdaScales(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "ramp", nil)
	const interval = 10 * time.Millisecond
	const maxConc = 12
	for i := range 40 {
		h.send(t, queueURL, strconv.Itoa(i))
	}

	release := make(chan struct{})
	var mu sync.Mutex
	running, peak := 0, 0
	var reached []time.Duration // reached[k-1]: when k invocations first ran at once
	start := time.Now()
	invoke := func(ctx context.Context, _ []byte) ([]byte, error) {
		mu.Lock()
		running++
		if running > peak {
			peak = running
			reached = append(reached, time.Since(start))
		}
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, nil
	}
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, BatchSize: 1, MaxConcurrency: maxConc, ScaleInterval: interval, Invoke: invoke})
	defer stop()

	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return peak == maxConc }, 5*time.Second, time.Millisecond,
		"the pollers grow to MaximumConcurrency while messages wait")
	mu.Lock()
	got := append([]time.Duration(nil), reached...)
	mu.Unlock()
	for k := InitialPollers + 1; k <= maxConc; k++ {
		assert.GreaterOrEqual(t, got[k-1], time.Duration(k-InitialPollers)*interval,
			"%d concurrent batches before %d scale intervals passed: faster than Lambda's ramp", k, k-InitialPollers)
	}
	time.Sleep(5 * interval)
	mu.Lock()
	assert.Equal(t, maxConc, peak, "never more than MaximumConcurrency")
	mu.Unlock()
	assert.Equal(t, maxConc, h.svc.EventSourcePollers(queueURL))

	close(release)
	require.Eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{0, 0, 0} }, 5*time.Second, 5*time.Millisecond)
	// An empty queue for 300 intervals: back to the first five.
	require.Eventually(t, func() bool { return h.svc.EventSourcePollers(queueURL) == InitialPollers }, 10*time.Second, 10*time.Millisecond)
}

// A mapping whose MaximumConcurrency is under five starts that many.
func TestEventSource_SmallMaximumConcurrencyCapsTheFirstPollers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "small", nil)
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, MaxConcurrency: 2, ScaleInterval: time.Millisecond, Invoke: newFunction(nil).Invoke})
	defer stop()
	for i := range 20 {
		h.send(t, queueURL, strconv.Itoa(i))
	}
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, 2, h.svc.EventSourcePollers(queueURL))
}

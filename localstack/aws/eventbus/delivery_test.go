package eventbus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/backoff"
)

// arrivals records every invocation of a target: the event id, its bytes
// and when it came.
type arrivals struct {
	mu    sync.Mutex
	ids   []string
	raw   map[string][][]byte
	times map[string][]time.Time
}

func newArrivals() *arrivals {
	return &arrivals{raw: map[string][][]byte{}, times: map[string][]time.Time{}}
}

func (a *arrivals) target(_ context.Context, ev []byte) error {
	var e struct{ ID string }
	if err := json.Unmarshal(ev, &e); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, e.ID)
	a.raw[e.ID] = append(a.raw[e.ID], ev)
	a.times[e.ID] = append(a.times[e.ID], time.Now())
	return nil
}

func (a *arrivals) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ids)
}

// putEach puts n events, one PutEvents call each and one after the other,
// and returns their ids and when each call started, in put order.
func putEach(t *testing.T, s *Service, n int) ([]string, []time.Time) {
	t.Helper()
	c := client(t, s)
	ids, at := make([]string, n), make([]time.Time, n)
	for i := range n {
		at[i] = time.Now()
		out, err := c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry("default", fmt.Sprintf(`{"i":%d}`, i))}})
		require.NoError(t, err)
		ids[i] = aws.ToString(out.Entries[0].EventId)
	}
	return ids, at
}

// The share of events delivered twice is the configured rate; the second
// copy is the same event (id and bytes), in an invocation of its own.
func TestDelivery_DuplicatesAtTheConfiguredRate(t *testing.T) {
	const n, rate = 500, 0.3
	s := New(Options{DuplicateRate: rate})
	defer s.Close()
	a := newArrivals()
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: a.target}))
	c := client(t, s)
	for i := 0; i < n; i += MaxEntries {
		entries := make([]types.PutEventsRequestEntry, MaxEntries)
		for j := range entries {
			entries[j] = entry("default", fmt.Sprintf(`{"i":%d}`, i+j))
		}
		_, err := c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: entries})
		require.NoError(t, err)
	}
	dups := s.Stats().Duplicated.Load()
	require.Eventually(t, func() bool { return int64(a.count()) == n+dups }, 10*time.Second, 5*time.Millisecond)

	a.mu.Lock()
	defer a.mu.Unlock()
	require.Len(t, a.raw, n, "every event delivered")
	twice := 0
	for id, copies := range a.raw {
		require.LessOrEqual(t, len(copies), 2, "event %s", id)
		if len(copies) == 2 {
			twice++
			assert.True(t, bytes.Equal(copies[0], copies[1]), "a redelivery carries the same bytes")
		}
	}
	assert.Equal(t, int(dups), twice, "Stats.Duplicated counts the second copies")
	// Binomial: mean 150, standard deviation about 10.
	assert.InDelta(t, rate*n, twice, 60, "about %.0f%% delivered twice", 100*rate)
	assert.Equal(t, int64(n)+dups, s.Stats().Delivered.Load(), "each copy is a delivery")
}

// A duplicate is a separate invocation that may run while the first is
// still running, as two of Lambda's may.
func TestDelivery_ADuplicateMayRunAtTheSameTimeAsTheFirst(t *testing.T) {
	s := New(Options{DuplicateRate: 1, RetryDelays: []time.Duration{}})
	defer s.Close()
	var running atomic.Int32
	both := make(chan struct{})
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: func(context.Context, []byte) error {
		if running.Add(1) == 2 {
			close(both)
		}
		select {
		case <-both:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("the other copy never ran alongside")
		}
	}}))
	putEach(t, s, 1)
	require.Eventually(t, func() bool { return s.Stats().Delivered.Load() == 2 }, 10*time.Second, 5*time.Millisecond)
	assert.Zero(t, s.Stats().DeadLettered.Load())
}

// Every delivery waits a random time within the reorder window, so events
// put one after the other reach the target in another order; none waits
// longer than the window.
func TestDelivery_ReorderWindowLetsLaterEventsOvertake(t *testing.T) {
	const n, window = 100, 50 * time.Millisecond
	s := New(Options{ReorderWindow: window})
	defer s.Close()
	a := newArrivals()
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: a.target}))
	ids, at := putEach(t, s, n)
	require.Eventually(t, func() bool { return a.count() == n }, 10*time.Second, 5*time.Millisecond)

	a.mu.Lock()
	defer a.mu.Unlock()
	assert.NotEqual(t, ids, a.ids, "not in put order")
	var held []time.Duration
	for i, id := range ids {
		require.Len(t, a.times[id], 1, "once each: no duplicates asked for")
		held = append(held, a.times[id][0].Sub(at[i]))
	}
	assert.Less(t, slices.Max(held), window+300*time.Millisecond, "held at most the window (and this machine's scheduling)")
	assert.Greater(t, s.Stats().Overtaken.Load(), int64(n/2), "most deliveries were overtaken by later events")
	assert.Zero(t, s.Stats().Duplicated.Load())
}

// Switched off, the bus delivers each event once and at once: only the
// scheduling of its goroutines (one a delivery, as before) may swap two,
// far fewer than a reorder window does.
func TestDelivery_SwitchedOffEachEventOnceAndAtOnce(t *testing.T) {
	const n = 100
	s := New(Options{DuplicateRate: 0, ReorderWindow: 0})
	defer s.Close()
	a := newArrivals()
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: a.target}))
	ids, _ := putEach(t, s, n)
	require.Eventually(t, func() bool { return a.count() == n }, 10*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // no late copy
	a.mu.Lock()
	defer a.mu.Unlock()
	assert.ElementsMatch(t, ids, a.ids, "each once")
	assert.Zero(t, s.Stats().Duplicated.Load())
	assert.Less(t, s.Stats().Overtaken.Load(), int64(n/10), "in put order but for goroutine scheduling")
}

// A throttled attempt goes back to the queue and is retried with a
// growing interval, apart from the two retries after function errors.
func TestDelivery_ThrottlesAreRetriedApartFromFunctionErrors(t *testing.T) {
	s := New(Options{
		RetryDelays:   []time.Duration{5 * time.Millisecond, 5 * time.Millisecond},
		ThrottleRetry: backoff.Policy{Base: 4 * time.Millisecond, Max: 40 * time.Millisecond, Jitter: backoff.Equal},
	})
	defer s.Close()
	// Five throttles, then two function errors, then success: a function
	// error after throttles still has both its retries.
	outcomes := []error{ErrThrottled, ErrThrottled, ErrThrottled, ErrThrottled, ErrThrottled, errors.New("boom"), errors.New("boom"), nil}
	var calls atomic.Int32
	var mu sync.Mutex
	var at []time.Time
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: func(context.Context, []byte) error {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		return outcomes[calls.Add(1)-1]
	}}))
	putEach(t, s, 1)
	require.Eventually(t, func() bool { return s.Stats().Delivered.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, int32(len(outcomes)), calls.Load())
	assert.Equal(t, int64(5), s.Stats().Throttled.Load())
	assert.Equal(t, int64(2), s.Stats().Retried.Load())
	assert.Zero(t, s.Stats().DeadLettered.Load())
	mu.Lock()
	defer mu.Unlock()
	// Equal jitter keeps at least half of 4, 8, 16, 32, 40 ms.
	for i, floor := range []time.Duration{2, 4, 8, 16, 20} {
		assert.GreaterOrEqual(t, at[i+1].Sub(at[i]), floor*time.Millisecond, "wait after throttle %d", i+1)
	}
}

// A target throttled throughout is retried until the event is too old,
// far past the two retries of a failing function, then dead-lettered.
func TestDelivery_ThrottledUntilTheMaxEventAgeIsDeadLettered(t *testing.T) {
	s := New(Options{
		MaxEventAge:   300 * time.Millisecond,
		ThrottleRetry: backoff.Policy{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, Jitter: backoff.Equal},
	})
	defer s.Close()
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: func(context.Context, []byte) error {
		return fmt.Errorf("invoke: %w", ErrThrottled)
	}}))
	putEach(t, s, 1)
	require.Eventually(t, func() bool { return s.Stats().DeadLettered.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Greater(t, s.Stats().Throttled.Load(), int64(5))
	assert.Zero(t, s.Stats().Retried.Load(), "no function-error retry used")
}

func TestNew_ThrottleRetryIsLambdasUnlessGiven(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	assert.Equal(t, backoff.Policy{Base: time.Second, Max: 5 * time.Minute, Jitter: backoff.Equal}, s.throttleRetry)
	assert.Equal(t, backoff.Policy{Base: 10 * time.Millisecond, Max: 3 * time.Second, Jitter: backoff.Equal}, LambdaThrottleRetry(0.01))
}

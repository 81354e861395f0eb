package lambdahost

import (
	"cmp"
	"context"
	"fmt"
	"iter"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waiting returns how many invocations of the function wait for an instance.
func (h *Host) waiting(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.functions[name].waiters)
}

// requireWaiting waits until n invocations of the function are queued.
func requireWaiting(t *testing.T, h *Host, name string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return h.waiting(name) == n }, waitFor, time.Millisecond,
		"%d invocations never queued", n)
}

// run is one invocation as the function saw it.
type run struct {
	value string
	start int64 // the handler's clock: one process, so it orders the runs
}

func TestInvoke_WaitingInvocationsRunInArrivalOrder(t *testing.T) {
	t.Parallel()
	const queued, late = 100, 300
	h, rec := newHost(t, Function{Name: "fifo", Concurrency: 1})
	ctx := context.Background()
	release := filepath.Join(t.TempDir(), "release")
	holder := invokeAsync(ctx, h, "fifo", echoRequest{Action: "block", Value: release})
	rec.waitForInvokes(t, "block", 1)

	runs := make(chan run, queued+late)
	var wg sync.WaitGroup
	invoke := func(value string) {
		wg.Go(func() {
			resp, err := invokeEcho(ctx, h, "fifo", echoRequest{Action: "sleep", MS: 2, Value: value})
			if assert.NoError(t, err, value) {
				runs <- run{value, resp.StartNS}
			}
		})
	}
	// A backlog in a known order: each joins the queue before the next
	// one is invoked.
	var want []string
	for i := range queued {
		value := fmt.Sprintf("queued-%02d", i)
		want = append(want, value)
		invoke(value)
		requireWaiting(t, h, "fifo", i+1)
	}
	// Then the holder lets go and more invocations keep arriving while
	// the backlog drains, each a chance to take an instance as it is
	// handed to the head of the queue.
	touch(t, release)
	for i := range late {
		invoke(fmt.Sprintf("late-%02d", i))
		time.Sleep(time.Millisecond) // spreads the arrivals over the drain, not an assertion
	}
	require.NoError(t, receive(t, holder).err)
	wg.Wait()
	close(runs)

	var order []string
	for _, r := range slices.SortedFunc(chanValues(runs), func(a, b run) int { return cmp.Compare(a.start, b.start) }) {
		order = append(order, r.value)
	}
	require.Len(t, order, queued+late)
	assert.Equal(t, want, order[:queued], "the backlog runs in arrival order, before anything that arrived after it")
}

// chanValues yields what ch holds until it is closed.
func chanValues[T any](ch <-chan T) iter.Seq[T] {
	return func(yield func(T) bool) {
		for v := range ch {
			if !yield(v) {
				return
			}
		}
	}
}

func TestInvoke_WaiterThatLeavesPassesItsSlotOn(t *testing.T) {
	t.Parallel()
	h, rec := newHost(t, Function{Name: "handover", Concurrency: 1})
	ctx := context.Background()
	release := filepath.Join(t.TempDir(), "release")
	holder := invokeAsync(ctx, h, "handover", echoRequest{Action: "block", Value: release})
	rec.waitForInvokes(t, "block", 1)

	leaverCtx, leave := context.WithCancel(ctx)
	defer leave()
	leaver := invokeAsync(leaverCtx, h, "handover", echoRequest{Action: "echo", Value: "leaver"})
	requireWaiting(t, h, "handover", 1)
	next := invokeAsync(ctx, h, "handover", echoRequest{Action: "echo", Value: "next"})
	requireWaiting(t, h, "handover", 2)

	// A slot frees up (the limit rises by one) and goes to the leaver, whose
	// ctx ends before it can use it: under the lock, so it cannot start an
	// instance first.
	h.mu.Lock()
	f := h.functions["handover"]
	f.cfg.Concurrency++
	h.offerSlotLocked(f)
	leave()
	h.mu.Unlock()

	require.ErrorIs(t, receive(t, leaver).err, context.Canceled)
	r := receive(t, next)
	require.NoError(t, r.err, "the next waiter got the slot while the holder still runs")
	assert.Equal(t, "next", r.resp.Value)
	touch(t, release)
	require.NoError(t, receive(t, holder).err)
	st := h.Stats("handover")
	assert.Equal(t, 2, st.ColdStarts)
	assert.Equal(t, 2, st.Running)
	assert.Equal(t, 2, st.Invocations, "the leaver's call is not an invocation")
	h.mu.Lock()
	assert.Equal(t, len(f.instances), f.live, "no slot is counted without an instance")
	h.mu.Unlock()
}

func TestInvoke_CancelledWaitersLeakNoSlot(t *testing.T) {
	t.Parallel()
	const concurrency, callers = 2, 24
	h, _ := newHost(t, Function{Name: "churn", Concurrency: concurrency})

	// Callers that give up at all sorts of moments: while queued, as they
	// are handed an instance or a slot, while an instance starts or runs.
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%6)*15*time.Millisecond)
			defer cancel()
			_, _ = invokeEcho(ctx, h, "churn", echoRequest{Action: "sleep", MS: 20})
		})
		time.Sleep(2 * time.Millisecond) // arrivals spread over the churn, not an assertion
	}
	wg.Wait()

	// Every slot is still there: concurrency invocations can run at once.
	barrier := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var results []<-chan result
	for range concurrency {
		results = append(results, invokeAsync(ctx, h, "churn", echoRequest{Action: "barrier", Value: barrier, N: concurrency}))
	}
	for _, ch := range results {
		require.NoError(t, receive(t, ch).err)
	}
	assert.Zero(t, h.waiting("churn"))
	h.mu.Lock()
	f := h.functions["churn"]
	assert.Equal(t, len(f.instances), f.live, "no slot is counted without an instance")
	h.mu.Unlock()
}

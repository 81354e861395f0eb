package lambdahost

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newAccountHost returns a host with an account concurrency limit, closed
// when the test ends, with fs registered (Path defaults to echo).
func newAccountHost(t *testing.T, account int, fs ...Function) (*Host, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	h := New(Options{Region: region, Log: rec.log, AccountConcurrency: account})
	t.Cleanup(func() { _ = h.Close() })
	for _, f := range fs {
		if f.Path == "" {
			f.Path = echoBootstrap
		}
		require.NoError(t, h.Register(f))
	}
	return h, rec
}

func requireThrottle(t *testing.T, err error, fn, reason string) {
	t.Helper()
	require.ErrorIs(t, err, ErrThrottled)
	var te *ThrottleError
	require.ErrorAs(t, err, &te)
	assert.Equal(t, fn, te.Function)
	assert.Equal(t, reason, te.Reason)
	assert.Contains(t, err.Error(), "TooManyRequestsException")
}

func TestInvoke_OverReservedConcurrencyIsThrottledNotQueued(t *testing.T) {
	h, _ := newAccountHost(t, DefaultAccountConcurrency, Function{Name: "fn", Concurrency: 4, ReservedConcurrency: 2})
	release := filepath.Join(t.TempDir(), "go")
	ctx := context.Background()
	first := invokeAsync(ctx, h, "fn", echoRequest{Action: "block", Value: release})
	second := invokeAsync(ctx, h, "fn", echoRequest{Action: "block", Value: release})
	require.Eventually(t, func() bool { return h.Stats("fn").ConcurrentExecutions == 2 }, waitFor, tick)

	_, err := invokeEcho(ctx, h, "fn", echoRequest{Action: "echo", Value: "third"})
	requireThrottle(t, err, "fn", ReasonReservedFunction)
	assert.Equal(t, 1, h.Stats("fn").Throttles)

	touch(t, release)
	require.NoError(t, receive(t, first).err)
	require.NoError(t, receive(t, second).err)
	// Capacity comes back once the invocations are over.
	require.Eventually(t, func() bool { return h.Stats("fn").ConcurrentExecutions == 0 }, waitFor, tick)
	resp, err := invokeEcho(ctx, h, "fn", echoRequest{Action: "echo", Value: "again"})
	require.NoError(t, err)
	assert.Equal(t, "again", resp.Value)
	assert.Equal(t, 2, h.Stats("fn").MaxConcurrentExecutions)
}

func TestInvoke_AccountLimitThrottlesFunctionsWithoutReservation(t *testing.T) {
	// An account of 3, shared by two functions; the machine would run 4
	// of each.
	h, _ := newAccountHost(t, 3, Function{Name: "a", Concurrency: 4}, Function{Name: "b", Concurrency: 4})
	release := filepath.Join(t.TempDir(), "go")
	ctx := context.Background()
	var running []<-chan result
	for _, fn := range []string{"a", "a", "b"} {
		running = append(running, invokeAsync(ctx, h, fn, echoRequest{Action: "block", Value: release}))
	}
	require.Eventually(t, func() bool {
		return h.Stats("a").ConcurrentExecutions+h.Stats("b").ConcurrentExecutions == 3
	}, waitFor, tick)

	_, err := invokeEcho(ctx, h, "b", echoRequest{Action: "echo"})
	requireThrottle(t, err, "b", ReasonAccount)
	_, err = invokeEcho(ctx, h, "a", echoRequest{Action: "echo"})
	requireThrottle(t, err, "a", ReasonAccount)

	touch(t, release)
	for _, ch := range running {
		require.NoError(t, receive(t, ch).err)
	}
	_, err = invokeEcho(ctx, h, "b", echoRequest{Action: "echo"})
	require.NoError(t, err)
}

func TestInvoke_ReservationIsKeptFromTheAccountPool(t *testing.T) {
	// 150 in the account, 50 reserved by r: the other functions share 100,
	// and r's 50 are its own even when they are used up.
	h, _ := newAccountHost(t, 150, Function{Name: "r", Concurrency: 1, ReservedConcurrency: 50}, Function{Name: "u", Concurrency: 1})
	h.mu.Lock()
	assert.Equal(t, 100, h.unreservedLimitLocked())
	h.mu.Unlock()
	_, err := invokeEcho(context.Background(), h, "r", echoRequest{Action: "echo"})
	require.NoError(t, err)
	_, err = invokeEcho(context.Background(), h, "u", echoRequest{Action: "echo"})
	require.NoError(t, err)
}

func TestInvoke_WaitingForAnInstanceCountsAsConcurrent(t *testing.T) {
	// One process at a time on this machine, two in flight for AWS: the
	// second waits here, the third is throttled.
	h, rec := newAccountHost(t, DefaultAccountConcurrency, Function{Name: "fn", Concurrency: 1, ReservedConcurrency: 2})
	release := filepath.Join(t.TempDir(), "go")
	ctx := context.Background()
	first := invokeAsync(ctx, h, "fn", echoRequest{Action: "block", Value: release})
	rec.waitForInvokes(t, "block", 1)
	second := invokeAsync(ctx, h, "fn", echoRequest{Action: "echo", Value: "queued"})
	require.Eventually(t, func() bool { return h.Stats("fn").ConcurrentExecutions == 2 }, waitFor, tick)
	_, err := invokeEcho(ctx, h, "fn", echoRequest{Action: "echo"})
	requireThrottle(t, err, "fn", ReasonReservedFunction)
	touch(t, release)
	require.NoError(t, receive(t, first).err)
	r := receive(t, second)
	require.NoError(t, r.err)
	assert.Equal(t, "queued", r.resp.Value)
}

func TestInvoke_AbandonedWaitFreesItsConcurrency(t *testing.T) {
	h, rec := newAccountHost(t, DefaultAccountConcurrency, Function{Name: "fn", Concurrency: 1, ReservedConcurrency: 2})
	release := filepath.Join(t.TempDir(), "go")
	first := invokeAsync(context.Background(), h, "fn", echoRequest{Action: "block", Value: release})
	rec.waitForInvokes(t, "block", 1)
	ctx, cancel := context.WithCancel(context.Background())
	waiting := invokeAsync(ctx, h, "fn", echoRequest{Action: "echo"})
	require.Eventually(t, func() bool { return h.Stats("fn").ConcurrentExecutions == 2 }, waitFor, tick)
	cancel()
	require.ErrorIs(t, receive(t, waiting).err, context.Canceled)
	assert.Equal(t, 1, h.Stats("fn").ConcurrentExecutions)
	touch(t, release)
	require.NoError(t, receive(t, first).err)
}

func TestRegister_RefusesAReservationLeavingUnderTheUnreservedMinimum(t *testing.T) {
	h := New(Options{AccountConcurrency: 1000})
	t.Cleanup(func() { _ = h.Close() })
	require.NoError(t, h.Register(Function{Name: "a", Path: echoBootstrap, ReservedConcurrency: 850}))
	err := h.Register(Function{Name: "b", Path: echoBootstrap, ReservedConcurrency: 51})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "minimum of 100")
	require.NoError(t, h.Register(Function{Name: "c", Path: echoBootstrap, ReservedConcurrency: 50}))
	require.ErrorContains(t, h.Register(Function{Name: "d", Path: echoBootstrap, ReservedConcurrency: -1}), "negative")
}

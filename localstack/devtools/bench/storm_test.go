package bench

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stacktest"
)

// runSmallStorm runs 60 clients at 30/s (modelled: 1,000 at 500/s) on a
// stack of its own, with the ceilings at scale (0: the storm's own,
// 30/500).
func runSmallStorm(t *testing.T, scale float64, limit time.Duration) (*StormReport, string) {
	t.Helper()
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	r, err := RunStorm(ctx, StormOptions{
		Clients: 60, Rate: 30, CapacityScale: scale, Sources: true, PhaseLimit: limit,
		FunctionsDir: os.Getenv(stacktest.EnvFunctions), Log: &log,
	})
	require.NoError(t, err, log.String())
	var md bytes.Buffer
	r.Markdown(&md)
	t.Logf("%s\n%s", log.String(), md.String())
	return r, md.String()
}

// At the storm's own scale the report's figures come from the run: every
// client connected, cut, back and reached once; the ceilings are the
// scaled ones; the hottest key is named with units it really consumed,
// within its ceiling; and nothing was throttled.
func TestStorm_SmallStormIsMeasuredThroughTheStack(t *testing.T) {
	r, md := runSmallStorm(t, 0, 0)
	assert.Empty(t, r.Error)
	assert.InDelta(t, 3000*0.06, r.ReadCeiling, 1e-9, "ceilings at 30/500 of AWS's")
	assert.InDelta(t, 1000*0.06, r.WriteCeiling, 1e-9)
	assert.Equal(t, 1000, r.Options.Modelled())
	assert.True(t, r.Connect.Complete, "every client connected")
	assert.Equal(t, 60, r.Cut, "every connection was open when cut")
	assert.True(t, r.Reconnect.Complete, "every client came back")
	assert.GreaterOrEqual(t, r.Connect.Took, 59*time.Second/30, "admitted at 30/s: 60 clients take 2 s at least")
	assert.Equal(t, 60, r.Received, "the event reached every client")
	assert.Zero(t, r.Repeats, "and each once")
	for _, p := range []StormPhase{r.Connect, r.Reconnect} {
		assert.NotEmpty(t, p.HotKey)
		assert.Positive(t, p.HotPeakRead+p.HotPeakWrt, "the hottest key consumed units")
		// The proxy admits a request while its key has units left and
		// charges it when it answers, so a second may overshoot by the
		// requests in flight: up to one per function instance (8), each a
		// subscribe's transactional put of 2 units.
		assert.LessOrEqual(t, p.HotPeakWrt, r.WriteCeiling+2*8, "a key is held to its ceiling")
		assert.Zero(t, p.Throttled, "at 500/s modelled, no key is over its ceiling")
	}
	assert.Contains(t, md, "| 60 (1,000) | 30/s (500/s) |")
}

// With the ceilings made tiny, the same storm sees throttles: the report
// counts them from the stack and the target is not met (the phases are
// cut short: at 2 write units a second per key, it would take minutes).
func TestStorm_TinyCeilingsAreSeenThrottling(t *testing.T) {
	r, md := runSmallStorm(t, 0.002, 15*time.Second)
	assert.InDelta(t, 2, r.WriteCeiling, 1e-9)
	assert.Positive(t, r.Connect.Throttled+r.Reconnect.Throttled, "requests over 2 write units a second per key are refused")
	assert.False(t, r.Met())
	assert.Contains(t, md, "| **no** |")
}

// Met holds only with no error of any kind, no throttle and everyone
// reached once; the table says which.
func TestStormReport_MetNeedsNoErrorNoThrottleAndEveryoneOnce(t *testing.T) {
	good := func() *StormReport {
		return &StormReport{
			Options: StormOptions{Clients: 10, Rate: 5}, ReadCeiling: 30, WriteCeiling: 10,
			Connect:   StormPhase{Complete: true, Took: 2 * time.Second, HotKey: "P#storm.all", HotPeakWrt: 4},
			Reconnect: StormPhase{Complete: true, Took: 2 * time.Second}, Cut: 10,
			Errors: map[string]int{}, Causes: map[string]int{}, Received: 10,
		}
	}
	require.True(t, good().Met())
	for name, spoil := range map[string]func(*StormReport){
		"an error surfaced": func(r *StormReport) {
			r.Errors["auth_timeout"] = 1
			r.Connect.Errors = map[string]int{"auth_timeout": 1}
		},
		"an error after":      func(r *StormReport) { r.Errors["internal"] = 1 },
		"a DynamoDB throttle": func(r *StormReport) { r.Reconnect.Throttled = 1 },
		"a Lambda throttle":   func(r *StormReport) { r.LambdaThrottles = 1 },
		"a client missed":     func(r *StormReport) { r.Received = 9 },
		"a repeat":            func(r *StormReport) { r.Repeats = 1 },
		"not all came back":   func(r *StormReport) { r.Reconnect.Complete = false },
	} {
		r := good()
		spoil(r)
		assert.False(t, r.Met(), name)
		var md bytes.Buffer
		r.Markdown(&md)
		assert.Contains(t, md.String(), "| **no** |", name)
	}
	late := good()
	late.Errors["internal"] = 1
	var lateMD bytes.Buffer
	late.Markdown(&lateMD)
	assert.Contains(t, lateMD.String(), "| 0; 0; after: internal: 1 |", "an error after the reconnect is shown apart")
	var md bytes.Buffer
	good().Markdown(&md)
	assert.Contains(t, md.String(), "| 10 (1,000) | 5/s (500/s) | 2s (5.0/s) |")
	assert.Contains(t, md.String(), "`P#storm.all` 0 / 4 vs 30 / 10")
}

// Each client has its own loopback source address, never 127.0.0.1.
func TestStormSource_DistinctLoopbackAddresses(t *testing.T) {
	seen := map[string]bool{}
	for i := range 70000 {
		ip := StormSource(i)
		require.True(t, ip.IsLoopback(), ip.String())
		require.False(t, seen[ip.String()], "%s twice", ip)
		seen[ip.String()] = true
	}
	assert.False(t, seen["127.0.0.1"])
}

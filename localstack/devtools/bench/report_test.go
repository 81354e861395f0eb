package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func validOptions() Options {
	return Options{Audiences: []int{100, 1000}, Reps: 1, Workers: 64, ShardSize: 1000, MaxShards: 4, LocalClients: 10, PerNode: 10, RateEvents: 10, RateDuration: time.Second, RateAudience: 100}
}

func TestValidate_RefusesBeforeStarting(t *testing.T) {
	require.NoError(t, validOptions().Validate())
	o := validOptions()
	o.Audiences = []int{1000, 10000}
	assert.ErrorContains(t, o.Validate(), "--rate-audience 100 is not one of --audiences", "the latency run needs its audience connected")
	o = validOptions()
	o.Reps = 0
	assert.Error(t, o.Validate())
	o = validOptions()
	o.ShardSize = 20000
	assert.Error(t, o.Validate())
}

func TestMarkdown_AFailedBaselineIsARow(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	run := func(naiveLast, oursLast int, fail bool) *Report {
		naive := Row{System: "naive", Audience: 1000, Events: 1, First: ms(10), Last: ms(naiveLast), Ideal: time.Millisecond, Concurrency: 50}
		if fail {
			naive = Row{System: "naive", Audience: 1000, Error: "naive fan-out: invocation timed out after 2m0s"}
		}
		ours := Row{System: "wsgate", Workers: 64, Audience: 1000, Events: 1, First: ms(5), Last: ms(oursLast), Ideal: time.Millisecond, Concurrency: 64}
		return &Report{Options: validOptions(), Rows: []Row{naive, ours}}
	}
	reports := []*Report{run(400, 100, false), run(450, 90, false), run(0, 110, true)}
	var b bytes.Buffer
	reports[2].Markdown(&b)
	assert.Contains(t, b.String(), "| 1000 | naive | failed: naive fan-out: invocation timed out after 2m0s |")
	b.Reset()
	Spread(&b, reports)
	assert.Contains(t, b.String(), "| 1000 | wsgate, 64 workers | 100 ms, 90 ms, 110 ms | 90 ms – 110 ms | 4.0, 5.0, baseline failed | 4.0 – 5.0 |")
	assert.Contains(t, b.String(), "| 1000 | naive | 400 ms, 450 ms, failed | 400 ms – 450 ms |")
}

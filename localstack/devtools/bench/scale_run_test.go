package bench

import (
	"bytes"
	"context"
	"github.com/wsgate/wsgate/shared/topic"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// A small scale model end to end: sink subscribers written by the store,
// a canary, every delivery counted once, the hottest key reported.
func TestScale_SmallModelDeliversEveryEventToEverySink(t *testing.T) {
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := RunScale(ctx, ScaleOptions{
		CapacityScale: 1, Canaries: 1, Posters: 4, FunctionsDir: os.Getenv(stacktest.EnvFunctions), Log: &log,
		Runs: []ScaleRun{{Audience: 50, PerSecond: 5, For: time.Second}},
	})
	require.NoError(t, err, log.String())
	require.Len(t, r.Rows, 1)
	row := r.Rows[0]
	assert.Empty(t, row.Error)
	assert.Equal(t, 5, row.Events)
	assert.Equal(t, int64(250), row.Expected)
	assert.Equal(t, row.Expected, row.Delivered, log.String())
	assert.Zero(t, row.Duplicates)
	assert.True(t, row.CanariesOK, "the canary got every event once, in order: %s", row.CanaryMiss)
	assert.Len(t, row.Last, 5)
	assert.NotEmpty(t, row.HotKey)
	assert.Positive(t, row.HotRead+row.HotWrite)
	assert.Positive(t, r.SinkPerSecond)
	var md bytes.Buffer
	r.Markdown(&md)
	assert.Positive(t, row.Alone, "one event alone was timed")
	assert.Contains(t, md.String(), "| 50 (50) | 5/s × 1s | yes: `")
}

// Writing the audience is setup, not the model: at a thousandth of AWS's
// ceilings (1 write unit a second on the pattern's key) 60 subscribers
// would take minutes, throttled; with the ceilings suspended they take
// seconds, the stream they caused is processed before grow returns, and
// the functions split buckets at the scaled threshold.
func TestScale_SetupIsNotThrottledAndSettlesItsStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var log bytes.Buffer
	o := ScaleOptions{CapacityScale: 0.001, Canaries: 1, Posters: 1, FunctionsDir: os.Getenv(stacktest.EnvFunctions), Log: &log}
	b, err := startScaleBench(ctx, o)
	require.NoError(t, err)
	defer b.s.Close()
	assert.Equal(t, "2", b.s.FunctionEnv()[EnvBucketSplitAt])

	gctx, gcancel := context.WithTimeout(ctx, 45*time.Second)
	defer gcancel()
	require.NoError(t, b.grow(gctx, 60), log.String())
	c := b.s.Capacity()
	assert.Zero(t, c.Throttled, "no setup write was refused")
	assert.Positive(t, c.WriteUnits, "but each was counted")

	b.s.ResetCapacityCounts()
	time.Sleep(1500 * time.Millisecond)
	c = b.s.Capacity()
	assert.Zero(t, c.ReadUnits+c.WriteUnits, "nothing of the setup still running: %+v", c.Keys)
	assert.Equal(t, 60, b.sinks)

	// Written as the functions write them: spread over buckets split at
	// the model's share (2 here), not on one key.
	l, err := b.st.PatternLayout(ctx, topic.MustPattern("scale.>"))
	require.NoError(t, err)
	assert.GreaterOrEqual(t, l.Top(), 2, "60 subscribers at a split of 2, written 32 at a time, span several levels: %+v", l)
}

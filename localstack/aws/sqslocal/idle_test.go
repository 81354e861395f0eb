//go:build unix

package sqslocal

import (
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Not parallel: it measures the CPU time of the whole process.
func TestEventSource_IdlePollersDoNotSpin(t *testing.T) {
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "idle", nil)
	fn := newFunction(nil)
	stop := h.svc.AddEventSource(EventSourceMapping{QueueURL: queueURL, MaxConcurrency: 16, Invoke: fn.Invoke})
	defer stop()
	time.Sleep(50 * time.Millisecond)

	before := cpuTime(t)
	time.Sleep(time.Second)
	used := cpuTime(t) - before
	assert.Less(t, used, 300*time.Millisecond, "16 idle pollers must sleep, not spin")
	assert.Zero(t, fn.invocations())
}

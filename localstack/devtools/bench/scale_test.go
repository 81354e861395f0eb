package bench

import (
	"context"
	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestScale_SinkIDsRoundTrip(t *testing.T) {
	for _, i := range []int{0, 7, 999_999, 1_000_000} {
		id := sinkID(i)
		assert.Len(t, id, 16, "as long as API Gateway's")
		assert.Equal(t, i, sinkIndex(id))
	}
	assert.Equal(t, -1, sinkIndex("LZOVhyo65AdmCqN="))
	assert.Equal(t, -1, sinkIndex("Sk"))
}

func TestScale_ReceivedCountsEachDeliveryOnce(t *testing.T) {
	r := newReceived(3, 130)
	r.add(sinkID(0), []byte(`{"n":1}`))
	r.add(sinkID(129), []byte(`{"n":1,"x":2}`))
	r.add(sinkID(129), []byte(`{"n":1}`))    // a repeat
	r.add(sinkID(130), []byte(`{"n":1}`))    // not in the audience
	r.add(sinkID(5), []byte(`{"n":3}`))      // not an event of the run
	r.add(sinkID(5), []byte(`{"type":"x"}`)) // not a payload
	assert.Equal(t, int64(2), r.total())
	assert.Equal(t, int64(1), r.dups.Load())
	assert.Equal(t, int64(3), r.other.Load())
	assert.Equal(t, []int64{0, 2, 0}, r.got)
}

func TestScale_MetNeedsEverythingAndTheFloor(t *testing.T) {
	ok := ScaleRow{Expected: 10, Delivered: 10, CanariesOK: true, Last: []time.Duration{time.Second}, Floor: time.Second, Fits: true}
	assert.True(t, ok.Met())
	for name, row := range map[string]ScaleRow{
		"a delivery missing":       {Expected: 10, Delivered: 9, CanariesOK: true, Last: ok.Last, Floor: ok.Floor, Fits: true},
		"throttled":                {Expected: 10, Delivered: 10, CanariesOK: true, Last: ok.Last, Floor: ok.Floor, Throttled: 1, Fits: true},
		"slow":                     {Expected: 10, Delivered: 10, CanariesOK: true, Last: []time.Duration{2 * time.Second}, Floor: ok.Floor, Fits: true},
		"canary missed":            {Expected: 10, Delivered: 10, Last: ok.Last, Floor: ok.Floor, Fits: true},
		"repeat":                   {Expected: 10, Delivered: 10, CanariesOK: true, Last: ok.Last, Floor: ok.Floor, Duplicates: 1, Fits: true},
		"the target rate too much": {Expected: 10, Delivered: 10, CanariesOK: true, Last: ok.Last, Floor: ok.Floor},
	} {
		assert.False(t, row.Met(), name)
	}
}

func TestScale_BucketSplitAtScalesWithTheCeilings(t *testing.T) {
	for scale, want := range map[float64]int{1: 2000, 0.01: 20, 0.001: 2, 0.0003: 1, 0.0001: 1} {
		assert.Equal(t, want, BucketSplitAt(scale), "scale %g", scale)
	}
}

func TestScale_CanariesNotSubscribedAreCounted(t *testing.T) {
	ready := make(chan struct{}, 3)
	ready <- struct{}{}
	err := awaitSubscribed(context.Background(), ready, 3, 50*time.Millisecond)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2 of 3 canaries were not subscribed within 50ms")
	ready <- struct{}{}
	ready <- struct{}{}
	assert.NoError(t, awaitSubscribed(context.Background(), ready, 2, 50*time.Millisecond))
}

func TestScale_CanaryMissSaysWhatCameInstead(t *testing.T) {
	assert.Empty(t, eventsMiss([]int{0, 1, 2}, 3))
	assert.Equal(t, "got event 2 where 1 was due (2 events received of 3)", eventsMiss([]int{0, 2}, 3))
	assert.Equal(t, "got event 0 where 1 was due (3 events received of 2)", eventsMiss([]int{0, 0, 1}, 2))
	assert.Equal(t, "got 1 events of 3", eventsMiss([]int{0}, 3))
}

// At the target rate a key's units per event must fit its own ceiling:
// the scaled one for an audience key, AWS's for the others.
func TestScale_FitsHoldsEachKeyToItsOwnCeiling(t *testing.T) {
	stats := func(scaled bool, read float64) ddbproxy.CapacityStats {
		return ddbproxy.CapacityStats{Keys: []ddbproxy.KeyCapacity{{Key: "P#a", Scaled: scaled, ReadUnits: read}, {Key: "(scan)", ReadUnits: 1e9}}}
	}
	// 10 events read 200 units: 20 an event; at 1/s 20 units a second.
	ok, key, share := fits(stats(true, 200), 10, 1, 0.01)
	assert.True(t, ok)
	assert.Equal(t, "P#a", key)
	assert.InDelta(t, 20.0/30, share, 1e-9)
	ok, _, _ = fits(stats(true, 200), 10, 2, 0.01)
	assert.False(t, ok, "40 a second is over the scaled 30")
	ok, _, _ = fits(stats(false, 200), 10, 2, 0.01)
	assert.True(t, ok, "an unscaled key keeps AWS's 3,000")
}

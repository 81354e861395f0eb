package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// A frame counts as its commands: what fits in the second's window runs,
// the rest is refused, and the count holds however many frames run at once.
func TestCountCommands_CountsEachCommandOfAFrame(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil)) // 3 per second

	for _, step := range []struct {
		n, fit int
		err    error
	}{
		{n: 2, fit: 2},
		{n: 5, fit: 1, err: nil},
		{n: 1, fit: 0, err: store.ErrRateLimited},
	} {
		_, fit, err := f.s.CountCommands(ctx, "c1", f.now, step.n)
		assert.ErrorIs(t, err, step.err)
		assert.Equal(t, step.fit, fit, "%d commands", step.n)
	}
	_, fit, err := f.s.CountCommands(ctx, "c1", f.now.Add(time.Second), 50)
	require.NoError(t, err)
	assert.Equal(t, 3, fit, "a new window takes the first 3 of 50")

	c := f.conn("c2", "u2")
	c.Limits.MessagesPerSecond = 10
	require.NoError(t, f.s.PutConnection(ctx, c, nil))
	var mu sync.Mutex
	total := 0
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_, fit, err := f.s.CountCommands(ctx, "c2", f.now, 3)
			if err != nil {
				assert.ErrorIs(t, err, store.ErrRateLimited)
			}
			mu.Lock()
			total += fit
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, 10, total, "8 frames of 3 at once: exactly the 10 the window holds")
}

func TestReserveReplay_HoldsAcrossFramesAndGivesBackWhatWasNotSent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil))

	first, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), f.now, 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(600), first.Bytes)
	second, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), f.now, 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(400), second.Bytes, "what is left in the bucket")
	_, err = f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), f.now, 600, 1000)
	assert.ErrorIs(t, err, store.ErrRateLimited)

	require.NoError(t, f.s.ReturnReplay(ctx, store.ConnectionReplay("c1"), second, 400))
	require.NoError(t, f.s.ReturnReplay(ctx, store.ConnectionReplay("c1"), first, 100))
	again, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), f.now.Add(time.Second), 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(516), again.Bytes, "the frames sent 100 and 400; a second refilled 16")

	require.NoError(t, f.s.ReturnReplay(ctx, store.ConnectionReplay("c1"), again, 16))
	later, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), f.now.Add(31*time.Second), 1000, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(1000), later.Bytes, "half a minute refilled the 500 the bucket lacked")
	_, err = f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), f.now.Add(31*time.Second), 1, 1000)
	assert.ErrorIs(t, err, store.ErrRateLimited)

	_, err = f.s.ReserveReplay(ctx, store.ConnectionReplay("nope"), f.now, 600, 1000)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

// The allowance does not reset at a calendar minute's edge: a client that
// spends it in the minute's last second has a sixtieth a second back after
// it, not all of it (the fixed window gave 16 MiB in two seconds under an
// 8 MiB cap). Over any span it gets at most the cap plus what refilled.
func TestReserveReplay_SpentJustBeforeAMinuteEdgeIsNotThereAgainJustAfter(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil))
	edge := time.Unix(f.now.Unix()/60*60+60, 0)
	const perMinute = 6000

	before, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), edge.Add(-time.Second), perMinute, perMinute)
	require.NoError(t, err)
	assert.Equal(t, int64(perMinute), before.Bytes, "the whole cap, just before the edge")
	after, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), edge.Add(time.Second), perMinute, perMinute)
	require.NoError(t, err)
	assert.Equal(t, int64(200), after.Bytes, "two seconds' refill just after it, not a fresh cap")

	// A client taking all it can every 5 s for two minutes gets the cap
	// once plus the refill, never a cap per calendar minute on top.
	start, total := edge.Add(2*time.Second), int64(0)
	for at := start; at.Before(start.Add(2 * time.Minute)); at = at.Add(5 * time.Second) {
		r, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), at, perMinute, perMinute)
		if err != nil {
			require.ErrorIs(t, err, store.ErrRateLimited)
		}
		total += r.Bytes
	}
	assert.InDelta(t, 116*perMinute/60, total, 5, "the 116 s refill since the bucket was emptied, taken as it came")
}

func TestReserveReplay_FramesAtOnceGetNoMoreThanTheBucket(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil))
	var mu sync.Mutex
	var total int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			r, err := f.s.ReserveReplay(ctx, store.ConnectionReplay("c1"), f.now, 300, 1000)
			if err != nil {
				assert.ErrorIs(t, err, store.ErrRateLimited)
			}
			mu.Lock()
			total += r.Bytes
			mu.Unlock()
		})
	}
	wg.Wait()
	assert.Equal(t, int64(1000), total)
}

// A principal's connections share one replay allowance, whatever their
// number and however often they reconnect; anonymous connections share
// their source address's. The bucket needs no connection record.
func TestReserveReplay_SourceBucketIsSharedByAPrincipalsConnectionsAndAnAddress(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.conn("c1", "u1"), f.conn("c2", "u1")
	ba, isPrincipal := store.SourceReplay(a)
	require.True(t, isPrincipal)
	bb, _ := store.SourceReplay(b)
	assert.Equal(t, ba, bb, "one bucket for the principal")
	other, _ := store.SourceReplay(f.conn("c3", "u2"))
	assert.NotEqual(t, ba, other)

	first, err := f.s.ReserveReplay(ctx, ba, f.now, 600, 1000)
	require.NoError(t, err)
	second, err := f.s.ReserveReplay(ctx, bb, f.now, 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(600), first.Bytes)
	assert.Equal(t, int64(400), second.Bytes, "the second connection gets what the first left")
	_, err = f.s.ReserveReplay(ctx, bb, f.now, 1, 1000)
	assert.ErrorIs(t, err, store.ErrRateLimited)
	require.NoError(t, f.s.ReturnReplay(ctx, ba, first, 500))
	back, err := f.s.ReserveReplay(ctx, bb, f.now, 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(100), back.Bytes, "what was reserved and not sent comes back")
	r, err := f.s.ReserveReplay(ctx, other, f.now, 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(600), r.Bytes, "another principal has its own")

	anon := func(id, ip string) store.Connection {
		return store.Connection{ID: id, Principal: auth.Anonymous(), SourceIP: ip}
	}
	x, isPrincipal := store.SourceReplay(anon("a1", "192.0.2.1"))
	require.False(t, isPrincipal)
	y, _ := store.SourceReplay(anon("a2", "192.0.2.1"))
	z, _ := store.SourceReplay(anon("a3", "192.0.2.2"))
	assert.Equal(t, x, y, "one bucket for the address")
	assert.NotEqual(t, x, z)
	_, err = f.s.ReserveReplay(ctx, x, f.now, 1000, 1000)
	require.NoError(t, err)
	_, err = f.s.ReserveReplay(ctx, y, f.now, 1, 1000)
	assert.ErrorIs(t, err, store.ErrRateLimited)
	_, err = f.s.ReserveReplay(ctx, z, f.now, 1, 1000)
	assert.NoError(t, err)
}

func TestTopicSeq_KnowsWhenTheLastEventWasPublished(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ts, err := f.s.TopicSeq(ctx, topic.MustPattern("t.x"))
	require.NoError(t, err)
	assert.Equal(t, store.TopicSeq{}, ts, "no events yet")
	for i := 1; i <= 2; i++ {
		_, err := f.s.BeginEvent(ctx, event(t, fmt.Sprint("e", i), "t.x", ""), "w", time.Minute, time.Hour)
		require.NoError(t, err)
	}
	ts, err = f.s.TopicSeq(ctx, topic.MustPattern("t.x"))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), ts.Seq)
	assert.True(t, ts.Published.Equal(time.Unix(1_800_000_000, 0)), "%s", ts.Published)
}

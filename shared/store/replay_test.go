package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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

	first, err := f.s.ReserveReplay(ctx, "c1", f.now, 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(600), first.Bytes)
	second, err := f.s.ReserveReplay(ctx, "c1", f.now, 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(400), second.Bytes, "what is left of the minute")
	_, err = f.s.ReserveReplay(ctx, "c1", f.now, 600, 1000)
	assert.ErrorIs(t, err, store.ErrRateLimited)

	require.NoError(t, f.s.ReturnReplay(ctx, "c1", second, 400))
	require.NoError(t, f.s.ReturnReplay(ctx, "c1", first, 100))
	again, err := f.s.ReserveReplay(ctx, "c1", f.now.Add(time.Second), 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(500), again.Bytes, "the frames sent 100 and 400")

	next, err := f.s.ReserveReplay(ctx, "c1", f.now.Add(time.Minute), 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(600), next.Bytes, "a new minute")
	require.NoError(t, f.s.ReturnReplay(ctx, "c1", again, 0), "a return to a minute that is over does nothing")
	late, err := f.s.ReserveReplay(ctx, "c1", f.now.Add(time.Minute), 600, 1000)
	require.NoError(t, err)
	assert.Equal(t, int64(400), late.Bytes)

	_, err = f.s.ReserveReplay(ctx, "nope", f.now, 600, 1000)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestReserveReplay_FramesAtOnceGetNoMoreThanTheMinute(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil))
	var mu sync.Mutex
	var total int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			r, err := f.s.ReserveReplay(ctx, "c1", f.now, 300, 1000)
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

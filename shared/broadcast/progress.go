package broadcast

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/store"
)

// checkpointEvery is how often a shard records its progress while it
// delivers: a worker that dies re-sends at most what it delivered since.
const checkpointEvery = 250 * time.Millisecond

// progress is which of a shard's connections were delivered, by hash
// (store.Hash), as the sender's workers report them. Hashes, unlike
// positions in the audience, still name the same connections when a retry
// finds subscribers joined or left.
type progress struct {
	mu    sync.Mutex
	done  map[uint64]bool
	dirty bool // changed since the last snapshot
}

// newProgress tracks a shard with none delivered.
func newProgress() *progress { return &progress{done: map[uint64]bool{}} }

// mark records the connection of hash h as delivered.
func (p *progress) mark(h uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done[h] = true
	p.dirty = true
}

// delivered reports whether the connection of hash h was delivered.
func (p *progress) delivered(h uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done[h]
}

// changed reports whether anything was marked since the last snapshot.
func (p *progress) changed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dirty
}

// snapshot returns the delivered hashes, 8 bytes each, in ascending
// order, to be recorded.
func (p *progress) snapshot() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dirty = false
	hs := make([]uint64, 0, len(p.done))
	for h := range p.done {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	out := make([]byte, 0, 8*len(hs))
	for _, h := range hs {
		out = binary.BigEndian.AppendUint64(out, h)
	}
	return out
}

// restore adopts the hashes an earlier attempt recorded.
func (p *progress) restore(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for ; len(b) >= 8; b = b[8:] {
		p.done[binary.BigEndian.Uint64(b)] = true
	}
}

// marker is a shard's progress record in the store, held by owner under
// a lease that every write renews.
type marker struct {
	st       *store.Store
	eventID  string
	index    int
	owner    string
	lease    time.Duration
	progress *progress
}

// claimShard claims mk's shard, waiting for another live attempt's claim
// to end, and restores the progress an earlier attempt recorded; skip
// means the shard was delivered already.
func (h *Handler) claimShard(ctx context.Context, job shardJob, mk *marker) (skip bool, err error) {
	var prev store.ShardProgress
	var ok bool
	err = h.await(ctx, func() (err error) {
		prev, ok, err = h.store.ClaimShard(ctx, mk.eventID, mk.index, mk.owner, mk.lease)
		return err
	})
	if err != nil {
		job.log.Warn("shard not claimed; it will be retried", "error", err.Error())
		return false, err
	}
	if ok && prev.Done {
		job.m.Add("ShardsSkipped", 1, metrics.Count)
		job.log.Info("shard already delivered")
		return true, nil
	}
	if ok {
		mk.progress.restore(prev.Delivered)
	}
	return false, nil
}

// checkpoint records the progress so far.
func (mk *marker) checkpoint(ctx context.Context) error {
	return mk.st.PutShard(ctx, mk.eventID, mk.index, mk.owner, mk.lease,
		store.ShardProgress{Delivered: mk.progress.snapshot()})
}

// finish records the shard as delivered.
func (mk *marker) finish(ctx context.Context) error {
	return mk.st.PutShard(ctx, mk.eventID, mk.index, mk.owner, mk.lease,
		store.ShardProgress{Done: true, Delivered: mk.progress.snapshot()})
}

// keepRecording checkpoints the progress until the returned stop is
// called (once): every checkpointEvery when it changed, and every third
// of the lease regardless, so that a claim whose progress stalls on
// retries does not lapse. When another attempt has taken the shard over,
// it calls lost and stops.
func (mk *marker) keepRecording(ctx context.Context, log *slog.Logger, lost func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(checkpointEvery)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if !mk.progress.changed() && now.Sub(last) < mk.lease/3 {
					continue
				}
				last = now
				err := mk.checkpoint(ctx)
				if errors.Is(err, store.ErrInProgress) {
					log.Warn("shard taken over by another attempt; stopping", "error", err.Error())
					lost()
					return
				}
				if err != nil {
					log.Warn("shard checkpoint failed", "error", err.Error())
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

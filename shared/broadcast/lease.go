package broadcast

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/store"
)

// Events and shards are held under leases: an attempt owns one while it
// renews it, and another attempt takes it over once it lapses.

// owner names this attempt at an event, for its lease.
func owner(ctx context.Context) string {
	if id := requestID(ctx); id != "" {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// await runs claim until it stops answering ErrInProgress, for at most
// one lease and a second: the holder finishes, or its lease lapses if it
// died. It leaves time for the work the claim is for. It polls at a fixed
// fifth of the lease rather than backing off: it waits for one holder's
// finish or lapse, not for contention to clear.
func (h *Handler) await(ctx context.Context, claim func() error) error {
	lease := h.cfg.EventLease
	until := time.Now().Add(lease + time.Second)
	if d, ok := ctx.Deadline(); ok && d.Add(-lease).Before(until) {
		until = d.Add(-lease)
	}
	for {
		err := claim()
		if !errors.Is(err, store.ErrInProgress) || !time.Now().Before(until) {
			return err
		}
		if err := backoff.Sleep(ctx, max(lease/5, 50*time.Millisecond)); err != nil {
			return err
		}
	}
}

// keepLease renews a lease every third of its length until the returned
// stop is called (once or more).
func (h *Handler) keepLease(ctx context.Context, log *slog.Logger, renew func(context.Context) error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(h.cfg.EventLease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := renew(ctx); err != nil {
					log.Warn("lease not renewed", "error", err.Error())
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

package broadcast

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/delivery"
	"github.com/wsgate/wsgate/shared/events"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// checkpointEvery is how often a shard records its progress while it
// delivers: a worker that dies re-sends at most what it delivered since.
const checkpointEvery = 250 * time.Millisecond

// deliverShard delivers one shard. With markers, it claims the shard (a
// shard another live attempt holds is waited for, then left to it), skips
// a shard already delivered and, within a shard, the connections an
// earlier attempt recorded as delivered, and records its own progress as
// it goes, which also renews its claim.
func (h *Handler) deliverShard(ctx context.Context, log *slog.Logger, m *metrics.Set, enc *delivery.Encoder, eventID string, idx int, variants []queue.Variant, sh shard, markers bool) error {
	log = log.With("shard", idx)
	done := make([]byte, (len(sh.conns)+7)/8)
	me, lease := owner(ctx), h.cfg.EventLease
	if markers {
		var prev store.ShardProgress
		var ok bool
		err := h.await(ctx, func() (err error) {
			prev, ok, err = h.store.ClaimShard(ctx, eventID, idx, me, lease)
			return err
		})
		if err != nil {
			log.Warn("shard not claimed; it will be retried", "error", err.Error())
			return err
		}
		if ok && prev.Done {
			m.Add("ShardsSkipped", 1, metrics.Count)
			log.Info("shard already delivered")
			return nil
		}
		if ok && prev.First == sh.conns[0] && len(prev.Delivered) == len(done) {
			copy(done, prev.Delivered)
		}
	}

	frames := make([][]byte, len(variants))
	for i, v := range variants {
		f, err := enc.Frame(v.Envelope, v.Keep)
		if err != nil {
			log.Error("encode failed", "error", err.Error())
			return nil // cannot improve on retry
		}
		frames[i] = f
	}
	var ds []fanout.Delivery
	var pos []int // pos[k]: index in the shard of ds[k]
	for i, id := range sh.conns {
		if done[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		v := 0
		if sh.variantOf != nil {
			v = sh.variantOf[i]
		}
		ds = append(ds, fanout.Delivery{ConnectionID: id, Data: frames[v]})
		pos = append(pos, i)
	}
	if skipped := len(sh.conns) - len(ds); skipped > 0 {
		m.Add("ResumedDeliveries", float64(skipped), metrics.Count)
		log.Info("shard resumed", "already_delivered", skipped)
	}

	var mu sync.Mutex
	progressed := false
	record := func(final bool) error {
		mu.Lock()
		p := store.ShardProgress{Done: final, Delivered: append([]byte(nil), done...), First: sh.conns[0]}
		progressed = false
		mu.Unlock()
		return h.store.PutShard(ctx, eventID, idx, me, lease, p)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sendCtx, lost := context.WithCancel(ctx)
	defer lost()
	if markers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(checkpointEvery)
			defer t.Stop()
			last := time.Now()
			for {
				select {
				case <-stop:
					return
				case now := <-t.C:
					mu.Lock()
					dirty := progressed
					mu.Unlock()
					// Progress, or a claim about to lapse (retries can
					// stall progress), is written down.
					if !dirty && now.Sub(last) < lease/3 {
						continue
					}
					last = now
					err := record(false)
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
	}
	h.send(sendCtx, log, m, ds, enc.Item().Time, func(k int) {
		i := pos[k]
		mu.Lock()
		done[i/8] |= 1 << (i % 8)
		progressed = true
		mu.Unlock()
	})
	close(stop)
	wg.Wait()
	if sendCtx.Err() != nil && ctx.Err() == nil {
		return nil // the attempt that took over finishes the shard
	}
	if markers {
		if err := record(true); err != nil {
			log.Error("shard completion not recorded; a retry will skip what was delivered", "error", err.Error())
			return err
		}
	}
	return nil
}

// shardTask delivers a shard handed over by the event's coordinator.
func (h *Handler) shardTask(ctx context.Context, t queue.Task) error {
	m := metrics.New(map[string]string{"Stage": h.cfg.Stage, "Function": "broadcast"})
	m.Property("event_id", t.EventID)
	m.Property("shard", t.Shard)
	meter := &store.Meter{}
	ctx = store.WithMeter(ctx, meter)
	defer func() {
		read, write, _ := meter.Snapshot()
		m.Add("ReadCapacity", read, metrics.Count)
		m.Add("WriteCapacity", write, metrics.Count)
		_ = m.Write(h.metrics)
	}()
	log := h.log.With("event_id", t.EventID, "seq", t.Seq)
	detail := []byte(t.Detail)
	if t.DetailRef != "" {
		var err error
		detail, err = h.store.Detail(ctx, t.DetailRef)
		if errors.Is(err, store.ErrNotFound) {
			log.Error("shard's event detail expired; shard dropped")
			return nil
		}
		if err != nil {
			return err // SQS retries the shard
		}
	}
	ev, err := events.Parse(t.EventID, t.EventTime, detail, false)
	if err != nil {
		log.Error("shard with an invalid event dropped", "error", err.Error())
		return nil
	}
	enc := delivery.NewEncoder(delivery.FromEvent(ev, t.Seq))
	return h.deliverShard(ctx, log, m, enc, t.EventID, t.Shard, t.Variants, shard{conns: t.Conns, variantOf: t.VariantOf}, true)
}

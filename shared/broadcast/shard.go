package broadcast

import (
	"context"
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

// deliverShard delivers one shard. With markers, it skips a shard already
// delivered and, within a shard, the connections an earlier attempt
// recorded as delivered, and records its own progress as it goes.
func (h *Handler) deliverShard(ctx context.Context, log *slog.Logger, m *metrics.Set, enc *delivery.Encoder, eventID string, idx int, variants []queue.Variant, sh shard, markers bool) error {
	log = log.With("shard", idx)
	done := make([]byte, (len(sh.conns)+7)/8)
	if markers {
		prev, ok, err := h.store.GetShard(ctx, eventID, idx)
		if err != nil {
			log.Error("shard progress unreadable", "error", err.Error())
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
		return h.store.PutShard(ctx, eventID, idx, p)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if markers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(checkpointEvery)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					mu.Lock()
					dirty := progressed
					mu.Unlock()
					if dirty {
						if err := record(false); err != nil {
							log.Warn("shard checkpoint failed", "error", err.Error())
						}
					}
				}
			}
		}()
	}
	h.send(ctx, log, m, ds, enc.Item().Time, func(k int) {
		i := pos[k]
		mu.Lock()
		done[i/8] |= 1 << (i % 8)
		progressed = true
		mu.Unlock()
	})
	close(stop)
	wg.Wait()
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
	ev, err := events.Parse(t.EventID, t.EventTime, t.Detail, false)
	if err != nil {
		log.Error("shard with an invalid event dropped", "error", err.Error())
		return nil
	}
	enc := delivery.NewEncoder(delivery.FromEvent(ev, t.Seq))
	return h.deliverShard(ctx, log, m, enc, t.EventID, t.Shard, t.Variants, shard{conns: t.Conns, variantOf: t.VariantOf}, true)
}

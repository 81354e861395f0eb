package broadcast

import (
	"context"
	"log/slog"

	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/metrics"
)

// removeParallel bounds how many gone connections are removed at once.
const removeParallel = 8

// send fans a shard's deliveries out, counts what happened and removes
// the connections found gone.
func (h *Handler) send(ctx context.Context, job shardJob, ds []fanout.Delivery, delivered func(int)) {
	sum := h.sender.SendTracked(ctx, ds, delivered)
	m := job.m
	m.Add("Delivered", float64(sum.Delivered), metrics.Count)
	m.Add("Gone", float64(len(sum.Gone)), metrics.Count)
	m.Add("Settling", float64(sum.Settling), metrics.Count)
	m.Add("Throttled", float64(sum.Throttled), metrics.Count)
	m.Add("BufferFull", float64(sum.BufferFull), metrics.Count)
	m.Add("SlowClients", float64(len(sum.SlowClients)), metrics.Count)
	m.Add("Retried", float64(sum.Retried), metrics.Count)
	m.Add("Failed", float64(len(sum.Failed)), metrics.Count)
	m.Add("PostCalls", float64(sum.Calls), metrics.Count)
	m.Duration("FanoutDuration", sum.Duration)
	if published := job.enc.Item().Time; !published.IsZero() {
		m.Duration("EventAge", h.now().Sub(published))
	}
	h.removeGone(ctx, job.log, sum.Gone)
	level := slog.LevelInfo
	if len(sum.Failed) > 0 {
		level = slog.LevelWarn
	}
	job.log.Log(ctx, level, "fanned out", "deliveries", len(ds), "delivered", sum.Delivered, "gone", len(sum.Gone),
		"throttled", sum.Throttled, "buffer_full", sum.BufferFull, "retried", sum.Retried, "failed", len(sum.Failed),
		"duration_ms", sum.Duration.Milliseconds())
}

// removeGone deletes the records of connections that answered 410, a few
// at a time.
func (h *Handler) removeGone(ctx context.Context, log *slog.Logger, gone []string) {
	inParallel(len(gone), removeParallel, func(i int) {
		if _, err := h.store.DeleteConnection(ctx, gone[i]); err != nil {
			log.Warn("gone connection not removed; its TTL will", "connection_id", gone[i], "error", err.Error())
		}
	})
}

package broadcast

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"

	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/frame"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// InlineDetailBytes is the largest event detail a shard task carries
// itself; a larger one is stored in the table once and the tasks name it.
const InlineDetailBytes = 16 << 10

// deliver fans the event out by hash range. Its patterns and their levels
// tell how many keys its audience spans; the event is cut into 2^k ranges
// of about a fan-out page each (store.Cut). With one range (k = 0, one
// bucket per pattern: the common case) it reads and delivers here, with
// the requests of one read of each pattern's key. With more, it records
// the cut on the event (so a retry cuts the same ranges), queues a task
// per range after the first, and delivers the first here: each range
// reads only its own keys, so no invocation reads the whole audience.
func (h *Handler) deliver(ctx context.Context, a *attempt) error {
	refs, err := h.matchingPatterns(ctx, a)
	if err != nil {
		return err
	}
	top := 0
	for _, r := range refs {
		top = max(top, store.Layout{Levels: r.Levels}.Top())
	}
	k := store.Cut(top, h.cfg.BucketSplitAt, h.cfg.FanoutPageSize)
	if k == 0 && a.rec.Cut > 0 {
		k = a.rec.Cut // an earlier attempt's cut (the settings changed since)
	}
	enc := frame.NewEncoder(frame.Item{Event: a.ev.Event, Seq: a.rec.Seq})
	job := shardJob{log: a.log, m: a.m, enc: enc, eventID: a.ev.ID, refs: refs}
	if k == 0 {
		// A single range keeps no progress marker, so a small event costs
		// no write beyond its sequence number.
		a.m.Add("Shards", 1, metrics.Count)
		return h.deliverRange(ctx, job)
	}
	if k, err = h.store.FixCut(ctx, a.ev.ID, a.owner, k); err != nil {
		a.log.Error("event's cut not recorded; EventBridge will retry the event", "error", err.Error())
		return err
	}
	a.m.Add("Shards", float64(int(1)<<k), metrics.Count)
	job.tracked = true
	if h.tasks == nil {
		// No queue: every range here, one after another.
		for r := range 1 << k {
			job.rg, job.index = store.Range{K: k, R: r}, shardIndex(k, r)
			if err := h.deliverRange(ctx, job); err != nil {
				return err
			}
		}
		return nil
	}
	if err := h.queueRanges(ctx, a, k, refs); err != nil {
		return err
	}
	job.rg, job.index = store.Range{K: k}, shardIndex(k, 0)
	return h.deliverRange(ctx, job)
}

// shardIndex numbers range r of 2^k for its progress record: distinct for
// every cut, so a record is never taken for another cut's range.
func shardIndex(k, r int) int { return 1<<k + r }

// queueRanges hands the ranges after the first to the task queue, with
// the patterns and levels they read. A detail over InlineDetailBytes is
// stored once rather than copied into every task's message.
func (h *Handler) queueRanges(ctx context.Context, a *attempt, k int, refs []store.PatternRef) error {
	detail, ref := json.RawMessage(a.detail), ""
	if len(a.detail) > InlineDetailBytes {
		if err := h.store.PutDetail(ctx, a.ev.ID, a.detail); err != nil {
			a.log.Error("detail not stored; EventBridge will retry the event", "error", err.Error())
			return err
		}
		detail, ref = nil, a.ev.ID
	}
	patterns := make([]queue.RangePattern, len(refs))
	for i, r := range refs {
		patterns[i] = queue.RangePattern{Pattern: r.Pattern, Levels: r.Levels, Wildcard: r.Wildcard}
	}
	tasks := make([]queue.Task, 0, 1<<k-1)
	for r := 1; r < 1<<k; r++ {
		tasks = append(tasks, queue.Task{
			Kind: queue.KindShard, EventID: a.ev.ID, EventTime: a.ev.Time, Seq: a.rec.Seq, Shard: shardIndex(k, r),
			Detail: detail, DetailRef: ref, Range: &queue.Range{K: k, R: r, Patterns: patterns},
		})
	}
	if err := h.tasks.SendAll(ctx, tasks); err != nil {
		a.log.Error("shards not queued; EventBridge will retry the event", "error", err.Error())
		return err
	}
	return nil
}

// shardTask delivers a range handed over by the event's coordinator;
// redelivered, SQS hands it out again (see ordering).
func (h *Handler) shardTask(ctx context.Context, t queue.Task, redelivered bool) error {
	ctx, m, flush := h.measure(ctx, t.EventID)
	defer flush()
	m.Property("shard", t.Shard)
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
	ev, err := publish.Parse(t.EventID, t.EventTime, detail, false)
	if err != nil {
		log.Error("shard with an invalid event dropped", "error", err.Error())
		return nil
	}
	refs := make([]store.PatternRef, len(t.Range.Patterns))
	for i, p := range t.Range.Patterns {
		refs[i] = store.PatternRef{Pattern: p.Pattern, Levels: p.Levels, Wildcard: p.Wildcard}
	}
	job := shardJob{
		log: log, m: m, enc: frame.NewEncoder(frame.Item{Event: ev.Event, Seq: t.Seq}),
		eventID: t.EventID, index: t.Shard, refs: refs, rg: store.Range{K: t.Range.K, R: t.Range.R}, tracked: true,
	}
	if redelivered {
		job.order = &ordering{topic: ev.Topic, seq: t.Seq}
	}
	return h.deliverRange(ctx, job)
}

// shardJob is one hash range of an event to deliver.
type shardJob struct {
	log     *slog.Logger
	m       *metrics.Set
	enc     *frame.Encoder
	eventID string
	index   int
	// refs are the patterns matching the event, with their levels; rg the
	// range of their subscribers this job delivers to.
	refs []store.PatternRef
	rg   store.Range
	// tracked: the shard keeps a progress marker (see marker), as every
	// range of an event cut in several does; a lone range keeps none.
	tracked bool
	// order, for a redelivered shard: it sends only while no later event
	// is numbered on its topic.
	order *ordering
}

// deliverRange delivers one range. When tracked, it claims the range (a
// range another live attempt holds is waited for, then left to it), skips
// a range already delivered and, within a range, the connections an
// earlier attempt recorded as delivered (by hash: whoever joined or left
// since), and records its own progress as it goes, which also renews its
// claim. It reads the range's subscribers, decides each one's frame, and
// posts. A redelivered range stops sending once a later event is numbered
// on its topic (see ordering).
func (h *Handler) deliverRange(ctx context.Context, job shardJob) error {
	job.log = job.log.With("shard", job.index)
	done := newProgress()
	var mk *marker
	if job.tracked {
		mk = &marker{st: h.store, eventID: job.eventID, index: job.index, owner: owner(ctx), lease: h.cfg.EventLease, progress: done}
		if skip, err := h.claimShard(ctx, job, mk); skip || err != nil {
			return err
		}
	}
	aud, err := h.readRange(ctx, job.log, job.refs, job.rg)
	if err != nil {
		return err
	}
	job.m.Add("Subscribers", float64(len(aud.order)), metrics.Count)
	job.m.Add("SubscribersUnreadable", float64(aud.unreadable), metrics.Count)
	p := newPlan(job.enc, aud)
	job.m.Add("Filtered", float64(len(aud.order)-len(p.conns)), metrics.Count)
	frames, err := p.frames(job.enc)
	if err != nil {
		job.log.Error("encode failed", "error", err.Error())
		return nil // cannot improve on retry
	}
	ds, hs := p.pending(frames, done)
	if skipped := len(p.conns) - len(ds); skipped > 0 {
		job.m.Add("ResumedDeliveries", float64(skipped), metrics.Count)
		job.log.Info("shard resumed", "already_delivered", skipped)
	}
	var cut error
	if job.order != nil && len(ds) > 0 {
		later, err := h.superseded(ctx, job.order)
		if err != nil {
			job.log.Warn("topic's number not read; the shard will be retried", "error", err.Error())
			return err
		}
		if later {
			cut = errSuperseded
		}
	}
	if cut == nil {
		cut = h.sendShard(ctx, job, mk, ds, hs, done)
	}
	switch {
	case errors.Is(cut, errTakenOver):
		return nil // the attempt that took over finishes the shard
	case errors.Is(cut, errSuperseded):
		job.supersede(hs, done)
	}
	if mk == nil {
		return nil
	}
	if err := mk.finish(ctx); err != nil {
		job.log.Error("shard completion not recorded; a retry will skip what was delivered", "error", err.Error())
		return err
	}
	return nil
}

// sendShard posts ds, marking each delivery in done, while the shard's
// claim holds and, for a redelivered shard, while no later event is
// numbered on its topic; it returns why the sending was cut short
// (errTakenOver, errSuperseded), or nil.
func (h *Handler) sendShard(ctx context.Context, job shardJob, mk *marker, ds []fanout.Delivery, hs []uint64, done *progress) error {
	sendCtx, cut := context.WithCancelCause(ctx)
	defer cut(nil)
	stopRecording, stopWatching := func() {}, func() {}
	if mk != nil {
		stopRecording = mk.keepRecording(ctx, job.log, func() { cut(errTakenOver) })
	}
	if job.order != nil {
		stopWatching = h.watchOrder(ctx, job.log, job.order, func() { cut(errSuperseded) })
	}
	h.send(sendCtx, job, ds, func(k int) { done.mark(hs[k]) })
	stopWatching()
	stopRecording()
	if ctx.Err() != nil || sendCtx.Err() == nil {
		return nil
	}
	return context.Cause(sendCtx)
}

// supersede counts and logs the connections of hs a redelivered shard
// leaves undelivered because a later event was numbered on its topic.
func (job shardJob) supersede(hs []uint64, done *progress) {
	left := 0
	for _, h := range hs {
		if !done.delivered(h) {
			left++
		}
	}
	job.m.Add("Superseded", float64(left), metrics.Count)
	job.log.Warn("redelivered shard not sent: a later event on the topic is numbered, and it must not arrive after it; its clients resume",
		"not_delivered", left)
}

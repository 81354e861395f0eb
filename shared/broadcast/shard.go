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
// With FanoutPageSize's 10,000 connection ids a task stays under 256 KB.
const InlineDetailBytes = 16 << 10

// deliver finds the event's audience, decides each connection's frame, and
// fans out: the first shard here, the others in parallel through the task
// queue, each a fresh invocation with its own workers.
func (h *Handler) deliver(ctx context.Context, a *attempt) error {
	aud, err := h.findAudience(ctx, a.log, a.ev.Topic)
	if err != nil {
		return err
	}
	a.m.Add("Subscribers", float64(len(aud.order)), metrics.Count)
	a.m.Add("SubscribersUnreadable", float64(aud.unreadable), metrics.Count)
	enc := frame.NewEncoder(frame.Item{Event: a.ev.Event, Seq: a.rec.Seq})
	p := newPlan(enc, aud)
	a.m.Add("Filtered", float64(len(aud.order)-len(p.conns)), metrics.Count)
	shards := p.split(h.cfg.FanoutPageSize)
	a.m.Add("Shards", float64(len(shards)), metrics.Count)

	job := shardJob{log: a.log, m: a.m, enc: enc, eventID: a.ev.ID, variants: p.variants}
	if len(shards) > 1 && h.tasks != nil {
		if err := h.queueShards(ctx, a, p.variants, shards[1:]); err != nil {
			return err
		}
		job.shard, job.tracked = shards[0], true
		return h.deliverShard(ctx, job)
	}
	// One shard, or no queue: deliver here. A single shard keeps no progress
	// marker, so a small event costs no write beyond its sequence number.
	for i, sh := range shards {
		job.index, job.shard, job.tracked = i, sh, len(shards) > 1
		if err := h.deliverShard(ctx, job); err != nil {
			return err
		}
	}
	return nil
}

// queueShards hands the shards after the first to the task queue, with
// the variants they share. A detail over InlineDetailBytes is stored once
// rather than copied into every shard's message.
func (h *Handler) queueShards(ctx context.Context, a *attempt, variants []queue.Variant, rest []shard) error {
	detail, ref := json.RawMessage(a.detail), ""
	if len(a.detail) > InlineDetailBytes {
		if err := h.store.PutDetail(ctx, a.ev.ID, a.detail); err != nil {
			a.log.Error("detail not stored; EventBridge will retry the event", "error", err.Error())
			return err
		}
		detail, ref = nil, a.ev.ID
	}
	tasks := make([]queue.Task, 0, len(rest))
	for i, sh := range rest {
		tasks = append(tasks, queue.Task{
			Kind: queue.KindShard, EventID: a.ev.ID, EventTime: a.ev.Time, Seq: a.rec.Seq, Shard: i + 1,
			Detail: detail, DetailRef: ref, Variants: variants, Conns: sh.conns, VariantOf: sh.variantOf,
		})
	}
	if err := h.tasks.SendAll(ctx, tasks); err != nil {
		a.log.Error("shards not queued; EventBridge will retry the event", "error", err.Error())
		return err
	}
	return nil
}

// shardTask delivers a shard handed over by the event's coordinator;
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
	job := shardJob{
		log: log, m: m, enc: frame.NewEncoder(frame.Item{Event: ev.Event, Seq: t.Seq}),
		eventID: t.EventID, index: t.Shard, variants: t.Variants,
		shard: shard{conns: t.Conns, variantOf: t.VariantOf}, tracked: true,
	}
	if redelivered {
		job.order = &ordering{topic: ev.Topic, seq: t.Seq}
	}
	return h.deliverShard(ctx, job)
}

// shardJob is one shard to deliver.
type shardJob struct {
	log      *slog.Logger
	m        *metrics.Set
	enc      *frame.Encoder
	eventID  string
	index    int
	variants []queue.Variant
	shard    shard
	// tracked: the shard keeps a progress marker (see marker), as every
	// shard of a sharded event does; a lone shard keeps none.
	tracked bool
	// order, for a redelivered shard: it sends only while no later event
	// is numbered on its topic.
	order *ordering
}

// deliverShard delivers one shard. When tracked, it claims the shard (a
// shard another live attempt holds is waited for, then left to it), skips
// a shard already delivered and, within a shard, the connections an
// earlier attempt recorded as delivered, and records its own progress as
// it goes, which also renews its claim. A redelivered shard stops sending
// once a later event is numbered on its topic (see ordering).
func (h *Handler) deliverShard(ctx context.Context, job shardJob) error {
	job.log = job.log.With("shard", job.index)
	done := newProgress(len(job.shard.conns))
	var mk *marker
	if job.tracked {
		mk = &marker{st: h.store, eventID: job.eventID, index: job.index, owner: owner(ctx),
			lease: h.cfg.EventLease, first: job.shard.conns[0], progress: done}
		if skip, err := h.claimShard(ctx, job, mk); skip || err != nil {
			return err
		}
	}
	frames, err := job.frames()
	if err != nil {
		job.log.Error("encode failed", "error", err.Error())
		return nil // cannot improve on retry
	}
	ds, pos := job.pending(frames, done)
	if skipped := len(job.shard.conns) - len(ds); skipped > 0 {
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
		cut = h.sendShard(ctx, job, mk, ds, pos, done)
	}
	switch {
	case errors.Is(cut, errTakenOver):
		return nil // the attempt that took over finishes the shard
	case errors.Is(cut, errSuperseded):
		job.supersede(pos, done)
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
func (h *Handler) sendShard(ctx context.Context, job shardJob, mk *marker, ds []fanout.Delivery, pos []int, done *progress) error {
	sendCtx, cut := context.WithCancelCause(ctx)
	defer cut(nil)
	stopRecording, stopWatching := func() {}, func() {}
	if mk != nil {
		stopRecording = mk.keepRecording(ctx, job.log, func() { cut(errTakenOver) })
	}
	if job.order != nil {
		stopWatching = h.watchOrder(ctx, job.log, job.order, func() { cut(errSuperseded) })
	}
	h.send(sendCtx, job, ds, func(k int) { done.mark(pos[k]) })
	stopWatching()
	stopRecording()
	if ctx.Err() != nil || sendCtx.Err() == nil {
		return nil
	}
	return context.Cause(sendCtx)
}

// supersede counts and logs the connections of pos a redelivered shard
// leaves undelivered because a later event was numbered on its topic.
func (job shardJob) supersede(pos []int, done *progress) {
	left := 0
	for _, i := range pos {
		if !done.delivered(i) {
			left++
		}
	}
	job.m.Add("Superseded", float64(left), metrics.Count)
	job.log.Warn("redelivered shard not sent: a later event on the topic is numbered, and it must not arrive after it; its clients resume",
		"not_delivered", left)
}

// frames encodes each variant of the event's frame once.
func (job shardJob) frames() ([][]byte, error) {
	frames := make([][]byte, len(job.variants))
	for i, v := range job.variants {
		f, err := job.enc.Frame(frame.Form{Envelope: v.Envelope, Keep: v.Keep})
		if err != nil {
			return nil, err
		}
		frames[i] = f
	}
	return frames, nil
}

// pending lists the deliveries to the shard's connections not yet
// delivered; pos[k] is the index in the shard of ds[k].
func (job shardJob) pending(frames [][]byte, done *progress) (ds []fanout.Delivery, pos []int) {
	for i, id := range job.shard.conns {
		if done.delivered(i) {
			continue
		}
		ds = append(ds, fanout.Delivery{ConnectionID: id, Data: frames[job.shard.variant(i)]})
		pos = append(pos, i)
	}
	return ds, pos
}

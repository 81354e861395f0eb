package broadcast

import (
	"context"
	"errors"
	"log/slog"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
)

// OrderWindow is the gateway's ordering promise: events one publisher
// sends to one topic at least this far apart are numbered, and so
// delivered, in the order they were published.
const OrderWindow = time.Second

// attempt is one invocation's attempt at an event.
type attempt struct {
	log *slog.Logger
	m   *metrics.Set
	ev  publish.Event
	// detail is the event's detail as published, for the shard tasks.
	detail []byte
	// owner names this attempt on the event's lease.
	owner string
	// rec is the event's record once claimed: its sequence number.
	rec store.EventRecord
}

// HandleEvent delivers one EventBridge event. It returns an error only when
// a retry can help (storage failure, another attempt in progress); an
// invalid event is logged, counted and dropped.
func (h *Handler) HandleEvent(ctx context.Context, cwe lambdaevents.CloudWatchEvent) error {
	start := h.now()
	ctx, m, flush := h.measure(ctx, cwe.ID)
	defer flush()
	log := h.log.With("event_id", cwe.ID)
	if reqID := requestID(ctx); reqID != "" {
		log = log.With("request_id", reqID)
	}
	if cwe.DetailType == publish.RevokeDetailType {
		m.Add("Revocations", 1, metrics.Count)
		return h.handleRevocation(ctx, log, cwe)
	}

	// Validation (sizes included) comes before the event is numbered or
	// its state replaced: a refused event changes nothing.
	ev, err := publish.Parse(cwe.ID, cwe.Time, cwe.Detail, h.cfg.HistoryDefault)
	if err != nil {
		countRejected(m, err)
		log.Warn("event rejected", "reason", err.Error(), "source", cwe.Source, "detail_type", cwe.DetailType, "detail_bytes", len(cwe.Detail))
		return nil
	}
	a := &attempt{log: log.With("topic", ev.Topic.String()), m: m, ev: ev, detail: cwe.Detail, owner: owner(ctx)}
	if err := h.run(ctx, a); err != nil {
		return err
	}
	m.Duration("ProcessingDuration", h.now().Sub(start))
	return nil
}

// PublishNow numbers and delivers an event a client published through the
// gateway (the publish command), with id and at as its EventBridge id and
// time would be: the same work as for a backend's event, in the caller's
// invocation, so the client's answer carries the event's number. A
// detail that fails validation is an error wrapping publish.ErrInvalid.
func (h *Handler) PublishNow(ctx context.Context, id string, at time.Time, detail []byte) (uint64, error) {
	ctx, m, flush := h.measure(ctx, id)
	defer flush()
	ev, err := publish.Parse(id, at, detail, h.cfg.HistoryDefault)
	if err != nil {
		countRejected(m, err)
		return 0, err
	}
	m.Add("ClientEvents", 1, metrics.Count)
	a := &attempt{log: h.log.With("event_id", id, "topic", ev.Topic.String(), "from", ev.From), m: m, ev: ev, detail: detail, owner: owner(ctx)}
	err = h.run(ctx, a)
	return a.rec.Seq, err
}

// countRejected counts an event refused by validation, and apart those
// refused for their size (a payload over a frame, a detail or state over
// what one DynamoDB item holds).
func countRejected(m *metrics.Set, err error) {
	m.Add("Rejected", 1, metrics.Count)
	if errors.Is(err, publish.ErrTooLarge) {
		m.Add("RejectedTooLarge", 1, metrics.Count)
	}
}

// run claims the event's number and does its work, unless it was done.
func (h *Handler) run(ctx context.Context, a *attempt) error {
	var err error
	if a.rec, err = h.claimEvent(ctx, a); err != nil {
		return err
	}
	if a.rec.Done {
		a.m.Add("Duplicate", 1, metrics.Count)
		a.log.Info("duplicate event ignored", "seq", a.rec.Seq)
		return nil
	}
	a.log = a.log.With("seq", a.rec.Seq)
	if a.rec.Overtaken > OrderWindow {
		// The ordering promise is broken for this event: say so.
		a.m.Add("NumberedOutOfOrder", 1, metrics.Count)
		a.log.Warn("numbered after an event published later", "overtaken_ms", a.rec.Overtaken.Milliseconds())
	}
	return h.process(ctx, a)
}

// claimEvent claims the event and draws its sequence number, or takes
// over the record of an earlier attempt: one still in progress is waited
// for, until it finishes or, if it died, its lease lapses. A record
// already Done is returned as is.
//
// EventBridge delivers at least once, and a redelivery may run beside the
// first delivery: the claim is one conditional write, so only one of them
// draws a number (store.BeginEvent) and no number is skipped.
func (h *Handler) claimEvent(ctx context.Context, a *attempt) (store.EventRecord, error) {
	rec, err := h.store.BeginEvent(ctx, a.ev, a.owner, h.cfg.EventLease, h.cfg.HistoryRetention)
	if errors.Is(err, store.ErrInProgress) {
		err = h.await(ctx, func() (err error) {
			rec, err = h.store.BeginEvent(ctx, a.ev, a.owner, h.cfg.EventLease, h.cfg.HistoryRetention)
			return err
		})
	}
	switch {
	case errors.Is(err, store.ErrInProgress):
		a.log.Info("event in progress elsewhere; a retry will find it done or abandoned")
		return rec, err
	case err != nil:
		a.log.Error("sequence assignment failed", "error", err.Error())
		h.release(ctx, a) // a claim without a number: let the retry have it at once
		return rec, err
	}
	return rec, nil
}

// process does a claimed event's work under its renewed lease, replacing
// the topic's state and delivering the payload, then marks the event
// done; on failure it releases the event for a retry.
func (h *Handler) process(ctx context.Context, a *attempt) error {
	stopLease := h.keepLease(ctx, a.log, func(ctx context.Context) error {
		return h.store.RenewEvent(ctx, a.ev.ID, a.owner, h.cfg.EventLease)
	})
	defer stopLease()
	var err error
	if a.ev.ReplaceState {
		err = h.store.ReplaceState(ctx, a.ev, a.rec.Seq)
	}
	if err == nil && a.ev.HasPayload {
		err = h.deliver(ctx, a)
	}
	// Renewals stop before the finish: finishing clears the owner, and a
	// renewal after it would read as another attempt having taken over.
	stopLease()
	if err == nil {
		if err = h.store.FinishEvent(ctx, a.ev.ID); err != nil {
			a.log.Error("finish failed; a redelivery will repeat the fan-out", "error", err.Error())
		}
	}
	if err != nil {
		h.release(ctx, a)
		return err
	}
	return nil
}

// release gives up the event's lease, so that EventBridge's retry takes
// the event over without waiting the lease out.
func (h *Handler) release(ctx context.Context, a *attempt) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := h.store.ReleaseEvent(rctx, a.ev.ID, a.owner); err != nil {
		a.log.Warn("lease not released; the retry waits for it to lapse", "error", err.Error())
	}
}

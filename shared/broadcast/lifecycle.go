package broadcast

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
)

// HandleStream turns a batch of the table's stream records into lifecycle
// events on the bus (publish.ConnectionOpened, publish.ConnectionClosed),
// in as few PutEvents calls as the batch allows (10 entries each), and
// into the join and leave events of presence-enabled topics. The two are
// independent: each is tried whatever became of the other. An error (the
// bus, the table or the queue failed, never a client) makes Lambda retry
// the batch: lifecycle events come at least once, each with the stream
// record's id to tell repeats apart, and presence applies nothing twice.
func (h *Handler) HandleStream(ctx context.Context, records []json.RawMessage) error {
	m := metrics.New(map[string]string{"Stage": h.cfg.Stage, "Function": "broadcast"})
	defer func() { _ = m.Write(h.metrics) }()
	var out []publish.Announcement
	var changes []store.SubscriptionChange
	for _, raw := range records {
		var r store.StreamRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			h.log.Error("unreadable stream record", "error", err.Error())
			continue // retrying cannot help
		}
		if c, ok := store.SubscriptionChangeOf(r); ok {
			changes = append(changes, c)
			continue
		}
		l, ok, err := store.LifecycleOf(r)
		if err != nil {
			h.log.Error("stream record not understood", "record_id", r.EventID, "error", err.Error())
			continue
		}
		if ok {
			out = append(out, announcement(l))
		}
	}
	lerr := h.lifecycle(ctx, m, out, len(records))
	var perr error
	if len(changes) > 0 {
		if perr = h.presence(ctx, m, changes); perr != nil {
			m.Add("PresenceFailed", 1, metrics.Count)
			h.log.Error("presence not applied; the batch is retried", "changes", len(changes), "error", perr.Error())
		}
	}
	return errors.Join(lerr, perr)
}

// lifecycle puts the batch's lifecycle events on the bus.
func (h *Handler) lifecycle(ctx context.Context, m *metrics.Set, out []publish.Announcement, records int) error {
	if len(out) == 0 || !h.cfg.LifecycleEvents || h.bus == nil || h.cfg.EventBus == "" {
		return nil
	}
	pub := publish.Publisher{Client: h.bus, Bus: h.cfg.EventBus, Source: publish.ClientSource}
	if err := pub.AnnounceAll(ctx, out); err != nil {
		h.log.Error("lifecycle events not put on the bus; the batch is retried", "events", len(out), "error", err.Error())
		m.Add("LifecycleEventsFailed", float64(len(out)), metrics.Count)
		return err
	}
	m.Add("LifecycleEvents", float64(len(out)), metrics.Count)
	h.log.Info("lifecycle events", "events", len(out), "records", records)
	return nil
}

func announcement(l store.Lifecycle) publish.Announcement {
	c := l.Conn
	e := publish.ConnectionEvent{
		ID: l.ID, ConnectionID: c.ID, PType: c.Principal.Type, Sub: c.Principal.Sub, Orgs: c.Principal.Orgs,
		Scope: c.Scope, ConnectedAt: c.ConnectedAt.UTC(),
	}
	if c.Principal.Anonymous {
		e.PType, e.Sub = "anonymous", ""
	}
	if l.Opened {
		e.Auth = "handshake"
		if l.ByAuthMessage {
			e.Auth = "message"
		}
		return publish.Announcement{DetailType: publish.ConnectionOpened, Detail: e}
	}
	at := l.At.UTC()
	e.ClosedAt, e.Reason = &at, publish.CloseDisconnected
	if l.Expired {
		e.Reason = publish.CloseExpired
	}
	e.DurationMS = max(0, at.Sub(c.ConnectedAt).Milliseconds())
	return publish.Announcement{DetailType: publish.ConnectionClosed, Detail: e}
}

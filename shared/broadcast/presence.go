package broadcast

import (
	"context"
	"fmt"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// presenceDue is a principal whose presence in a topic must be announced.
type presenceDue struct {
	change  store.SubscriptionChange
	present bool
}

// foldPresence applies a batch's subscription changes of presence-enabled
// topics to their rosters, in order, and returns the announcements due
// after the last change of each principal: a join and a leave of one
// principal within the batch cancel out.
func (h *Handler) foldPresence(ctx context.Context, changes []store.SubscriptionChange) ([]presenceDue, error) {
	due := map[string]presenceDue{}
	var order []string
	for _, c := range changes {
		t, err := topic.ParseTopic(c.Topic)
		if err != nil || !config.Matches(h.cfg.PresenceTopics, t) {
			continue
		}
		announce, present, err := h.store.ApplyToRoster(ctx, c)
		if err != nil {
			return nil, err
		}
		k := c.Topic + "\x00" + store.RosterKey(c.Identity)
		if _, seen := due[k]; !seen {
			order = append(order, k)
		}
		if announce {
			due[k] = presenceDue{c, present}
		} else {
			due[k] = presenceDue{}
		}
	}
	var out []presenceDue
	for _, k := range order {
		if d := due[k]; d.change.Topic != "" {
			out = append(out, d)
		}
	}
	return out, nil
}

// announcePresence claims each announcement on its roster and delivers it
// to the topic's subscribers that asked for presence ("presence": true);
// a failed delivery gives the claim back, for the batch's retry.
func (h *Handler) announcePresence(ctx context.Context, m *metrics.Set, dues []presenceDue) error {
	for _, d := range dues {
		c := d.change
		claimed, err := h.store.Announced(ctx, c.Topic, c.Identity, d.present)
		if err != nil {
			return err
		}
		if !claimed {
			continue // announced meanwhile by another batch
		}
		if err := h.deliverPresence(ctx, d); err != nil {
			if _, rerr := h.store.Announced(context.WithoutCancel(ctx), c.Topic, c.Identity, !d.present); rerr != nil {
				h.log.Warn("presence claim not given back", "topic", c.Topic, "error", rerr.Error())
			}
			return err
		}
		kind := "Leaves"
		if d.present {
			kind = "Joins"
		}
		m.Add("Presence"+kind, 1, metrics.Count)
	}
	return nil
}

func (h *Handler) deliverPresence(ctx context.Context, d presenceDue) error {
	c := d.change
	ev := protocol.PresenceEvent{Type: protocol.TypeLeave, Topic: c.Topic, PType: c.Identity.Type, Sub: c.Identity.Sub}
	if d.present {
		ev.Type = protocol.TypeJoin
	}
	if c.Identity.Anonymous {
		ev.PType, ev.Sub = "anonymous", ""
	}
	frame := protocol.Encode(ev)
	var cursor store.Cursor
	for {
		subs, next, err := h.store.Subscribers(ctx, c.Topic, cursor, h.cfg.FanoutPageSize)
		if skipped := store.Unreadable(err); len(skipped) > 0 {
			// Unreadable entries hear nothing; the others still do.
			h.log.Error("presence: subscribers skipped: stored entry unreadable", "topic", c.Topic, "skipped", len(skipped), "error", err.Error())
		} else if err != nil {
			return err
		}
		var ds []fanout.Delivery
		for _, s := range subs {
			if s.Presence {
				ds = append(ds, fanout.Delivery{ConnectionID: s.ConnectionID, Data: frame})
			}
		}
		if len(ds) > 0 {
			sum := h.sender.SendTracked(ctx, ds, nil)
			h.removeGone(ctx, h.log, sum.Gone)
			if len(sum.Failed) > 0 {
				return fmt.Errorf("broadcast: %s of %s in %s: %d posts failed", ev.Type, store.RosterKey(c.Identity), c.Topic, len(sum.Failed))
			}
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

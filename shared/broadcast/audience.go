package broadcast

import (
	"context"
	"log/slog"

	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/store"
)

// audience is the subscribers of one hash range of an event: one target
// per connection, in the order they were first found.
type audience struct {
	targets map[string]*target
	order   []string
	// unreadable counts subscriber entries left out because their identity
	// or filters do not decode (store.ErrUnreadable).
	unreadable int
}

// target is one connection's matching subscriptions.
type target struct {
	sub  store.Subscription
	sets []filter.Set
}

// add merges subscription s into its connection's target: its filters
// join the others, and the connection gets the envelope if any of its
// subscriptions asked for it. All of a connection's entries (any pattern,
// any level) have its hash, so they are all in the same range.
func (a *audience) add(s store.Subscription) {
	t, ok := a.targets[s.ConnectionID]
	if !ok {
		t = &target{sub: s}
		a.targets[s.ConnectionID] = t
		a.order = append(a.order, s.ConnectionID)
	}
	t.sets = append(t.sets, s.Filters)
	t.sub.Envelope = t.sub.Envelope || s.Envelope
}

// matchingPatterns are the patterns whose subscribers may want the
// event, each with the levels that may hold them. The topic's own layout
// came back with its number; an attempt that took over a number drawn
// earlier reads it.
func (h *Handler) matchingPatterns(ctx context.Context, a *attempt) ([]store.PatternRef, error) {
	layout := a.rec.Layout
	if layout == nil {
		l, err := h.store.PatternLayout(ctx, a.ev.Topic)
		if err != nil {
			a.log.Error("topic's layout unreadable", "error", err.Error())
			return nil, err
		}
		layout = &l
	}
	refs, err := h.store.SubscriberPatterns(ctx, a.ev.Topic, *layout)
	if err != nil {
		a.log.Error("subscriber lookup failed", "error", err.Error())
		return nil, err
	}
	return refs, nil
}

// readRange reads the subscribers of every pattern of refs in hash range
// rg, one entry per connection with all its matching subscriptions'
// filters. A wildcard pattern nobody subscribes to any more is forgotten
// (only when rg is the whole space: then every key of every level was read
// whole), so later events stop looking it up.
func (h *Handler) readRange(ctx context.Context, log *slog.Logger, refs []store.PatternRef, rg store.Range) (*audience, error) {
	a := &audience{targets: map[string]*target{}}
	for _, ref := range refs {
		subs, err := h.store.RangeSubscribers(ctx, ref.Pattern, ref.Levels, rg, 0)
		skipped := len(store.Unreadable(err))
		if skipped > 0 {
			// Those subscribers get nothing; the others get the event.
			a.unreadable += skipped
			log.Error("subscribers skipped: stored entry unreadable", "pattern", ref.Pattern, "skipped", skipped, "error", err.Error())
		} else if err != nil {
			log.Error("subscriber read failed", "pattern", ref.Pattern, "error", err.Error())
			return nil, err
		}
		if rg.K == 0 && len(subs) == 0 && skipped == 0 && ref.Wildcard {
			if err := h.store.ForgetPattern(ctx, ref); err != nil {
				log.Warn("stale pattern not removed", "pattern", ref.Pattern, "error", err.Error())
			}
		}
		for _, s := range subs {
			a.add(s)
		}
	}
	return a, nil
}

package broadcast

import (
	"context"
	"log/slog"

	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// audience is an event's subscribers: one target per connection, in the
// order they were first found.
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
// subscriptions asked for it.
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

// findAudience reads every subscriber of the patterns matching topic t,
// page by page, one entry per connection with all its matching
// subscriptions' filters.
func (h *Handler) findAudience(ctx context.Context, log *slog.Logger, t topic.Pattern) (*audience, error) {
	refs, err := h.store.SubscriberPatterns(ctx, t)
	if err != nil {
		log.Error("subscriber lookup failed", "error", err.Error())
		return nil, err
	}
	a := &audience{targets: map[string]*target{}}
	for _, ref := range refs {
		if err := h.readPattern(ctx, log, ref, a); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// readPattern adds the subscribers of one pattern to a. A wildcard
// pattern nobody subscribes to any more is forgotten, so later events
// stop looking it up.
func (h *Handler) readPattern(ctx context.Context, log *slog.Logger, ref store.PatternRef, a *audience) error {
	var cursor store.Cursor
	for page := 0; ; page++ {
		subs, next, err := h.store.Subscribers(ctx, ref.Pattern, cursor, 0)
		skipped := len(store.Unreadable(err))
		if skipped > 0 {
			// Those subscribers get nothing; the others get the event.
			a.unreadable += skipped
			log.Error("subscribers skipped: stored entry unreadable", "pattern", ref.Pattern, "skipped", skipped, "error", err.Error())
		} else if err != nil {
			log.Error("subscriber page failed", "pattern", ref.Pattern, "error", err.Error())
			return err
		}
		if page == 0 && len(subs) == 0 && next == "" && skipped == 0 && ref.Wildcard {
			if err := h.store.ForgetPattern(ctx, ref); err != nil {
				log.Warn("stale pattern not removed", "pattern", ref.Pattern, "error", err.Error())
			}
		}
		for _, s := range subs {
			a.add(s)
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
}

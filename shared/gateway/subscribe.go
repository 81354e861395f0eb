package gateway

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// subscribe adds every pattern or none and answers subscribed.
func (inv *invocation) subscribe(ctx context.Context, c protocol.Subscribe) {
	reads := 0 // the sequence numbers read after subscribing
	for _, p := range c.Patterns {
		if !p.HasWildcard() {
			reads++
		}
	}
	if c.Presence {
		for _, p := range c.Patterns {
			if p.HasWildcard() || !config.Matches(inv.g.cfg.PresenceTopics, p) {
				inv.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "\"presence\": %s is not a topic with presence (WSGATE_PRESENCE_TOPICS)", p))
				return
			}
		}
	}
	topics, perr := inv.addSubscriptions(ctx, c.ID, c.Patterns, c.Filters, c.Presence, reads)
	if perr != nil {
		inv.replyErr(perr)
		return
	}
	// Read after the subscriptions are written: every event numbered
	// later finds them, so a client that resumes from here misses nothing.
	var seqs map[string]uint64
	for _, p := range c.Patterns {
		if p.HasWildcard() {
			continue
		}
		seq, err := inv.g.store.CurrentSeq(ctx, p)
		if err != nil {
			inv.log.Warn("sequence number unreadable; subscribed without it", "topic", p.String(), "error", err.Error())
			continue
		}
		if seqs == nil {
			seqs = map[string]uint64{}
		}
		seqs[p.String()] = seq
	}
	inv.reply(protocol.Subscribed{Type: protocol.TypeSubscribed, ID: c.ID, Topics: topics, Seqs: seqs})
}

// addSubscriptions subscribes to every pattern or none. What is checked
// before anything is written refuses it whole: permission, the
// subscription limit, and the frame's store calls (one transaction per
// pattern, and reads more after). A refusal part-way (the limit reached by
// a frame running at once, the store failing) undoes the subscriptions
// this command created.
func (inv *invocation) addSubscriptions(ctx context.Context, id []byte, patterns []topic.Pattern, filters filter.Set, presence bool, reads int) ([]string, *protocol.Error) {
	for _, p := range patterns {
		if !inv.conn.Principal.MaySubscribe(p) {
			return nil, protocol.Errorf(id, protocol.CodeForbidden, "not allowed to subscribe to %s", p)
		}
	}
	if perr := inv.checkRoom(ctx, id, patterns); perr != nil {
		return nil, perr
	}
	if perr := inv.spend(id, len(patterns)+reads); perr != nil {
		return nil, perr
	}
	var created []topic.Pattern
	undo := func() {
		// Undo even when ctx ran out: a half-made command must not stay.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, p := range created {
			if _, err := inv.g.store.Unsubscribe(uctx, inv.conn.ID, p); err != nil {
				inv.log.Error("undo subscribe failed", "pattern", p.String(), "error", err.Error())
			}
		}
	}
	topics := make([]string, 0, len(patterns))
	for i, p := range patterns {
		if i > 0 && inv.spent() {
			undo()
			return nil, errBudget(id)
		}
		isNew, err := inv.g.store.Subscribe(ctx, inv.conn, store.NewSubscription{Pattern: p, Filters: filters, Presence: presence})
		switch {
		case errors.Is(err, store.ErrWildcardLimit):
			undo()
			inv.g.limited("$default", MetricTooManySubscriptions, inv.conn.ID, inv.conn.Principal.Sub)
			return nil, protocol.Errorf(id, protocol.CodeRateLimited, "at most %d distinct wildcard patterns per principal", inv.conn.Limits.MaxWildcards)
		case errors.Is(err, store.ErrLimit):
			undo()
			inv.g.limited("$default", MetricTooManySubscriptions, inv.conn.ID, inv.conn.Principal.Sub)
			return nil, protocol.Errorf(id, protocol.CodeRateLimited, "at most %d subscriptions per connection", inv.conn.Limits.MaxSubscriptions)
		case errors.Is(err, store.ErrNotFound):
			undo()
			return nil, protocol.Errorf(id, protocol.CodeNotFound, "connection is gone")
		case err != nil:
			undo()
			inv.log.Error("subscribe failed", "error", err.Error())
			return nil, protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry")
		}
		if isNew {
			created = append(created, p)
		}
		topics = append(topics, p.String())
	}
	inv.conn.Subscriptions += len(created)
	inv.log.Info("subscribed", "patterns", strings.Join(topics, ","))
	return topics, nil
}

// checkRoom refuses, before anything is written, a subscribe that would
// take the connection past its subscription limit. The count is the
// record's as this frame found it, kept up to date by its commands; only
// near the limit are the connection's subscriptions read, since
// subscribing again to a pattern (new filters) takes no more room. The
// store's own conditional count still holds against frames running at once.
func (inv *invocation) checkRoom(ctx context.Context, id []byte, patterns []topic.Pattern) *protocol.Error {
	limit := inv.conn.Limits.MaxSubscriptions
	distinct := map[string]bool{}
	for _, p := range patterns {
		distinct[p.String()] = true
	}
	if limit <= 0 || inv.conn.Subscriptions+len(distinct) <= limit {
		return nil
	}
	if perr := inv.spend(id, 1); perr != nil {
		return perr
	}
	subs, err := inv.g.store.ConnectionSubscriptions(ctx, inv.conn.ID)
	if err != nil {
		inv.log.Error("subscriptions unreadable", "error", err.Error())
		return protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry")
	}
	for _, sub := range subs {
		delete(distinct, sub.Pattern)
	}
	if inv.conn.Subscriptions+len(distinct) <= limit {
		return nil
	}
	inv.g.limited("$default", MetricTooManySubscriptions, inv.conn.ID, inv.conn.Principal.Sub)
	return protocol.Errorf(id, protocol.CodeRateLimited, "at most %d subscriptions per connection: it holds %d and this adds %d", limit, inv.conn.Subscriptions, len(distinct))
}

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
func (s *session) subscribe(ctx context.Context, c protocol.Subscribe) {
	reads := 0 // the sequence numbers read after subscribing
	for _, p := range c.Patterns {
		if !p.HasWildcard() {
			reads++
		}
	}
	if c.Presence {
		for _, p := range c.Patterns {
			if p.HasWildcard() || !config.Matches(s.g.cfg.PresenceTopics, p) {
				s.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "\"presence\": %s is not a topic with presence (WSGATE_PRESENCE_TOPICS)", p))
				return
			}
		}
	}
	topics, perr := s.addSubscriptions(ctx, c.ID, c.Patterns, c.Filters, c.Presence, reads)
	if perr != nil {
		s.replyErr(perr)
		return
	}
	// Read after the subscriptions are written: every event numbered
	// later finds them, so a client that resumes from here misses nothing.
	var seqs map[string]uint64
	for _, p := range c.Patterns {
		if p.HasWildcard() {
			continue
		}
		seq, err := s.g.store.CurrentSeq(ctx, p)
		if err != nil {
			s.log.Warn("sequence number unreadable; subscribed without it", "topic", p.String(), "error", err.Error())
			continue
		}
		if seqs == nil {
			seqs = map[string]uint64{}
		}
		seqs[p.String()] = seq
	}
	s.reply(protocol.Subscribed{Type: protocol.TypeSubscribed, ID: c.ID, Topics: topics, Seqs: seqs})
}

// addSubscriptions subscribes to every pattern or none. What is checked
// before anything is written refuses it whole: permission, the
// subscription limit, and the frame's store calls (one transaction per
// pattern, and reads more after). A refusal part-way (the limit reached by
// a frame running at once, the store failing) undoes the subscriptions
// this command created.
func (s *session) addSubscriptions(ctx context.Context, id []byte, patterns []topic.Pattern, filters filter.Set, presence bool, reads int) ([]string, *protocol.Error) {
	for _, p := range patterns {
		if !s.conn.Principal.MaySubscribe(p) {
			return nil, protocol.Errorf(id, protocol.CodeForbidden, "not allowed to subscribe to %s", p)
		}
	}
	if perr := s.checkRoom(ctx, id, patterns); perr != nil {
		return nil, perr
	}
	if perr := s.spend(id, len(patterns)+reads); perr != nil {
		return nil, perr
	}
	var created []topic.Pattern
	undo := func() {
		// Undo even when ctx ran out: a half-made command must not stay.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, p := range created {
			if _, err := s.g.store.Unsubscribe(uctx, s.conn.ID, p); err != nil {
				s.log.Error("undo subscribe failed", "pattern", p.String(), "error", err.Error())
			}
		}
	}
	topics := make([]string, 0, len(patterns))
	for i, p := range patterns {
		if i > 0 && s.spent() {
			undo()
			return nil, errBudget(id)
		}
		isNew, err := s.g.store.Subscribe(ctx, s.conn, store.NewSubscription{Pattern: p, Filters: filters, Presence: presence})
		switch {
		case errors.Is(err, store.ErrWildcardLimit):
			undo()
			s.g.limited("$default", MetricTooManySubscriptions, s.conn.ID, s.conn.Principal.Sub)
			return nil, protocol.Errorf(id, protocol.CodeRateLimited, "at most %d distinct wildcard patterns per principal", s.conn.Limits.MaxWildcards)
		case errors.Is(err, store.ErrLimit):
			undo()
			s.g.limited("$default", MetricTooManySubscriptions, s.conn.ID, s.conn.Principal.Sub)
			return nil, protocol.Errorf(id, protocol.CodeRateLimited, "at most %d subscriptions per connection", s.conn.Limits.MaxSubscriptions)
		case errors.Is(err, store.ErrNotFound):
			undo()
			return nil, protocol.Errorf(id, protocol.CodeNotFound, "connection is gone")
		case err != nil:
			undo()
			s.log.Error("subscribe failed", "error", err.Error())
			return nil, protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry")
		}
		if isNew {
			created = append(created, p)
		}
		topics = append(topics, p.String())
	}
	s.conn.Subscriptions += len(created)
	s.log.Info("subscribed", "patterns", strings.Join(topics, ","))
	return topics, nil
}

// checkRoom refuses, before anything is written, a subscribe that would
// take the connection past its subscription limit. The count is the
// record's as this frame found it, kept up to date by its commands; only
// near the limit are the connection's subscriptions read, since
// subscribing again to a pattern (new filters) takes no more room. The
// store's own conditional count still holds against frames running at once.
func (s *session) checkRoom(ctx context.Context, id []byte, patterns []topic.Pattern) *protocol.Error {
	limit := s.conn.Limits.MaxSubscriptions
	distinct := map[string]bool{}
	for _, p := range patterns {
		distinct[p.String()] = true
	}
	if limit <= 0 || s.conn.Subscriptions+len(distinct) <= limit {
		return nil
	}
	if perr := s.spend(id, 1); perr != nil {
		return perr
	}
	subs, err := s.g.store.ConnectionSubscriptions(ctx, s.conn.ID)
	if err != nil {
		s.log.Error("subscriptions unreadable", "error", err.Error())
		return protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry")
	}
	for _, sub := range subs {
		delete(distinct, sub.Pattern)
	}
	if s.conn.Subscriptions+len(distinct) <= limit {
		return nil
	}
	s.g.limited("$default", MetricTooManySubscriptions, s.conn.ID, s.conn.Principal.Sub)
	return protocol.Errorf(id, protocol.CodeRateLimited, "at most %d subscriptions per connection: it holds %d and this adds %d", limit, s.conn.Subscriptions, len(distinct))
}

package gateway

import (
	"context"

	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/topic"
)

// unsubscribe removes the command's patterns or, with covering (a
// channel without device_id), every subscription they cover, and answers
// unsubscribed.
func (s *session) unsubscribe(ctx context.Context, c protocol.Unsubscribe) {
	patterns := c.Patterns
	if c.Covering {
		if s.refused(s.spend(c.ID, 1)) {
			return
		}
		if patterns = s.covered(ctx, c.ID, c.Patterns); patterns == nil {
			return
		}
		s.owe(len(patterns), cost(c))
	}
	if s.refused(s.spend(c.ID, len(patterns))) {
		return
	}
	s.removeSubscriptions(ctx, c.ID, patterns)
}

// removeSubscriptions removes the patterns, never the direct topic, and
// answers unsubscribed.
func (s *session) removeSubscriptions(ctx context.Context, id []byte, patterns []topic.Pattern) {
	direct, hasDirect := s.conn.Principal.DirectTopic()
	for _, p := range patterns {
		if hasDirect && p.String() == direct.String() {
			s.replyErr(protocol.Errorf(id, protocol.CodeForbidden, "the direct topic %s stays subscribed for the connection's life", p))
			return
		}
	}
	topics := make([]string, 0, len(patterns))
	for _, p := range patterns {
		removed, err := s.g.store.Unsubscribe(ctx, s.conn.ID, p)
		if err != nil {
			s.internal(id, err)
			return
		}
		if removed {
			s.conn.Subscriptions--
		}
		topics = append(topics, p.String())
	}
	s.reply(protocol.Unsubscribed{Type: protocol.TypeUnsubscribed, ID: id, Topics: topics})
}

// covered returns the connection's subscriptions that the patterns cover
// (nil after replying with an error).
func (s *session) covered(ctx context.Context, id []byte, patterns []topic.Pattern) []topic.Pattern {
	subs, err := s.g.store.ConnectionSubscriptions(ctx, s.conn.ID)
	if err != nil {
		s.internal(id, err)
		return nil
	}
	direct, hasDirect := s.conn.Principal.DirectTopic()
	out := []topic.Pattern{}
	for _, sub := range subs {
		p, err := topic.ParsePattern(sub.Pattern)
		if err != nil || (hasDirect && p.String() == direct.String()) {
			continue
		}
		for _, c := range patterns {
			if c.Covers(p) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

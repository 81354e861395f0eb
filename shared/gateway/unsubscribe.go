package gateway

import (
	"context"

	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/topic"
)

// unsubscribe removes the command's patterns or, with covering (a
// channel without device_id), every subscription they cover, and answers
// unsubscribed.
func (inv *invocation) unsubscribe(ctx context.Context, c protocol.Unsubscribe) {
	patterns := c.Patterns
	if c.Covering {
		if inv.refused(inv.spend(c.ID, 1)) {
			return
		}
		if patterns = inv.covered(ctx, c.ID, c.Patterns); patterns == nil {
			return
		}
		inv.owe(len(patterns), cost(c))
	}
	if inv.refused(inv.spend(c.ID, len(patterns))) {
		return
	}
	inv.removeSubscriptions(ctx, c.ID, patterns)
}

// removeSubscriptions removes the patterns, never the direct topic, and
// answers unsubscribed.
func (inv *invocation) removeSubscriptions(ctx context.Context, id []byte, patterns []topic.Pattern) {
	direct, hasDirect := inv.conn.Principal.DirectTopic()
	for _, p := range patterns {
		if hasDirect && p.String() == direct.String() {
			inv.replyErr(protocol.Errorf(id, protocol.CodeForbidden, "the direct topic %s stays subscribed for the connection's life", p))
			return
		}
	}
	topics := make([]string, 0, len(patterns))
	for _, p := range patterns {
		removed, err := inv.g.store.Unsubscribe(ctx, inv.conn.ID, p)
		if err != nil {
			inv.internal(id, err)
			return
		}
		if removed {
			inv.conn.Subscriptions--
		}
		topics = append(topics, p.String())
	}
	inv.reply(protocol.Unsubscribed{Type: protocol.TypeUnsubscribed, ID: id, Topics: topics})
}

// covered returns the connection's subscriptions that the patterns cover
// (nil after replying with an error).
func (inv *invocation) covered(ctx context.Context, id []byte, patterns []topic.Pattern) []topic.Pattern {
	subs, err := inv.g.store.ConnectionSubscriptions(ctx, inv.conn.ID)
	if err != nil {
		inv.internal(id, err)
		return nil
	}
	direct, hasDirect := inv.conn.Principal.DirectTopic()
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

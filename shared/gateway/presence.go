package gateway

import (
	"context"
	"errors"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/frame"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
)

// PresencePage bounds the subscriptions one presence answer reads (and so
// its cost: one consistent Query of at most this many items).
const PresencePage = 100

// presence answers who is subscribed to an exact topic now. It reads the
// topic's subscriber index, which every subscription writes anyway: a
// presence-enabled topic costs nothing until someone asks, and a
// connection's entry goes with it (unsubscribe, $disconnect, or its TTL
// when $disconnect never came: an expired entry is skipped at once).
func (inv *invocation) presence(ctx context.Context, c protocol.Presence) {
	switch {
	case !config.Matches(inv.g.cfg.PresenceTopics, c.Topic):
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "presence is not enabled for %s (WSGATE_PRESENCE_TOPICS)", c.Topic))
		return
	case !inv.conn.Principal.MaySubscribe(c.Topic):
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "not allowed to read %s", c.Topic))
		return
	}
	cursor, err := inv.g.cursors.open(c.Topic.String(), c.Cursor)
	if err != nil {
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "presence: %v", err))
		return
	}
	if inv.refused(inv.spend(c.ID, 1)) {
		return
	}
	subs, next, err := inv.g.store.TopicSubscribers(ctx, c.Topic, cursor, PresencePage)
	if skipped := store.Unreadable(err); len(skipped) > 0 {
		// An entry that does not decode names nobody: list the others.
		inv.log.Error("presence: members skipped: stored entry unreadable", "topic", c.Topic.String(), "skipped", len(skipped), "error", err.Error())
	} else if err != nil {
		inv.internal(c.ID, err)
		return
	}
	reply := protocol.PresenceReply{Type: protocol.TypePresence, ID: c.ID, Topic: c.Topic.String(), Members: members(subs)}
	reply.Cursor = inv.g.cursors.seal(c.Topic.String(), next)
	// A page is stored data: it counts against the replay caps.
	_, err = inv.replayer().Send(ctx, [][]byte{protocol.Encode(reply)}, func(f []byte) error {
		inv.replies = append(inv.replies, f)
		return nil
	})
	switch {
	case errors.Is(err, frame.ErrReplayLimited):
		inv.g.limited("$default", MetricRateLimited, inv.conn.ID, inv.conn.Principal.Sub)
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeRateLimited, "presence: %v; ask again later", err))
	case err != nil:
		inv.internal(c.ID, err)
	}
}

// members groups a page of subscriptions by principal, in the order met.
func members(subs []store.Subscription) []protocol.PresenceMember {
	out := []protocol.PresenceMember{}
	at := map[string]int{}
	for _, sub := range subs {
		id := sub.Identity
		if id.Anonymous {
			id = auth.Identity{Type: "anonymous"} // anonymous connections are counted, not named
		}
		k := auth.AudienceSub(id.Type, id.Sub)
		if i, ok := at[k]; ok {
			out[i].Connections++
			continue
		}
		at[k] = len(out)
		out = append(out, protocol.PresenceMember{PType: id.Type, Sub: id.Sub, Connections: 1})
	}
	return out
}

package gateway

import (
	"context"

	"github.com/wsgate/wsgate/shared/protocol"
)

// register serves Digital Rebar's text commands: the pattern is narrowed to
// what the principal may see ("register *.*.*" means everything I may see),
// and success answers nothing.
func (s *session) register(ctx context.Context, c protocol.Register) {
	parts := s.conn.Principal.Narrow(c.Pattern)
	if len(parts) == 0 {
		s.replyErr(protocol.Errorf(nil, protocol.CodeForbidden, "nothing in %s is visible to you", c.Pattern))
		return
	}
	s.owe(len(parts), cost(c))
	if c.Deregister {
		if s.refused(s.spend(nil, len(parts))) {
			return
		}
		direct, hasDirect := s.conn.Principal.DirectTopic()
		for _, p := range parts {
			if hasDirect && p.String() == direct.String() {
				continue // the direct topic stays for the connection's life
			}
			removed, err := s.g.store.Unsubscribe(ctx, s.conn.ID, p)
			if err != nil {
				s.internal(nil, err)
				return
			}
			if removed {
				s.conn.Subscriptions--
			}
		}
		return
	}
	if _, perr := s.addSubscriptions(ctx, nil, parts, nil, false, 0); perr != nil {
		s.replyErr(perr)
	}
}

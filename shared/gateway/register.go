package gateway

import (
	"context"

	"github.com/wsgate/wsgate/shared/protocol"
)

// register serves Digital Rebar's text commands: the pattern is narrowed to
// what the principal may see ("register *.*.*" means everything I may see),
// and success answers nothing.
func (inv *invocation) register(ctx context.Context, c protocol.Register) {
	parts := inv.conn.Principal.Narrow(c.Pattern)
	if len(parts) == 0 {
		inv.replyErr(protocol.Errorf(nil, protocol.CodeForbidden, "nothing in %s is visible to you", c.Pattern))
		return
	}
	inv.owe(len(parts), cost(c))
	if c.Deregister {
		if inv.refused(inv.spend(nil, len(parts))) {
			return
		}
		direct, hasDirect := inv.conn.Principal.DirectTopic()
		for _, p := range parts {
			if hasDirect && p.String() == direct.String() {
				continue // the direct topic stays for the connection's life
			}
			removed, err := inv.g.store.Unsubscribe(ctx, inv.conn.ID, p)
			if err != nil {
				inv.internal(nil, err)
				return
			}
			if removed {
				inv.conn.Subscriptions--
			}
		}
		return
	}
	if _, perr := inv.addSubscriptions(ctx, nil, parts, nil, false, 0); perr != nil {
		inv.replyErr(perr)
	}
}

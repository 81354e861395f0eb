package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// pending handles a frame from a connection still waiting to authenticate.
func (inv *invocation) pending(ctx context.Context, cmd protocol.Command, perr error) {
	if inv.g.now().After(inv.conn.AuthDeadline) {
		inv.authFailed(nil, protocol.AuthTimeout, "authentication deadline passed")
		return
	}
	a, ok := cmd.(protocol.Auth)
	if perr != nil || !ok {
		// Nothing but auth is served before auth, so a connection that
		// sends anything else is not a client waiting to authenticate:
		// close it rather than let it hold a pending place and send more.
		var id []byte
		if cmd != nil {
			id = cmd.RequestID()
		}
		inv.replyErr(protocol.Errorf(id, protocol.CodeForbidden, `authenticate first: {"type":"auth","token":"..."}; closing`))
		inv.closeAfter = true
		return
	}
	g := inv.g
	p, err := g.verifier.Verify(ctx, a.Token)
	if err != nil {
		inv.log.Info("auth failed", "error", err.Error())
		code, reason := tokenRefused(err)
		inv.authFailed(a.ID, code, reason)
		return
	}
	if p.TicketID != "" {
		if err := g.store.ClaimTicket(ctx, p.TicketID, p.ExpiresAt); err != nil {
			if errors.Is(err, auth.ErrTicketUsed) {
				inv.authFailed(a.ID, protocol.AuthTicketUsed, "ticket already used")
				return
			}
			inv.internal(a.ID, err)
			return
		}
	}
	limits, err := g.cfg.LimitsFor(p.Profile)
	if err != nil {
		inv.authFailed(a.ID, protocol.AuthForbidden, err.Error())
		return
	}
	subs := initialSubscriptions(p, topic.Pattern{})
	if len(subs) > limits.MaxSubscriptions {
		g.limited("$default", MetricTooManySubscriptions, inv.conn.ID, p.Sub)
		inv.authFailed(a.ID, protocol.AuthForbidden, "the token subscribes to more topics than a connection may hold")
		return
	}
	c := inv.conn
	c.Principal, c.Limits, c.Pending, c.TokenExpires = p, limits, false, p.ExpiresAt
	switch err := g.store.Authenticate(ctx, c, subs); {
	case errors.Is(err, store.ErrRevoked):
		inv.authFailed(a.ID, protocol.AuthRevoked, "this principal or token is revoked")
		return
	case errors.Is(err, store.ErrExpired):
		inv.authFailed(a.ID, protocol.AuthTimeout, "authentication deadline passed")
		return
	case errors.Is(err, store.ErrNotFound):
		inv.authFailed(a.ID, protocol.AuthForbidden, "connection is not waiting for authentication")
		return
	case errors.Is(err, store.ErrLimit):
		// The principal's cap, taken atomically with the authentication.
		g.limited("$default", MetricTooManyConnections, inv.conn.ID, p.Sub)
		inv.authFailed(a.ID, protocol.AuthTooManyConnections, fmt.Sprintf("at most %d connections per user", limits.MaxConnectionsPerPrincipal))
		return
	case err != nil:
		inv.internal(a.ID, err)
		return
	}
	inv.conn = c
	inv.log.Info("authenticated", "sub", p.Sub, "ptype", p.Type)
	g.watchToken(ctx, inv.log, c.ID, c.TokenExpires)
	inv.reply(protocol.AuthResponse{Type: protocol.TypeAuthResponse, ID: a.ID, Success: true, Message: "authenticated", Expires: expires(c.TokenExpires)})
}

func (inv *invocation) authFailed(id []byte, code, msg string) {
	inv.log.Info("auth refused", "reason", code)
	inv.reply(protocol.AuthResponse{Type: protocol.TypeAuthResponse, ID: id, Success: false, Error: code, Message: msg})
	inv.closeAfter = true
}

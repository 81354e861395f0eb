package gateway

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// A connection lives no longer than its token: its record keeps the
// token's exp, a task closes it then (the broadcast function runs it,
// waiting again when a refresh moved exp later), and a frame that arrives
// past exp closes it too. A client extends its session by sending a fresh
// token for the same principal, {"type":"auth","token":"..."}, before then.

// watchToken schedules the check that closes connection id when its token
// expires at exp. Without a queue the connection still closes at its
// first frame past exp.
func (g *Gateway) watchToken(ctx context.Context, log *slog.Logger, id string, exp time.Time) {
	if g.tasks == nil || exp.IsZero() {
		return
	}
	t := queue.Task{Kind: queue.KindTokenExpiry, ConnectionID: id}
	if err := g.tasks.Send(ctx, t, exp.Sub(g.now())); err != nil {
		log.Warn("token expiry not scheduled; the connection closes at its first frame after it", "error", err.Error())
	}
}

// expires formats a token's expiry for an auth_response.
func expires(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// refresh takes a fresh token on an authenticated connection. It must name
// the same principal with the same identity claims (type, sub, org, roles,
// su), profile and mode: those shaped the connection's limits and every
// subscription's audience checks. Its capabilities may differ; the
// subscriptions it no longer allows are removed and listed in an
// unsubscribed reply. A refused refresh leaves the connection as it was.
func (inv *invocation) refresh(ctx context.Context, a protocol.Auth) {
	g := inv.g
	fail := func(code, msg string) {
		inv.log.Info("refresh refused", "reason", code)
		inv.reply(protocol.AuthResponse{Type: protocol.TypeAuthResponse, ID: a.ID, Success: false, Error: code, Message: msg})
	}
	old, oldExp := inv.conn.Principal, inv.conn.TokenExpires
	if old.Anonymous {
		fail(protocol.AuthForbidden, "this connection has no token to refresh")
		return
	}
	// A verify, a ticket, the refresh, the subscriptions read.
	if inv.refused(inv.spend(a.ID, 3)) {
		return
	}
	p, err := g.verifier.Verify(ctx, a.Token)
	if err != nil {
		inv.log.Info("refresh: token refused", "error", err.Error())
		fail(tokenRefused(err))
		return
	}
	if !sameIdentity(old, p) {
		fail(protocol.AuthForbidden, "a fresh token must name the same principal with the same identity claims, profile and mode; reconnect to change them")
		return
	}
	if p.TicketID != "" {
		if err := g.store.ClaimTicket(ctx, p.TicketID, p.ExpiresAt); err != nil {
			if errors.Is(err, auth.ErrTicketUsed) {
				fail(protocol.AuthTicketUsed, "ticket already used")
				return
			}
			inv.internal(a.ID, err)
			return
		}
	}
	switch err := g.store.Refresh(ctx, inv.conn.ID, p, p.ExpiresAt); {
	case errors.Is(err, store.ErrRevoked):
		fail(protocol.AuthRevoked, "this principal or token is revoked")
		return
	case errors.Is(err, store.ErrNotFound):
		fail(protocol.AuthForbidden, "connection is gone")
		inv.closeAfter = true
		return
	case err != nil:
		inv.internal(a.ID, err)
		return
	}
	inv.conn.Principal, inv.conn.TokenExpires = p, p.ExpiresAt
	inv.log.Info("token refreshed", "expires", expires(p.ExpiresAt), "token_id", p.TokenID)
	if dropped := inv.dropUncovered(ctx); len(dropped) > 0 {
		inv.reply(protocol.Unsubscribed{Type: protocol.TypeUnsubscribed, Topics: dropped})
	}
	// The expiry task scheduled at connect finds the later exp and waits
	// again; a refresh to an earlier exp needs its own.
	if p.ExpiresAt.Before(oldExp) || oldExp.IsZero() {
		g.watchToken(ctx, inv.log, inv.conn.ID, p.ExpiresAt)
	}
	inv.reply(protocol.AuthResponse{Type: protocol.TypeAuthResponse, ID: a.ID, Success: true, Message: "token refreshed", Expires: expires(p.ExpiresAt)})
}

// sameIdentity reports whether a fresh token may replace the old one.
func sameIdentity(old, p auth.Principal) bool {
	return old.Type == p.Type && old.Sub == p.Sub && old.Superuser == p.Superuser &&
		slices.Equal(old.Orgs, p.Orgs) && slices.Equal(old.Roles, p.Roles) &&
		old.Profile == p.Profile && old.Mode == p.Mode
}

// dropUncovered removes the subscriptions the connection's (refreshed)
// principal may no longer hold, and returns their patterns.
func (inv *invocation) dropUncovered(ctx context.Context) []string {
	subs, err := inv.g.store.ConnectionSubscriptions(ctx, inv.conn.ID)
	if err != nil {
		inv.log.Error("refresh: subscriptions not read; none removed", "error", err.Error())
		return nil
	}
	direct, hasDirect := inv.conn.Principal.DirectTopic()
	var dropped []string
	for _, sub := range subs {
		p, err := topic.ParsePattern(sub.Pattern)
		if err != nil || (hasDirect && p.String() == direct.String()) || inv.conn.Principal.MaySubscribe(p) {
			continue
		}
		if removed, err := inv.g.store.Unsubscribe(ctx, inv.conn.ID, p); err != nil {
			inv.log.Error("refresh: subscription not removed", "pattern", sub.Pattern, "error", err.Error())
			continue
		} else if removed {
			inv.conn.Subscriptions--
		}
		dropped = append(dropped, sub.Pattern)
	}
	return dropped
}

package broadcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// Sessions end three ways here (a session: a connection's life from its
// handshake or auth message to its close): a pending connection at its
// auth deadline, an authenticated one when its token expires, and any of
// a principal's (or a token's) when a backend revokes it.

// closeParallel bounds how many revoked connections close at once.
const closeParallel = 8

// closeConnection posts a last frame to connection c, closes it and
// removes it from the store. The post is retried while the connection may
// still be registering (API Gateway answers 410 then, and would refuse the
// close as well); a connection already gone is no error.
func (h *Handler) closeConnection(ctx context.Context, c store.Connection, last []byte) error {
	id := c.ID
	if err := fanout.Post(ctx, h.conns, fanout.Target{ConnectionID: id, ConnectedAt: c.ConnectedAt}, last, h.now); err != nil {
		h.log.Info("last frame not delivered", "connection_id", id, "error", err.Error())
	}
	if _, err := h.conns.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: &id}); err != nil && !errors.Is(fanout.Classify(err), fanout.ErrGone) {
		return err
	}
	_, err := h.store.DeleteConnection(ctx, id)
	return err
}

// authDeadline closes a connection that is still pending at its deadline.
func (h *Handler) authDeadline(ctx context.Context, t queue.Task) error {
	log := h.log.With("connection_id", t.ConnectionID)
	c, err := h.store.GetConnection(ctx, t.ConnectionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !c.Pending {
		return nil
	}
	if c.AuthDeadline.After(h.now()) {
		return h.waitAgain(ctx, t, c.AuthDeadline)
	}
	log.Info("auth deadline passed; closing")
	return h.closeConnection(ctx, c,
		protocol.Encode(protocol.AuthResponse{Type: protocol.TypeAuthResponse, Success: false, Error: protocol.AuthTimeout, Message: "authentication deadline passed"}))
}

// tokenExpiry closes a connection whose token expired; a refresh that
// moved the expiry later makes it wait again.
func (h *Handler) tokenExpiry(ctx context.Context, t queue.Task) error {
	c, err := h.store.GetConnection(ctx, t.ConnectionID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case c.Pending || c.TokenExpires.IsZero():
		return nil
	case c.TokenExpires.After(h.now()):
		return h.waitAgain(ctx, t, c.TokenExpires)
	}
	h.log.Info("token expired; closing", "connection_id", c.ID, "sub", c.Principal.Sub)
	return h.closeConnection(ctx, c, protocol.Encode(protocol.Errorf(nil, protocol.CodeTokenExpired,
		"the token expired at %s; reconnect with a fresh one", c.TokenExpires.UTC().Format(time.RFC3339))))
}

// handleRevocation applies a wsgate.revoke event: the principal (or its
// token) is refused until the revocation's until, and its live connections
// are closed. An invalid revocation is logged and dropped; a failure is
// returned for Lambda's retry, which repeats it harmlessly.
func (h *Handler) handleRevocation(ctx context.Context, log *slog.Logger, cwe lambdaevents.CloudWatchEvent) error {
	r, err := publish.ParseRevocation(cwe.Detail, h.now(), h.cfg.MaxTokenLifetime)
	if err != nil {
		log.Warn("revocation rejected", "reason", err.Error(), "source", cwe.Source)
		return nil
	}
	ptype, sub := r.Who(auth.DefaultPrincipalType)
	rev := store.Revocation{Principal: auth.Identity{Type: ptype, Sub: sub}, TokenID: r.TokenID, Until: r.Until, Issued: cwe.Time}
	if r.Lift {
		if err := h.store.Lift(ctx, rev); err != nil {
			return err
		}
		log.Info("revocation lifted", "ptype", ptype, "sub", sub, "token_id", r.TokenID)
		return nil
	}
	log = log.With("ptype", ptype, "sub", sub, "token_id", r.TokenID, "until", r.Until.UTC().Format(time.RFC3339))
	conns, err := h.store.Revoke(ctx, rev)
	if err != nil {
		return err
	}
	what := "this principal"
	if r.TokenID != "" {
		what = "this token"
	}
	last := protocol.Encode(protocol.Errorf(nil, protocol.CodeRevoked, "%s is revoked until %s", what, r.Until.UTC().Format(time.RFC3339)))
	errs := make([]error, len(conns))
	inParallel(len(conns), closeParallel, func(i int) {
		if err := h.closeConnection(ctx, conns[i], last); err != nil {
			errs[i] = fmt.Errorf("close %s: %w", conns[i].ID, err)
		}
	})
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("revoked", "connections_closed", len(conns))
	return nil
}

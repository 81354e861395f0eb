package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Connect handles $connect: it authenticates the handshake, authorizes the
// requested scope, enforces the per-principal connection cap and stores the
// connection with its initial subscriptions. A refusal is an HTTP status
// API Gateway returns to the client instead of upgrading: 400 bad query,
// 401 no or bad token, 403 not allowed, 404 scope has no state, 429 too many
// connections (for the principal, or waiting to authenticate from the
// address or in all).
func (g *Gateway) Connect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rc := req.RequestContext
	log := g.log.With("connection_id", rc.ConnectionID, "request_id", rc.RequestID, "route", "$connect")
	refuse := func(status int, reason string, attrs ...any) (events.APIGatewayProxyResponse, error) {
		log.Info("connect refused", append([]any{"status", status, "reason", reason}, attrs...)...)
		return events.APIGatewayProxyResponse{StatusCode: status, Body: http.StatusText(status) + ": " + reason}, nil
	}
	if rc.ConnectionID == "" {
		return refuse(http.StatusBadRequest, "not a WebSocket $connect request: no requestContext.connectionId")
	}
	q := queryParams(req)

	var scope topic.Pattern
	if s := q["topic"]; s != "" {
		var err error
		if scope, err = topic.ParseTopic(s); err != nil {
			return refuse(http.StatusBadRequest, "topic: "+err.Error())
		}
	}
	var since uint64
	hasSince := q["since"] != ""
	if hasSince {
		var err error
		if since, err = strconv.ParseUint(q["since"], 10, 64); err != nil {
			return refuse(http.StatusBadRequest, "since must be a sequence number")
		}
		if scope.IsZero() {
			return refuse(http.StatusBadRequest, "since needs topic")
		}
		if g.tasks == nil {
			return refuse(http.StatusBadRequest, "since is not available: no task queue configured")
		}
	}
	envelope := q["envelope"] == "1" || q["envelope"] == "true"

	now := g.now()
	conn := store.Connection{
		ID: rc.ConnectionID, Scope: scope.String(), Envelope: envelope,
		ConnectedAt: now, ExpiresAt: now.Add(g.cfg.ConnectionTTL), SourceIP: rc.Identity.SourceIP,
	}
	if scope.IsZero() {
		conn.Scope = ""
	}

	ex := auth.Extract(auth.Handshake{Headers: req.Headers, MultiHeaders: req.MultiValueHeaders, Query: q}, g.cfg.TokenCookie)
	if reason, origin := g.originRefusal(req, ex.Source); reason != "" {
		return refuse(http.StatusForbidden, reason, "origin", origin, "token_source", ex.Source)
	}
	switch {
	case ex.Token != "":
		p, err := g.verifier.Verify(ctx, ex.Token)
		if err != nil {
			return refuse(http.StatusUnauthorized, "invalid token", "token_source", ex.Source, "error", err.Error())
		}
		if p.TicketID != "" {
			if err := g.store.ClaimTicket(ctx, p.TicketID, p.ExpiresAt); err != nil {
				if errors.Is(err, auth.ErrTicketUsed) {
					return refuse(http.StatusUnauthorized, "ticket already used", "sub", p.Sub)
				}
				return g.fail(log, err)
			}
		}
		conn.Principal, conn.TokenExpires = p, p.ExpiresAt
		log = log.With("sub", p.Sub, "ptype", p.Type)
	case !scope.IsZero() && config.Matches(g.cfg.AnonymousTopics, scope):
		conn.Principal = auth.Anonymous()
	case scope.IsZero() && g.cfg.AuthMessage:
		conn.Principal = auth.Anonymous()
		conn.Pending = true
		conn.AuthDeadline = now.Add(g.cfg.AuthDeadline)
	default:
		return refuse(http.StatusUnauthorized, "no token")
	}

	limits, err := g.cfg.LimitsFor(conn.Principal.Profile)
	if err != nil {
		return refuse(http.StatusForbidden, err.Error())
	}
	conn.Limits = limits

	if !scope.IsZero() {
		if !conn.Principal.Anonymous && !conn.Principal.MaySubscribe(scope) {
			return refuse(http.StatusForbidden, "topic not allowed", "topic", scope.String())
		}
		if config.Matches(g.cfg.StateRequiredTopics, scope) {
			st, err := g.store.GetState(ctx, scope)
			if errors.Is(err, store.ErrNotFound) {
				return refuse(http.StatusNotFound, "topic has no state", "topic", scope.String())
			}
			if err != nil {
				return g.fail(log, err)
			}
			if !st.Audience.Allows(conn.Principal.Identity) {
				return refuse(http.StatusForbidden, "not in the topic's audience", "topic", scope.String())
			}
		}
	}

	var subs []store.NewSubscription
	if !conn.Pending {
		subs = initialSubscriptions(conn.Principal, scope)
		if len(subs) > limits.MaxSubscriptions {
			g.limited("$connect", MetricTooManySubscriptions, rc.ConnectionID, conn.Principal.Sub)
			return refuse(http.StatusForbidden, "the token subscribes to more topics than a connection may hold", "subscriptions", len(subs), "limit", limits.MaxSubscriptions)
		}
	}
	// The store enforces the caps in the transaction that writes the
	// record: a count read first would admit every concurrent handshake.
	conn.MaxPendingPerIP, conn.MaxPending = g.cfg.MaxPendingPerIP, g.cfg.MaxPending
	if err := g.store.PutConnection(ctx, conn, subs); err != nil {
		if errors.Is(err, store.ErrRevoked) {
			return refuse(http.StatusForbidden, "revoked", "token_id", conn.Principal.TokenID)
		}
		if r, ok := admissionRefusal(err, conn); ok {
			g.limited("$connect", r.metric, rc.ConnectionID, conn.Principal.Sub)
			return refuse(http.StatusTooManyRequests, r.reason, "limit", r.limit)
		}
		return g.fail(log, err)
	}

	if conn.Pending && g.tasks != nil {
		t := queue.Task{Kind: queue.KindAuthDeadline, ConnectionID: conn.ID}
		if err := g.tasks.Send(ctx, t, g.cfg.AuthDeadline); err != nil {
			// The deadline still holds: the next message of a late
			// connection closes it.
			log.Warn("auth deadline not scheduled", "error", err.Error())
		}
	}
	if !conn.Pending {
		g.watchToken(ctx, log, conn.ID, conn.TokenExpires)
	}
	if hasSince {
		t := queue.Task{Kind: queue.KindReplay, ConnectionID: conn.ID, Topic: scope.String(), Since: since}
		if err := g.tasks.Send(ctx, t, 0); err != nil {
			_, _ = g.store.DeleteConnection(ctx, conn.ID)
			return g.fail(log, err)
		}
	}

	log.Info("connected", "scope", conn.Scope, "pending", conn.Pending, "anonymous", conn.Principal.Anonymous,
		"subscriptions", len(subs), "token_source", ex.Source, "envelope", envelope)
	resp := events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	if ex.Subprotocol != "" {
		resp.Headers = map[string]string{"Sec-WebSocket-Protocol": ex.Subprotocol}
	}
	return resp, nil
}

// MetricTooManyPending counts handshakes refused because too many
// connections wait to authenticate, from their address or in all.
const MetricTooManyPending = "TooManyPendingConnections"

// refusal is why a cap refused a connection.
type refusal struct {
	reason, metric string
	limit          int
}

// admissionRefusal explains a cap PutConnection refused at.
func admissionRefusal(err error, c store.Connection) (refusal, bool) {
	switch {
	case errors.Is(err, store.ErrConnectionLimit):
		return refusal{"too many connections for this principal", MetricTooManyConnections, c.Limits.MaxConnectionsPerPrincipal}, true
	case errors.Is(err, store.ErrPendingIPLimit):
		return refusal{"too many connections waiting to authenticate from this address", MetricTooManyPending, c.MaxPendingPerIP}, true
	case errors.Is(err, store.ErrPendingLimit):
		return refusal{"too many connections waiting to authenticate", MetricTooManyPending, c.MaxPending}, true
	}
	return refusal{}, false
}

func (g *Gateway) fail(log *slog.Logger, err error) (events.APIGatewayProxyResponse, error) {
	log.Error("internal error", "error", err.Error())
	return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError, Body: "internal error"}, nil
}

// queryParams merges the single- and multi-value query maps (first value wins).
func queryParams(req events.APIGatewayWebsocketProxyRequest) map[string]string {
	q := make(map[string]string, len(req.QueryStringParameters))
	for k, vs := range req.MultiValueQueryStringParameters {
		if len(vs) > 0 {
			q[k] = vs[0]
		}
	}
	for k, v := range req.QueryStringParameters {
		if _, ok := q[k]; !ok {
			q[k] = v
		}
	}
	return q
}

// disconnectAttempts bounds the tries to remove a closed connection.
const disconnectAttempts = 3

// Disconnect handles $disconnect: every item of the connection goes.
func (g *Gateway) Disconnect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rc := req.RequestContext
	log := g.log.With("connection_id", rc.ConnectionID, "request_id", rc.RequestID, "route", "$disconnect")
	if rc.ConnectionID == "" {
		log.Error("not a WebSocket $disconnect request: no requestContext.connectionId")
		return events.APIGatewayProxyResponse{StatusCode: http.StatusBadRequest}, nil
	}
	// API Gateway invokes $disconnect once, synchronously, at best: nothing
	// retries it. Try a few times here; what is left behind is removed by
	// the first fan-out that meets the connection's 410, or by its TTL.
	var n int
	var err error
	for attempt := range disconnectAttempts {
		if n, err = g.store.DeleteConnection(ctx, rc.ConnectionID); err == nil || ctx.Err() != nil {
			break
		}
		log.Warn("disconnect cleanup failed; retrying", "attempt", attempt+1, "error", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(fanout.Backoff(attempt + 4)): // 200 ms and up
		}
	}
	if err != nil {
		log.Error("disconnect cleanup failed; a 410 on the next fan-out or the TTL will remove the connection", "error", err.Error())
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, nil
	}
	reason := ""
	if rc.DisconnectReason != nil {
		reason = *rc.DisconnectReason
	}
	log.Info("disconnected", "items_removed", n, "status_code", rc.DisconnectStatusCode, "reason", reason)
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

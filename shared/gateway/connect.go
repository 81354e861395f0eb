package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Connect handles $connect: it authenticates the handshake, authorizes the
// requested scope, enforces the per-principal connection cap and stores the
// connection with its initial subscriptions. A refusal is an HTTP status
// API Gateway returns to the client instead of upgrading: 400 bad query,
// 401 no or bad token, 403 not allowed or revoked, 404 scope has no state,
// 429 too many connections (for the principal, waiting to authenticate
// from the address or in all, or anonymous from the address).
func (g *Gateway) Connect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rc := req.RequestContext
	log := g.log.With("connection_id", rc.ConnectionID, "request_id", rc.RequestID, "route", "$connect")
	if rc.ConnectionID == "" {
		return g.refuse(log, refusal{status: http.StatusBadRequest, reason: "not a WebSocket $connect request: no requestContext.connectionId"})
	}
	ctx, cancel := connectBudget(ctx)
	defer cancel()
	q := queryParams(req)
	hs, r := g.parseHandshake(q)
	if r != nil {
		return g.refuse(log, *r)
	}
	now := g.now()
	conn := store.Connection{
		ID: rc.ConnectionID, Scope: hs.scopeName(), Envelope: hs.envelope,
		ConnectedAt: now, ExpiresAt: now.Add(g.cfg.ConnectionTTL), SourceIP: rc.Identity.SourceIP,
	}
	ex := auth.Extract(auth.Handshake{Headers: req.Headers, MultiHeaders: req.MultiValueHeaders, Query: q}, g.cfg.TokenCookie)
	if reason, origin := g.originRefusal(req, ex.Source); reason != "" {
		return g.refuse(log, refusal{status: http.StatusForbidden, reason: reason, attrs: []any{"origin", origin, "token_source", ex.Source}})
	}
	if r := g.identify(ctx, &conn, ex, hs.scope); r != nil {
		return g.refuse(log, *r)
	}
	if conn.Principal.Sub != "" {
		log = log.With("sub", conn.Principal.Sub, "ptype", conn.Principal.Type)
	}
	subs, r := g.admitConnection(ctx, &conn, hs.scope)
	if r != nil {
		return g.refuse(log, *r)
	}
	if r := g.schedule(ctx, log, conn, hs); r != nil {
		return g.refuse(log, *r)
	}
	if ctx.Err() != nil {
		// Too late: API Gateway will have given up on this $connect, and
		// no $disconnect comes for a connection that never opened.
		g.undoConnect(ctx, log, conn.ID)
		return g.refuse(log, refusal{status: http.StatusServiceUnavailable, reason: "the handshake ran out of time"})
	}
	log.Info("connected", "scope", conn.Scope, "pending", conn.Pending, "anonymous", conn.Principal.Anonymous,
		"subscriptions", len(subs), "token_source", ex.Source, "envelope", hs.envelope)
	resp := events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	if ex.Subprotocol != "" {
		resp.Headers = map[string]string{"Sec-WebSocket-Protocol": ex.Subprotocol}
	}
	return resp, nil
}

// refusal is a handshake refused with an HTTP status; err, when set, is an
// internal failure (500) to log as an error.
type refusal struct {
	status int
	reason string
	attrs  []any
	err    error
}

func (g *Gateway) refuse(log *slog.Logger, r refusal) (events.APIGatewayProxyResponse, error) {
	if r.err != nil {
		return g.fail(log, r.err)
	}
	log.Info("connect refused", append([]any{"status", r.status, "reason", r.reason}, r.attrs...)...)
	return refusalResponse(r.status, r.reason), nil
}

// refusalResponse is a refused handshake as API Gateway passes it to the
// client: the status, and a JSON body {"message": reason} like API
// Gateway's own error bodies, so every refusal has one content type.
func refusalResponse(status int, reason string) events.APIGatewayProxyResponse {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{reason})
	return events.APIGatewayProxyResponse{
		StatusCode: status,
		Headers:    map[string]string{"Content-Type": "application/json"},
		Body:       string(b),
	}
}

// tokenRefused is why a token failed verification, as the auth failure
// code and the handshake refusal reason. The code stays invalid_token for
// an expired token too: the reference clients (Valtronics) refresh their
// token on exactly that code; the reason says token_expired.
func tokenRefused(err error) (code, reason string) {
	if errors.Is(err, auth.ErrTokenExpired) {
		return protocol.AuthInvalidToken, "token_expired"
	}
	return protocol.AuthInvalidToken, "invalid token"
}

func badRequest(reason string) *refusal {
	return &refusal{status: http.StatusBadRequest, reason: reason}
}

func internal(err error) *refusal { return &refusal{err: err} }

// handshake is what the query asks for: a scope (?topic=), a replay of it
// from since, the envelope.
type handshake struct {
	scope    topic.Pattern
	since    uint64
	hasSince bool
	envelope bool
}

func (h handshake) scopeName() string {
	if h.scope.IsZero() {
		return ""
	}
	return h.scope.String()
}

func (g *Gateway) parseHandshake(q map[string]string) (handshake, *refusal) {
	var hs handshake
	if s := q["topic"]; s != "" {
		var err error
		if hs.scope, err = topic.ParseTopic(s); err != nil {
			return hs, badRequest("topic: " + err.Error())
		}
	}
	if hs.hasSince = q["since"] != ""; hs.hasSince {
		var err error
		switch hs.since, err = strconv.ParseUint(q["since"], 10, 64); {
		case err != nil:
			return hs, badRequest("since must be a sequence number")
		case hs.scope.IsZero():
			return hs, badRequest("since needs topic")
		case g.tasks == nil:
			return hs, badRequest("since is not available: no task queue configured")
		}
	}
	hs.envelope = q["envelope"] == "1" || q["envelope"] == "true"
	return hs, nil
}

// identify sets the connection's principal: the token's, anonymous for an
// anonymous scope, or pending in auth-message mode.
func (g *Gateway) identify(ctx context.Context, conn *store.Connection, ex auth.Extracted, scope topic.Pattern) *refusal {
	switch {
	case ex.Token != "":
		p, err := g.verifier.Verify(ctx, ex.Token)
		if err != nil {
			_, reason := tokenRefused(err)
			return &refusal{status: http.StatusUnauthorized, reason: reason, attrs: []any{"token_source", ex.Source, "error", err.Error()}}
		}
		if p.TicketID != "" {
			if err := g.store.ClaimTicket(ctx, p.TicketID, p.ExpiresAt); err != nil {
				if errors.Is(err, auth.ErrTicketUsed) {
					return &refusal{status: http.StatusUnauthorized, reason: "ticket already used", attrs: []any{"sub", p.Sub}}
				}
				return internal(err)
			}
		}
		conn.Principal, conn.TokenExpires = p, p.ExpiresAt
	case !scope.IsZero() && config.Matches(g.cfg.AnonymousTopics, scope):
		conn.Principal = auth.Anonymous()
	case scope.IsZero() && g.cfg.AuthMessage:
		conn.Principal = auth.Anonymous()
		conn.Pending = true
		conn.AuthDeadline = conn.ConnectedAt.Add(g.cfg.AuthDeadline)
	default:
		return &refusal{status: http.StatusUnauthorized, reason: "no token"}
	}
	return nil
}

// admitConnection checks the principal's limits and scope and stores the
// connection with its initial subscriptions, taking its places in the
// caps atomically.
func (g *Gateway) admitConnection(ctx context.Context, conn *store.Connection, scope topic.Pattern) ([]store.NewSubscription, *refusal) {
	limits, err := g.cfg.LimitsFor(conn.Principal.Profile)
	if err != nil {
		return nil, &refusal{status: http.StatusForbidden, reason: err.Error()}
	}
	conn.Limits = limits
	if r := g.authorizeScope(ctx, conn.Principal, scope); r != nil {
		return nil, r
	}
	var subs []store.NewSubscription
	if !conn.Pending {
		subs = initialSubscriptions(conn.Principal, scope)
		if len(subs) > limits.MaxSubscriptions {
			g.limited("$connect", MetricTooManySubscriptions, conn.ID, conn.Principal.Sub)
			return nil, &refusal{status: http.StatusForbidden, reason: "the token subscribes to more topics than a connection may hold", attrs: []any{"subscriptions", len(subs), "limit", limits.MaxSubscriptions}}
		}
	}
	// The store enforces the caps in the transaction that writes the
	// record: a count read first would admit every concurrent handshake.
	conn.MaxPendingPerIP, conn.MaxPending = g.cfg.MaxPendingPerIP, g.cfg.MaxPending
	conn.MaxAnonymousPerIP = g.cfg.MaxAnonymousPerIP
	// The 410 window of a post racing $connect counts from here, when the
	// record exists, not from the handshake's start (a JWKS fetch may
	// have taken seconds).
	conn.ConnectedAt = g.now()
	err = g.store.PutConnection(ctx, *conn, subs)
	if errors.Is(err, store.ErrRevoked) {
		return nil, &refusal{status: http.StatusForbidden, reason: "revoked", attrs: []any{"token_id", conn.Principal.TokenID}}
	}
	if r, ok := admissionRefusal(err, *conn); ok {
		g.limited("$connect", r.metric, conn.ID, conn.Principal.Sub)
		return nil, &refusal{status: http.StatusTooManyRequests, reason: r.reason, attrs: []any{"limit", r.limit}}
	}
	if err != nil {
		// The write may have landed though its answer did not: a record
		// left would hold a place in the caps until its TTL.
		g.undoConnect(ctx, g.log.With("connection_id", conn.ID), conn.ID)
		return nil, internal(err)
	}
	return subs, nil
}

// connectMargin is the end of $connect's time kept back for undoing a
// stored record when the rest ran late.
const connectMargin = 2 * time.Second

// apiGatewayTimeout is API Gateway's integration timeout: past it the
// client is refused whatever the function does.
const apiGatewayTimeout = 29 * time.Second

// connectBudget is the context $connect works in: it ends connectMargin
// before the function's or API Gateway's deadline, whichever comes first.
func connectBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	end := time.Now().Add(apiGatewayTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(end) {
		end = d
	}
	return context.WithDeadline(ctx, end.Add(-connectMargin))
}

// undoConnect deletes a connection record $connect stored but will not
// answer for, in the margin connectBudget kept.
func (g *Gateway) undoConnect(ctx context.Context, log *slog.Logger, id string) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), connectMargin*3/4)
	defer cancel()
	if _, err := g.store.DeleteConnection(uctx, id); err != nil {
		log.Error("record of a failed handshake not removed; its TTL will", "error", err.Error())
	}
}

// authorizeScope checks a scoped connection's topic: the principal's
// capability, and a state-required topic's state and audience.
func (g *Gateway) authorizeScope(ctx context.Context, p auth.Principal, scope topic.Pattern) *refusal {
	if scope.IsZero() {
		return nil
	}
	if !p.Anonymous && !p.MaySubscribe(scope) {
		return &refusal{status: http.StatusForbidden, reason: "topic not allowed", attrs: []any{"topic", scope.String()}}
	}
	if !config.Matches(g.cfg.StateRequiredTopics, scope) {
		return nil
	}
	st, err := g.store.GetState(ctx, scope)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &refusal{status: http.StatusNotFound, reason: "topic has no state", attrs: []any{"topic", scope.String()}}
	case err != nil:
		return internal(err)
	case !st.Audience.Allows(p.Identity):
		return &refusal{status: http.StatusForbidden, reason: "not in the topic's audience", attrs: []any{"topic", scope.String()}}
	}
	return nil
}

// schedule queues what follows a stored connection: its auth deadline or
// token expiry, and the ?since= replay (without which the handshake is
// undone and fails).
func (g *Gateway) schedule(ctx context.Context, log *slog.Logger, conn store.Connection, hs handshake) *refusal {
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
	if hs.hasSince {
		t := queue.Task{Kind: queue.KindReplay, ConnectionID: conn.ID, Topic: hs.scope.String(), Since: hs.since}
		if err := g.tasks.Send(ctx, t, 0); err != nil {
			_, _ = g.store.DeleteConnection(ctx, conn.ID)
			return internal(err)
		}
	}
	return nil
}

// MetricTooManyPending counts handshakes refused because too many
// connections wait to authenticate, from their address or in all;
// MetricTooManyAnonymous those refused because too many anonymous
// connections are open from their address.
const (
	MetricTooManyPending   = "TooManyPendingConnections"
	MetricTooManyAnonymous = "TooManyAnonymousConnections"
)

// capRefusal is why a cap refused a connection.
type capRefusal struct {
	reason, metric string
	limit          int
}

// admissionRefusal explains a cap PutConnection refused at.
func admissionRefusal(err error, c store.Connection) (capRefusal, bool) {
	switch {
	case errors.Is(err, store.ErrConnectionLimit):
		return capRefusal{"too many connections for this principal", MetricTooManyConnections, c.Limits.MaxConnectionsPerPrincipal}, true
	case errors.Is(err, store.ErrPendingIPLimit):
		return capRefusal{"too many connections waiting to authenticate from this address", MetricTooManyPending, c.MaxPendingPerIP}, true
	case errors.Is(err, store.ErrPendingLimit):
		return capRefusal{"too many connections waiting to authenticate", MetricTooManyPending, c.MaxPending}, true
	case errors.Is(err, store.ErrAnonymousIPLimit):
		return capRefusal{"too many anonymous connections from this address", MetricTooManyAnonymous, c.MaxAnonymousPerIP}, true
	}
	return capRefusal{}, false
}

func (g *Gateway) fail(log *slog.Logger, err error) (events.APIGatewayProxyResponse, error) {
	log.Error("internal error", "error", err.Error())
	return refusalResponse(http.StatusInternalServerError, "internal error"), nil
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

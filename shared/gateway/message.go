package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/delivery"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// session is one $default invocation: the connection and its replies.
type session struct {
	g       *Gateway
	conn    store.Connection
	log     *slog.Logger
	replies [][]byte
	// arrived is when the frame arrived: the rate-limit window and pong's time.
	arrived time.Time
	// closeAfter: send the replies, then close the connection.
	closeAfter bool
	// budgetEnds is when the frame's commands must stop starting work.
	budgetEnds time.Time
}

// requestIDs are the ids of a frame's commands, one nil for a frame that
// could not be read.
func requestIDs(cmd protocol.Command) []json.RawMessage {
	switch c := cmd.(type) {
	case nil:
		return []json.RawMessage{nil}
	case protocol.Batch:
		ids := make([]json.RawMessage, 0, len(c.Items))
		for _, it := range c.Items {
			if it.Err != nil {
				ids = append(ids, it.Err.ID)
			} else {
				ids = append(ids, it.Command.RequestID())
			}
		}
		return ids
	}
	return []json.RawMessage{cmd.RequestID()}
}

// spent reports whether the frame's work budget is used up.
func (s *session) spent() bool { return time.Now().After(s.budgetEnds) }

// errBudget answers a command left undone because the frame's budget ran out.
func errBudget(id []byte) *protocol.Error {
	return protocol.Errorf(id, protocol.CodeUnavailable, "this frame's work took too long; send the command again")
}

func (s *session) reply(v any) { s.replies = append(s.replies, protocol.Encode(v)) }

func (s *session) replyErr(e *protocol.Error) {
	s.log.Info("command refused", "code", e.Code, "message", e.Message)
	s.reply(e)
}

// Message handles $default: one client frame, which may hold a batch. The
// last reply goes back as the route response; earlier ones (batches, state
// frames, replays) are posted in order before it. No input makes it fail.
func (g *Gateway) Message(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (resp events.APIGatewayProxyResponse, err error) {
	rc := req.RequestContext
	log := g.log.With("connection_id", rc.ConnectionID, "request_id", rc.RequestID, "route", "$default")
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in message handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			resp = respond(protocol.Encode(protocol.Errorf(nil, protocol.CodeBadRequest, "internal error")))
			err = nil
		}
	}()

	if rc.ConnectionID == "" {
		log.Error("not a WebSocket $default request: no requestContext.connectionId")
		return events.APIGatewayProxyResponse{StatusCode: http.StatusBadRequest}, nil
	}
	body := []byte(req.Body)
	if req.IsBase64Encoded {
		if body, err = base64.StdEncoding.DecodeString(req.Body); err != nil {
			body = []byte(req.Body)
		}
	}
	arrived := g.now()
	conn, err := g.store.TouchConnection(ctx, rc.ConnectionID, arrived)
	conn.ID = rc.ConnectionID
	s := &session{g: g, conn: conn, log: log, arrived: arrived}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No record: it expired or $connect never completed. Close it.
		log.Warn("message from unknown connection")
		s.reply(protocol.Errorf(nil, protocol.CodeForbidden, "unknown connection; reconnect"))
		s.closeAfter = true
		return g.finish(ctx, s), nil
	case errors.Is(err, store.ErrRateLimited):
		log.Info("rate limited", "limit", conn.Limits.MessagesPerSecond)
		g.limited("$default", MetricRateLimited, conn.ID, conn.Principal.Sub)
		if !conn.PushOnly() {
			s.reply(protocol.Errorf(nil, protocol.CodeRateLimited, "more than %d messages per second", conn.Limits.MessagesPerSecond))
		}
		return g.finish(ctx, s), nil
	case err != nil:
		// Answer each command, by its id, so the client knows what to send
		// again.
		log.Error("touch failed", "error", err.Error())
		cmd, _ := protocol.Parse(body, g.cfg.MaxBatch)
		for _, id := range requestIDs(cmd) {
			s.reply(protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry"))
		}
		return g.finish(ctx, s), nil
	}
	if conn.Principal.Sub != "" {
		s.log = log.With("sub", conn.Principal.Sub)
	}

	if max := conn.Limits.MaxMessageBytes; max > 0 && len(body) > max {
		g.limited("$default", MetricMessageTooLarge, conn.ID, conn.Principal.Sub)
		if !conn.PushOnly() {
			s.replyErr(protocol.Errorf(nil, protocol.CodeTooLarge, "message is %d bytes; at most %d", len(body), max))
		}
		return g.finish(ctx, s), nil
	}

	cmd, perr := protocol.Parse(body, g.cfg.MaxBatch)
	if conn.Pending {
		s.pending(ctx, cmd, perr)
		return g.finish(ctx, s), nil
	}
	if perr != nil {
		if !conn.PushOnly() {
			s.replyErr(perr.(*protocol.Error))
		}
		return g.finish(ctx, s), nil
	}
	// Bound the frame's work, however large its batch, well inside API
	// Gateway's 29 s: commands start within the budget, and store calls
	// stop half as much (at least 5 s) later; the replies go out on ctx.
	budget := g.cfg.FrameBudget
	if budget <= 0 {
		budget = config.DefaultFrameBudget
	}
	s.budgetEnds = time.Now().Add(budget)
	wctx, cancel := context.WithTimeout(ctx, budget+max(budget/2, 5*time.Second))
	defer cancel()
	if b, ok := cmd.(protocol.Batch); ok {
		for i, it := range b.Items {
			if it.Err != nil {
				if !conn.PushOnly() {
					s.replyErr(it.Err)
				}
				continue
			}
			if i > 0 && s.spent() {
				if !conn.PushOnly() {
					s.replyErr(errBudget(it.Command.RequestID()))
				}
				continue
			}
			s.run(wctx, it.Command)
		}
	} else {
		s.run(wctx, cmd)
	}
	return g.finish(ctx, s), nil
}

// finish posts all replies but the last, which becomes the route response,
// or all of them and then closes the connection. A post that meets the
// connection still registering (a frame sent right after the upgrade) is
// retried, never taken as the connection being gone.
func (g *Gateway) finish(ctx context.Context, s *session) events.APIGatewayProxyResponse {
	id := s.conn.ID
	n := len(s.replies)
	posted := n - 1
	if s.closeAfter {
		posted = n
	}
	for i := 0; i < posted; i++ {
		if err := fanout.Post(ctx, g.conns, id, s.replies[i], s.conn.ConnectedAt, g.now); err != nil {
			s.log.Warn("reply not delivered", "error", err.Error())
			if s.closeAfter {
				break
			}
			// The last reply (resumed, say) would vouch for frames the
			// client never got: answer the command with an error instead.
			var last struct{ ID json.RawMessage }
			_ = json.Unmarshal(s.replies[n-1], &last)
			return respond(protocol.Encode(protocol.Errorf(last.ID, protocol.CodeUnavailable, "%d of %d replies not delivered (temporarily unavailable); retry", posted-i, posted)))
		}
	}
	if s.closeAfter {
		if _, err := g.conns.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: &id}); err != nil {
			s.log.Warn("close failed", "error", err.Error())
		}
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	}
	if n == 0 {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	}
	return respond(s.replies[n-1])
}

func respond(body []byte) events.APIGatewayProxyResponse {
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: string(body)}
}

// pending handles a frame from a connection still waiting to authenticate.
func (s *session) pending(ctx context.Context, cmd protocol.Command, perr error) {
	if s.g.now().After(s.conn.AuthDeadline) {
		s.authFailed(nil, protocol.AuthTimeout, "authentication deadline passed")
		return
	}
	a, ok := cmd.(protocol.Auth)
	if perr != nil || !ok {
		var id []byte
		if cmd != nil {
			id = cmd.RequestID()
		}
		s.replyErr(protocol.Errorf(id, protocol.CodeForbidden, `authenticate first: {"type":"auth","token":"..."}`))
		return
	}
	g := s.g
	p, err := g.verifier.Verify(ctx, a.Token)
	if err != nil {
		s.log.Info("auth failed", "error", err.Error())
		s.authFailed(a.ID, protocol.AuthInvalidToken, "invalid token")
		return
	}
	if p.TicketID != "" {
		if err := g.store.ClaimTicket(ctx, p.TicketID, p.ExpiresAt); err != nil {
			if errors.Is(err, auth.ErrTicketUsed) {
				s.authFailed(a.ID, protocol.AuthTicketUsed, "ticket already used")
				return
			}
			s.internal(a.ID, err)
			return
		}
	}
	limits, err := g.cfg.LimitsFor(p.Profile)
	if err != nil {
		s.authFailed(a.ID, protocol.AuthForbidden, err.Error())
		return
	}
	if d, ok := p.DirectTopic(); ok {
		n, err := g.store.CountConnections(ctx, d)
		if err != nil {
			s.internal(a.ID, err)
			return
		}
		if n >= limits.MaxConnectionsPerPrincipal {
			g.limited("$default", MetricTooManyConnections, s.conn.ID, p.Sub)
			s.authFailed(a.ID, protocol.AuthTooManyConnections, fmt.Sprintf("at most %d connections per user", limits.MaxConnectionsPerPrincipal))
			return
		}
	}
	subs := initialSubscriptions(p, topic.Pattern{})
	if len(subs) > limits.MaxSubscriptions {
		g.limited("$default", MetricTooManySubscriptions, s.conn.ID, p.Sub)
		s.authFailed(a.ID, protocol.AuthForbidden, "the token subscribes to more topics than a connection may hold")
		return
	}
	c := s.conn
	c.Principal, c.Limits, c.Pending = p, limits, false
	switch err := g.store.Authenticate(ctx, c, subs); {
	case errors.Is(err, store.ErrExpired):
		s.authFailed(a.ID, protocol.AuthTimeout, "authentication deadline passed")
		return
	case errors.Is(err, store.ErrNotFound):
		s.authFailed(a.ID, protocol.AuthForbidden, "connection is not waiting for authentication")
		return
	case err != nil:
		s.internal(a.ID, err)
		return
	}
	s.conn = c
	s.log.Info("authenticated", "sub", p.Sub, "ptype", p.Type)
	s.reply(protocol.AuthResponse{Type: protocol.TypeAuthResponse, ID: a.ID, Success: true, Message: "authenticated"})
}

func (s *session) authFailed(id []byte, code, msg string) {
	s.log.Info("auth refused", "reason", code)
	s.reply(protocol.AuthResponse{Type: protocol.TypeAuthResponse, ID: id, Success: false, Error: code, Message: msg})
	s.closeAfter = true
}

func (s *session) internal(id []byte, err error) {
	s.log.Error("internal error", "error", err.Error())
	s.reply(protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry"))
}

// run executes one command. Push-only connections answer only ping and
// request_current_state and ignore everything else.
func (s *session) run(ctx context.Context, cmd protocol.Command) {
	if s.conn.PushOnly() {
		switch cmd.(type) {
		case protocol.Ping, protocol.RequestCurrentState:
		default:
			return
		}
	}
	switch c := cmd.(type) {
	case protocol.Ping:
		s.reply(protocol.Pong{Type: protocol.TypePong, ID: c.ID, Time: s.arrived.UTC().Format(time.RFC3339Nano), Timestamp: c.Timestamp})
	case protocol.Subscribe:
		s.subscribe(ctx, c)
	case protocol.Unsubscribe:
		patterns := c.Patterns
		if c.Covering {
			patterns = s.covered(ctx, c.ID, c.Patterns)
			if patterns == nil {
				return
			}
		}
		s.unsubscribe(ctx, c.ID, patterns)
	case protocol.Register:
		s.register(ctx, c)
	case protocol.RequestCurrentState:
		s.currentState(ctx, c)
	case protocol.Resume:
		s.resume(ctx, c)
	case protocol.Auth:
		s.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "already authenticated"))
	default:
		s.replyErr(protocol.Errorf(cmd.RequestID(), protocol.CodeBadRequest, "%s is not allowed here", cmd.Type()))
	}
}

// subscribe adds every pattern or none and answers subscribed.
func (s *session) subscribe(ctx context.Context, c protocol.Subscribe) {
	topics, perr := s.addSubscriptions(ctx, c.ID, c.Patterns, c.Filters)
	if perr != nil {
		s.replyErr(perr)
		return
	}
	// Read after the subscriptions are written: every event numbered
	// later finds them, so a client that resumes from here misses nothing.
	var seqs map[string]uint64
	for _, p := range c.Patterns {
		if p.HasWildcard() {
			continue
		}
		seq, err := s.g.store.CurrentSeq(ctx, p)
		if err != nil {
			s.log.Warn("sequence number unreadable; subscribed without it", "topic", p.String(), "error", err.Error())
			continue
		}
		if seqs == nil {
			seqs = map[string]uint64{}
		}
		seqs[p.String()] = seq
	}
	s.reply(protocol.Subscribed{Type: protocol.TypeSubscribed, ID: c.ID, Topics: topics, Seqs: seqs})
}

// addSubscriptions subscribes to every pattern or none: a refusal part-way
// undoes the subscriptions this command created.
func (s *session) addSubscriptions(ctx context.Context, id []byte, patterns []topic.Pattern, filters filter.Set) ([]string, *protocol.Error) {
	for _, p := range patterns {
		if !s.conn.Principal.MaySubscribe(p) {
			return nil, protocol.Errorf(id, protocol.CodeForbidden, "not allowed to subscribe to %s", p)
		}
	}
	var created []topic.Pattern
	undo := func() {
		// Undo even when ctx ran out: a half-made command must not stay.
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, p := range created {
			if _, err := s.g.store.Unsubscribe(uctx, s.conn.ID, p); err != nil {
				s.log.Error("undo subscribe failed", "pattern", p.String(), "error", err.Error())
			}
		}
	}
	topics := make([]string, 0, len(patterns))
	for i, p := range patterns {
		if i > 0 && s.spent() {
			undo()
			return nil, errBudget(id)
		}
		isNew, err := s.g.store.Subscribe(ctx, s.conn, store.NewSubscription{Pattern: p, Filters: filters})
		switch {
		case errors.Is(err, store.ErrLimit):
			undo()
			s.g.limited("$default", MetricTooManySubscriptions, s.conn.ID, s.conn.Principal.Sub)
			return nil, protocol.Errorf(id, protocol.CodeRateLimited, "at most %d subscriptions per connection", s.conn.Limits.MaxSubscriptions)
		case errors.Is(err, store.ErrNotFound):
			undo()
			return nil, protocol.Errorf(id, protocol.CodeNotFound, "connection is gone")
		case err != nil:
			undo()
			s.log.Error("subscribe failed", "error", err.Error())
			return nil, protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry")
		}
		if isNew {
			created = append(created, p)
		}
		topics = append(topics, p.String())
	}
	s.log.Info("subscribed", "patterns", strings.Join(topics, ","))
	return topics, nil
}

func (s *session) unsubscribe(ctx context.Context, id []byte, patterns []topic.Pattern) {
	direct, hasDirect := s.conn.Principal.DirectTopic()
	for _, p := range patterns {
		if hasDirect && p.String() == direct.String() {
			s.replyErr(protocol.Errorf(id, protocol.CodeForbidden, "the direct topic %s stays subscribed for the connection's life", p))
			return
		}
	}
	topics := make([]string, 0, len(patterns))
	for _, p := range patterns {
		if _, err := s.g.store.Unsubscribe(ctx, s.conn.ID, p); err != nil {
			s.internal(id, err)
			return
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

// register serves Digital Rebar's text commands: the pattern is narrowed to
// what the principal may see ("register *.*.*" means everything I may see),
// and success answers nothing.
func (s *session) register(ctx context.Context, c protocol.Register) {
	parts := s.conn.Principal.Narrow(c.Pattern)
	if len(parts) == 0 {
		s.replyErr(protocol.Errorf(nil, protocol.CodeForbidden, "nothing in %s is visible to you", c.Pattern))
		return
	}
	if c.Deregister {
		direct, hasDirect := s.conn.Principal.DirectTopic()
		for _, p := range parts {
			if hasDirect && p.String() == direct.String() {
				continue // the direct topic stays for the connection's life
			}
			if _, err := s.g.store.Unsubscribe(ctx, s.conn.ID, p); err != nil {
				s.internal(nil, err)
				return
			}
		}
		return
	}
	if _, perr := s.addSubscriptions(ctx, nil, parts, nil); perr != nil {
		s.replyErr(perr)
	}
}

// currentState answers request_current_state with the stored frames. On a
// scoped connection the id field must name the scope; otherwise, as the
// reference APIs do, the request is ignored.
func (s *session) currentState(ctx context.Context, c protocol.RequestCurrentState) {
	scoped := s.conn.Scope != ""
	var t topic.Pattern
	if scoped {
		scope, err := topic.ParseTopic(s.conn.Scope)
		if err != nil {
			return
		}
		switch {
		case c.ScopeID != "" && c.ScopeID == scope.Last():
		case c.ScopeID == "" && c.Topic == s.conn.Scope:
		default:
			s.log.Info("request_current_state for another scope ignored")
			return
		}
		t = scope
	} else {
		if c.Topic == "" {
			s.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "request_current_state needs \"topic\""))
			return
		}
		var err error
		if t, err = topic.ParseTopic(c.Topic); err != nil {
			s.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "%v", err))
			return
		}
		if !s.conn.Principal.MaySubscribe(t) {
			s.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "not allowed to read %s", t))
			return
		}
	}
	st, err := s.g.store.GetState(ctx, t)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internal(c.ID, err)
		return
	}
	// No state and state the principal may not see look the same.
	if errors.Is(err, store.ErrNotFound) || !st.Audience.Allows(s.conn.Principal.Identity) || len(st.Frames) == 0 {
		if !scoped {
			s.replyErr(protocol.Errorf(c.ID, protocol.CodeNotFound, "%s has no state", t))
		}
		return
	}
	s.replies = append(s.replies, st.Frames...)
}

// resume replays a topic's history after since, then confirms with resumed.
func (s *session) resume(ctx context.Context, c protocol.Resume) {
	if !s.conn.Principal.MaySubscribe(c.Topic) {
		s.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "not allowed to read %s", c.Topic))
		return
	}
	conn := s.conn
	conn.Envelope = conn.Envelope || c.Envelope
	r, err := delivery.BuildReplay(ctx, s.g.store, conn, c.Topic, c.Since, delivery.MaxReplay)
	if errors.Is(err, delivery.ErrHistoryExpired) {
		s.replyErr(protocol.Errorf(c.ID, protocol.CodeHistoryExpired, "%v", err))
		return
	}
	if err != nil {
		s.internal(c.ID, err)
		return
	}
	s.replies = append(s.replies, r.Frames...)
	s.reply(protocol.Resumed{Type: protocol.TypeResumed, ID: c.ID, Topic: c.Topic.String(), Seq: r.Last, Replayed: len(r.Frames)})
}

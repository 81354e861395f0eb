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
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/frame"
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
	// calls counts the store calls the frame's commands made or are about
	// to make; callsMax bounds them.
	calls, callsMax int
	// replay streams the frame's resumes, within the frame's replay cap
	// (made by the first resume).
	replay *frame.Replayer
	// answered counts the frame's commands run to their end, in order: a
	// panic leaves the others to be answered unavailable.
	answered int
	// owed counts the rate-limit units the frame's commands turned out to
	// cost beyond what they were charged before they ran.
	owed int
}

// owe records that a command wrote or removed n subscriptions where it
// was charged for charged.
func (s *session) owe(n, charged int) { s.owed += max(0, n-charged) }

// settle charges the connection's rate limit what the frame owes.
func (s *session) settle(ctx context.Context) {
	if s.owed == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.g.store.ChargeCommands(cctx, s.conn.ID, s.arrived, s.owed); err != nil {
		s.log.Warn("rate limit not charged for the frame's work", "units", s.owed, "error", err.Error())
	}
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
			ids = append(ids, itemID(it))
		}
		return ids
	}
	return []json.RawMessage{cmd.RequestID()}
}

// itemID is the id of a batch's command, or of the one that could not be
// read.
func itemID(it protocol.BatchItem) json.RawMessage {
	if it.Err != nil {
		return it.Err.ID
	}
	return it.Command.RequestID()
}

// commandCount is how many units a frame counts for in the rate limit:
// each command of a batch its cost, one for anything else (an unreadable
// frame too).
func commandCount(cmd protocol.Command) int {
	n := 0
	for _, it := range frameItems(cmd) {
		n += cost(it.Command)
	}
	return max(n, 1)
}

// cost is what a command counts against the rate limit, known before it
// runs: one unit per subscription it writes or removes (each a transaction
// and a read: a subscribe of 99 ids is 99 units, not one), PublishCost for
// a publish, one for anything else. A register and a covering unsubscribe
// learn how many they write only as they run: they owe the rest, charged
// after the frame (settle). What a command sends from storage is
// bounded by the replay allowances (frame.ReplayLimits), in bytes.
func cost(cmd protocol.Command) int {
	switch c := cmd.(type) {
	case protocol.Publish:
		return PublishCost
	case protocol.Subscribe:
		return max(1, len(c.Patterns))
	case protocol.Unsubscribe:
		return max(1, len(c.Patterns))
	}
	return 1
}

// servesAny reports whether a frame holds a command a push-only
// connection may send, which is answered even when refused.
func servesAny(cmd protocol.Command) bool {
	for _, it := range frameItems(cmd) {
		if it.Err == nil && servedPushOnly(it.Command) {
			return true
		}
	}
	return false
}

// frameItems are the frame's commands: a batch's items, or the command.
func frameItems(cmd protocol.Command) []protocol.BatchItem {
	if b, ok := cmd.(protocol.Batch); ok {
		return b.Items
	}
	return []protocol.BatchItem{{Command: cmd}}
}

// grantedItems is how many of the first items fit in the units the rate
// limit granted. A frame that found the second's window empty (granted all
// of limit) always runs its first command, even one that costs more than
// the window holds: it fills the window, and spend refuses it as too_large
// when it could never fit in a frame.
func grantedItems(items []protocol.BatchItem, units, limit int) int {
	if len(items) > 0 && limit > 0 && units >= limit {
		units = max(units, cost(items[0].Command))
	}
	for i, it := range items {
		if units -= cost(it.Command); units < 0 {
			return i
		}
	}
	return len(items)
}

// spent reports whether the frame's work budget is used up.
func (s *session) spent() bool { return time.Now().After(s.budgetEnds) }

// errBudget answers a command left undone because the frame's budget ran out.
func errBudget(id []byte) *protocol.Error {
	return protocol.Errorf(id, protocol.CodeUnavailable, "this frame's work took too long; send the command again")
}

// spend counts n store calls a command is about to make against the
// frame's budget, before it makes any: a command that would go past it is
// refused whole (too_large when it could never fit in a frame).
func (s *session) spend(id []byte, n int) *protocol.Error {
	switch {
	case n > s.callsMax:
		s.g.limited("$default", MetricMessageTooLarge, s.conn.ID, s.conn.Principal.Sub)
		return protocol.Errorf(id, protocol.CodeTooLarge, "this command needs %d store operations; a frame may use at most %d: split it", n, s.callsMax)
	case s.calls+n > s.callsMax:
		s.g.limited("$default", MetricRateLimited, s.conn.ID, s.conn.Principal.Sub)
		return protocol.Errorf(id, protocol.CodeRateLimited, "this frame has used %d of its %d store operations and this command needs %d: send it again in another frame", s.calls, s.callsMax, n)
	}
	s.calls += n
	return nil
}

// refused answers a refusal, if any, and reports whether there was one.
func (s *session) refused(perr *protocol.Error) bool {
	if perr != nil {
		s.replyErr(perr)
	}
	return perr != nil
}

func (s *session) reply(v any) { s.replies = append(s.replies, protocol.Encode(v)) }

func (s *session) replyErr(e *protocol.Error) {
	s.log.Info("command refused", "code", e.Code, "message", e.Message)
	s.reply(e)
}

// Message handles $default: one client frame, which may hold a batch. The
// last reply goes back as the route response; earlier ones (batches, state
// frames) are posted in order before it, replayed frames as they are read.
// No input makes it fail.
func (g *Gateway) Message(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (resp events.APIGatewayProxyResponse, err error) {
	rc := req.RequestContext
	log := g.log.With("connection_id", rc.ConnectionID, "request_id", rc.RequestID, "route", "$default")
	var cmd protocol.Command
	var s *session
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in message handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if s == nil {
				s = &session{g: g, conn: store.Connection{ID: rc.ConnectionID}, log: log}
			}
			resp, err = g.recovered(ctx, s, cmd), nil
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
	// Parsed before it is counted: a batch counts as its commands.
	var perr error
	cmd, perr = protocol.Parse(body, g.cfg.MaxBatch)
	var granted int
	var answered bool
	s, granted, answered = g.admit(ctx, log, rc.ConnectionID, cmd)
	if answered {
		return g.finish(ctx, s), nil
	}
	conn := s.conn
	if limit := conn.Limits.MaxMessageBytes; limit > 0 && len(body) > limit {
		g.limited("$default", MetricMessageTooLarge, conn.ID, conn.Principal.Sub)
		if !conn.PushOnly() {
			s.replyErr(protocol.Errorf(nil, protocol.CodeTooLarge, "message is %d bytes; at most %d", len(body), limit))
		}
		return g.finish(ctx, s), nil
	}
	if conn.Pending {
		s.pending(ctx, cmd, perr)
		return g.finish(ctx, s), nil
	}
	if exp := conn.TokenExpires; !exp.IsZero() && !s.arrived.Before(exp) {
		// The expiry task closes it about now; a frame never runs past it.
		s.log.Info("token expired; closing")
		s.reply(protocol.Errorf(nil, protocol.CodeTokenExpired, "the token expired at %s; reconnect with a fresh one", exp.UTC().Format(time.RFC3339)))
		s.closeAfter = true
		return g.finish(ctx, s), nil
	}
	if perr != nil {
		var pe *protocol.Error
		if errors.As(perr, &pe) && !conn.PushOnly() {
			s.replyErr(pe)
		}
		return g.finish(ctx, s), nil
	}
	s.runFrame(ctx, cmd, granted)
	return g.finish(ctx, s), nil
}

// admit counts the frame's commands against the connection's rate limit
// and returns the session, how many of the commands (the first ones) may
// run, and whether the frame is answered already: unknown connection, rate
// limit reached, or the store failing.
func (g *Gateway) admit(ctx context.Context, log *slog.Logger, id string, cmd protocol.Command) (*session, int, bool) {
	arrived := g.now()
	n := commandCount(cmd)
	conn, granted, err := g.store.CountCommands(ctx, id, arrived, n)
	conn.ID = id
	s := &session{g: g, conn: conn, log: log, arrived: arrived}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No record: it expired or $connect never completed. Close it.
		log.Warn("message from unknown connection")
		s.reply(protocol.Errorf(nil, protocol.CodeForbidden, "unknown connection; reconnect"))
		s.closeAfter = true
		return s, 0, true
	case errors.Is(err, store.ErrRateLimited):
		// One reply, whatever the batch: a refused frame must cost little.
		log.Info("rate limited", "limit", conn.Limits.MessagesPerSecond, "commands", n)
		g.limited("$default", MetricRateLimited, conn.ID, conn.Principal.Sub)
		if !conn.PushOnly() || servesAny(cmd) {
			var fid json.RawMessage
			if cmd != nil {
				fid = cmd.RequestID()
			}
			s.reply(protocol.Errorf(fid, protocol.CodeRateLimited, "more than %d messages per second; none of this frame's %d commands ran", conn.Limits.MessagesPerSecond, n))
		}
		return s, 0, true
	case err != nil:
		// Answer each command, by its id, so the client knows what to send
		// again.
		log.Error("counting the frame against the rate limit failed", "error", err.Error())
		for _, id := range requestIDs(cmd) {
			s.reply(protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry"))
		}
		return s, 0, true
	}
	if conn.Principal.Sub != "" {
		s.log = log.With("sub", conn.Principal.Sub)
	}
	return s, granted, false
}

// runFrame runs the frame's commands in order: the first granted ones (the
// rate limit refuses the rest, each by its id), each started within the
// frame's time budget and its store calls within the frame's.
func (s *session) runFrame(ctx context.Context, cmd protocol.Command, granted int) {
	g := s.g
	// Bound the frame's work, however large its batch, well inside API
	// Gateway's 29 s: commands start within the budget, and store calls
	// stop half as much (at least 5 s) later; the replies go out on ctx.
	budget := g.cfg.FrameBudget
	if budget <= 0 {
		budget = config.DefaultFrameBudget
	}
	s.budgetEnds = time.Now().Add(budget)
	s.callsMax = g.cfg.FrameStoreCalls
	if s.callsMax <= 0 {
		s.callsMax = config.DefaultFrameStoreCalls
	}
	wctx, cancel := context.WithTimeout(ctx, budget+max(budget/2, 5*time.Second))
	defer cancel()
	defer s.closeReplay(ctx)
	defer s.settle(ctx)
	items := frameItems(cmd)
	granted = grantedItems(items, granted, s.conn.Limits.MessagesPerSecond)
	if refused := len(items) - granted; refused > 0 {
		s.log.Info("rate limited", "limit", s.conn.Limits.MessagesPerSecond, "commands", len(items), "refused", refused)
		g.limited("$default", MetricRateLimited, s.conn.ID, s.conn.Principal.Sub)
	}
	for i, it := range items {
		switch {
		case s.conn.PushOnly() && (it.Err != nil || !servedPushOnly(it.Command)):
			// Ignored, refused or not: a push-only connection is answered
			// only the commands it may send.
		case i >= granted:
			// Logged once above.
			s.reply(protocol.Errorf(itemID(it), protocol.CodeRateLimited, "more than %d messages per second: the first %d of this frame's %d commands ran", s.conn.Limits.MessagesPerSecond, granted, len(items)))
		case it.Err != nil:
			s.replyErr(it.Err)
		case i > 0 && s.spent():
			s.replyErr(errBudget(it.Command.RequestID()))
		default:
			s.run(wctx, it.Command)
		}
		s.answered = i + 1
	}
}

// recovered answers a frame whose work panicked as any internal error is
// answered: each command not run to its end gets unavailable (which
// clients retry) by its id, after the replies of those that were. A
// panic while answering leaves only the last answer, as the route
// response.
func (g *Gateway) recovered(ctx context.Context, s *session, cmd protocol.Command) (resp events.APIGatewayProxyResponse) {
	ids := requestIDs(cmd)
	for _, id := range ids[min(s.answered, len(ids)):] {
		s.reply(protocol.Errorf(id, protocol.CodeUnavailable, "internal error; retry"))
	}
	if len(s.replies) == 0 {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	}
	last := s.replies[len(s.replies)-1]
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic answering a panicked frame", "panic", fmt.Sprint(r))
			resp = respond(last)
		}
	}()
	return g.finish(ctx, s)
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
		if err := fanout.Post(ctx, g.conns, s.target(), s.replies[i], g.now); err != nil {
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

// target is the session's connection, for fanout.Post.
func (s *session) target() fanout.Target {
	return fanout.Target{ConnectionID: s.conn.ID, ConnectedAt: s.conn.ConnectedAt}
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
		// Nothing but auth is served before auth, so a connection that
		// sends anything else is not a client waiting to authenticate:
		// close it rather than let it hold a pending place and send more.
		var id []byte
		if cmd != nil {
			id = cmd.RequestID()
		}
		s.replyErr(protocol.Errorf(id, protocol.CodeForbidden, `authenticate first: {"type":"auth","token":"..."}; closing`))
		s.closeAfter = true
		return
	}
	g := s.g
	p, err := g.verifier.Verify(ctx, a.Token)
	if err != nil {
		s.log.Info("auth failed", "error", err.Error())
		code, reason := tokenRefused(err)
		s.authFailed(a.ID, code, reason)
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
	subs := initialSubscriptions(p, topic.Pattern{})
	if len(subs) > limits.MaxSubscriptions {
		g.limited("$default", MetricTooManySubscriptions, s.conn.ID, p.Sub)
		s.authFailed(a.ID, protocol.AuthForbidden, "the token subscribes to more topics than a connection may hold")
		return
	}
	c := s.conn
	c.Principal, c.Limits, c.Pending, c.TokenExpires = p, limits, false, p.ExpiresAt
	switch err := g.store.Authenticate(ctx, c, subs); {
	case errors.Is(err, store.ErrRevoked):
		s.authFailed(a.ID, protocol.AuthRevoked, "this principal or token is revoked")
		return
	case errors.Is(err, store.ErrExpired):
		s.authFailed(a.ID, protocol.AuthTimeout, "authentication deadline passed")
		return
	case errors.Is(err, store.ErrNotFound):
		s.authFailed(a.ID, protocol.AuthForbidden, "connection is not waiting for authentication")
		return
	case errors.Is(err, store.ErrLimit):
		// The principal's cap, taken atomically with the authentication.
		g.limited("$default", MetricTooManyConnections, s.conn.ID, p.Sub)
		s.authFailed(a.ID, protocol.AuthTooManyConnections, fmt.Sprintf("at most %d connections per user", limits.MaxConnectionsPerPrincipal))
		return
	case err != nil:
		s.internal(a.ID, err)
		return
	}
	s.conn = c
	s.log.Info("authenticated", "sub", p.Sub, "ptype", p.Type)
	g.watchToken(ctx, s.log, c.ID, c.TokenExpires)
	s.reply(protocol.AuthResponse{Type: protocol.TypeAuthResponse, ID: a.ID, Success: true, Message: "authenticated", Expires: expires(c.TokenExpires)})
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
	if s.conn.PushOnly() && !servedPushOnly(cmd) {
		return
	}
	switch c := cmd.(type) {
	case protocol.Ping:
		s.reply(protocol.Pong{Type: protocol.TypePong, ID: c.ID, Time: s.arrived.UTC().Format(time.RFC3339Nano), Timestamp: c.Timestamp})
	case protocol.Subscribe:
		s.subscribe(ctx, c)
	case protocol.Unsubscribe:
		patterns := c.Patterns
		if c.Covering {
			if s.refused(s.spend(c.ID, 1)) {
				return
			}
			if patterns = s.covered(ctx, c.ID, c.Patterns); patterns == nil {
				return
			}
			s.owe(len(patterns), cost(c))
		}
		if s.refused(s.spend(c.ID, len(patterns))) {
			return
		}
		s.unsubscribe(ctx, c.ID, patterns)
	case protocol.Register:
		s.register(ctx, c)
	case protocol.RequestCurrentState:
		if s.refused(s.spend(c.ID, 1)) {
			return
		}
		s.currentState(ctx, c)
	case protocol.Resume:
		s.resume(ctx, c)
	case protocol.Auth:
		s.refresh(ctx, c)
	case protocol.Publish:
		s.publish(ctx, c)
	case protocol.Presence:
		s.presence(ctx, c)
	default:
		s.replyErr(protocol.Errorf(cmd.RequestID(), protocol.CodeBadRequest, "%s is not allowed here", cmd.Type()))
	}
}

// servedPushOnly reports whether a push-only connection may send cmd.
func servedPushOnly(cmd protocol.Command) bool {
	switch cmd.(type) {
	case protocol.Ping, protocol.RequestCurrentState:
		return true
	}
	return false
}

// subscribe adds every pattern or none and answers subscribed.
func (s *session) subscribe(ctx context.Context, c protocol.Subscribe) {
	reads := 0 // the sequence numbers read after subscribing
	for _, p := range c.Patterns {
		if !p.HasWildcard() {
			reads++
		}
	}
	if c.Presence {
		for _, p := range c.Patterns {
			if p.HasWildcard() || !config.Matches(s.g.cfg.PresenceTopics, p) {
				s.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "\"presence\": %s is not a topic with presence (WSGATE_PRESENCE_TOPICS)", p))
				return
			}
		}
	}
	topics, perr := s.addSubscriptions(ctx, c.ID, c.Patterns, c.Filters, c.Presence, reads)
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

// addSubscriptions subscribes to every pattern or none. What is checked
// before anything is written refuses it whole: permission, the
// subscription limit, and the frame's store calls (one transaction per
// pattern, and reads more after). A refusal part-way (the limit reached by
// a frame running at once, the store failing) undoes the subscriptions
// this command created.
func (s *session) addSubscriptions(ctx context.Context, id []byte, patterns []topic.Pattern, filters filter.Set, presence bool, reads int) ([]string, *protocol.Error) {
	for _, p := range patterns {
		if !s.conn.Principal.MaySubscribe(p) {
			return nil, protocol.Errorf(id, protocol.CodeForbidden, "not allowed to subscribe to %s", p)
		}
	}
	if perr := s.checkRoom(ctx, id, patterns); perr != nil {
		return nil, perr
	}
	if perr := s.spend(id, len(patterns)+reads); perr != nil {
		return nil, perr
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
		isNew, err := s.g.store.Subscribe(ctx, s.conn, store.NewSubscription{Pattern: p, Filters: filters, Presence: presence})
		switch {
		case errors.Is(err, store.ErrWildcardLimit):
			undo()
			s.g.limited("$default", MetricTooManySubscriptions, s.conn.ID, s.conn.Principal.Sub)
			return nil, protocol.Errorf(id, protocol.CodeRateLimited, "at most %d distinct wildcard patterns per principal", s.conn.Limits.MaxWildcards)
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
	s.conn.Subscriptions += len(created)
	s.log.Info("subscribed", "patterns", strings.Join(topics, ","))
	return topics, nil
}

// checkRoom refuses, before anything is written, a subscribe that would
// take the connection past its subscription limit. The count is the
// record's as this frame found it, kept up to date by its commands; only
// near the limit are the connection's subscriptions read, since
// subscribing again to a pattern (new filters) takes no more room. The
// store's own conditional count still holds against frames running at once.
func (s *session) checkRoom(ctx context.Context, id []byte, patterns []topic.Pattern) *protocol.Error {
	limit := s.conn.Limits.MaxSubscriptions
	distinct := map[string]bool{}
	for _, p := range patterns {
		distinct[p.String()] = true
	}
	if limit <= 0 || s.conn.Subscriptions+len(distinct) <= limit {
		return nil
	}
	if perr := s.spend(id, 1); perr != nil {
		return perr
	}
	subs, err := s.g.store.ConnectionSubscriptions(ctx, s.conn.ID)
	if err != nil {
		s.log.Error("subscriptions unreadable", "error", err.Error())
		return protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry")
	}
	for _, sub := range subs {
		delete(distinct, sub.Pattern)
	}
	if s.conn.Subscriptions+len(distinct) <= limit {
		return nil
	}
	s.g.limited("$default", MetricTooManySubscriptions, s.conn.ID, s.conn.Principal.Sub)
	return protocol.Errorf(id, protocol.CodeRateLimited, "at most %d subscriptions per connection: it holds %d and this adds %d", limit, s.conn.Subscriptions, len(distinct))
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
		removed, err := s.g.store.Unsubscribe(ctx, s.conn.ID, p)
		if err != nil {
			s.internal(id, err)
			return
		}
		if removed {
			s.conn.Subscriptions--
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
	s.sendState(ctx, c.ID, st.Frames)
}

// errFrameSpent: the frame's time budget ran out before a reply was posted.
var errFrameSpent = errors.New("this frame's work took too long")

// sendState posts a topic's stored state frames as they are counted, under
// the frame's replay caps and time budget, as a resume's are: a state cut
// short, or not sent at all, is answered rate_limited (unavailable when
// the time ran out) with how many of its frames were sent.
func (s *session) sendState(ctx context.Context, id []byte, frames [][]byte) {
	sent, err := s.replayer().Send(ctx, frames, func(f []byte) error {
		if s.spent() {
			return errFrameSpent
		}
		return s.post(ctx, f)
	})
	switch {
	case err == nil:
	case errors.Is(err, frame.ErrReplayLimited):
		s.g.limited("$default", MetricRateLimited, s.conn.ID, s.conn.Principal.Sub)
		s.replyErr(protocol.Errorf(id, protocol.CodeRateLimited, "current state cut short: %d of its %d frames sent; %v; request it again later", sent, len(frames), err))
	case errors.Is(err, errFrameSpent):
		s.replyErr(protocol.Errorf(id, protocol.CodeUnavailable, "current state cut short: %d of its %d frames sent; this frame's work took too long; request it again", sent, len(frames)))
	default:
		s.log.Warn("current state not delivered", "error", err.Error(), "delivered", sent)
		s.reply(protocol.Errorf(id, protocol.CodeUnavailable, "current state: %d of its %d frames delivered (temporarily unavailable); request it again", sent, len(frames)))
	}
}

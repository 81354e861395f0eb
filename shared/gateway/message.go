package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
)

// Message handles $default: one client frame, which may hold a batch. The
// last reply goes back as the route response; earlier ones (batches, state
// frames) are posted in order before it, replayed frames as they are read.
// No input makes it fail.
func (g *Gateway) Message(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (resp events.APIGatewayProxyResponse, err error) {
	rc := req.RequestContext
	log := g.log.With("connection_id", rc.ConnectionID, "request_id", rc.RequestID, "route", "$default")
	var cmd protocol.Command
	var inv *invocation
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in message handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if inv == nil {
				inv = &invocation{g: g, conn: store.Connection{ID: rc.ConnectionID}, log: log}
			}
			resp, err = g.recovered(ctx, inv, cmd), nil
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
	inv, granted, answered = g.admit(ctx, log, rc.ConnectionID, cmd)
	if answered {
		return g.finish(ctx, inv), nil
	}
	conn := inv.conn
	if limit := conn.Limits.MaxMessageBytes; limit > 0 && len(body) > limit {
		g.limited("$default", MetricMessageTooLarge, conn.ID, conn.Principal.Sub)
		if !conn.PushOnly() {
			inv.replyErr(protocol.Errorf(nil, protocol.CodeTooLarge, "message is %d bytes; at most %d", len(body), limit))
		}
		return g.finish(ctx, inv), nil
	}
	if conn.Pending {
		inv.pending(ctx, cmd, perr)
		return g.finish(ctx, inv), nil
	}
	if exp := conn.TokenExpires; !exp.IsZero() && !inv.arrived.Before(exp) {
		// The expiry task closes it about now; a frame never runs past it.
		inv.log.Info("token expired; closing")
		inv.reply(protocol.Errorf(nil, protocol.CodeTokenExpired, "the token expired at %s; reconnect with a fresh one", exp.UTC().Format(time.RFC3339)))
		inv.closeAfter = true
		return g.finish(ctx, inv), nil
	}
	if perr != nil {
		var pe *protocol.Error
		if errors.As(perr, &pe) && !conn.PushOnly() {
			inv.replyErr(pe)
		}
		return g.finish(ctx, inv), nil
	}
	inv.runFrame(ctx, cmd, granted)
	return g.finish(ctx, inv), nil
}

// runFrame runs the frame's commands in order: the first granted ones (the
// rate limit refuses the rest, each by its id), each started within the
// frame's time budget and its store calls within the frame's.
func (inv *invocation) runFrame(ctx context.Context, cmd protocol.Command, granted int) {
	g := inv.g
	// Bound the frame's work, however large its batch, well inside API
	// Gateway's 29 s: commands start within the budget, and store calls
	// stop half as much (at least 5 s) later; the replies go out on ctx.
	budget := g.cfg.FrameBudget
	if budget <= 0 {
		budget = config.DefaultFrameBudget
	}
	inv.budgetEnds = time.Now().Add(budget)
	inv.callsMax = g.cfg.FrameStoreCalls
	if inv.callsMax <= 0 {
		inv.callsMax = config.DefaultFrameStoreCalls
	}
	wctx, cancel := context.WithTimeout(ctx, budget+max(budget/2, 5*time.Second))
	defer cancel()
	defer inv.closeReplay(ctx)
	defer inv.settle(ctx)
	items := frameItems(cmd)
	granted = grantedItems(items, granted, inv.conn.Limits.MessagesPerSecond)
	if refused := len(items) - granted; refused > 0 {
		inv.log.Info("rate limited", "limit", inv.conn.Limits.MessagesPerSecond, "commands", len(items), "refused", refused)
		g.limited("$default", MetricRateLimited, inv.conn.ID, inv.conn.Principal.Sub)
	}
	for i, it := range items {
		switch {
		case inv.conn.PushOnly() && (it.Err != nil || !servedPushOnly(it.Command)):
			// Ignored, refused or not: a push-only connection is answered
			// only the commands it may send.
		case i >= granted:
			// Logged once above.
			inv.reply(protocol.Errorf(itemID(it), protocol.CodeRateLimited, "more than %d messages per second: the first %d of this frame's %d commands ran", inv.conn.Limits.MessagesPerSecond, granted, len(items)))
		case it.Err != nil:
			inv.replyErr(it.Err)
		case i > 0 && inv.spent():
			inv.replyErr(errBudget(it.Command.RequestID()))
		default:
			inv.run(wctx, it.Command)
		}
		inv.answered = i + 1
	}
}

// recovered answers a frame whose work panicked as any internal error is
// answered: each command not run to its end gets unavailable (which
// clients retry) by its id, after the replies of those that were. A
// panic while answering leaves only the last answer, as the route
// response.
func (g *Gateway) recovered(ctx context.Context, inv *invocation, cmd protocol.Command) (resp events.APIGatewayProxyResponse) {
	ids := requestIDs(cmd)
	for _, id := range ids[min(inv.answered, len(ids)):] {
		inv.reply(protocol.Errorf(id, protocol.CodeUnavailable, "internal error; retry"))
	}
	if len(inv.replies) == 0 {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	}
	last := inv.replies[len(inv.replies)-1]
	defer func() {
		if r := recover(); r != nil {
			inv.log.Error("panic answering a panicked frame", "panic", fmt.Sprint(r))
			resp = respond(last)
		}
	}()
	return g.finish(ctx, inv)
}

// finish posts all replies but the last, which becomes the route response,
// or all of them and then closes the connection. A post that meets the
// connection still registering (a frame sent right after the upgrade) is
// retried, never taken as the connection being gone.
func (g *Gateway) finish(ctx context.Context, inv *invocation) events.APIGatewayProxyResponse {
	id := inv.conn.ID
	n := len(inv.replies)
	posted := n - 1
	if inv.closeAfter {
		posted = n
	}
	for i := 0; i < posted; i++ {
		if err := fanout.Post(ctx, g.conns, inv.target(), inv.replies[i], g.now); err != nil {
			inv.log.Warn("reply not delivered", "error", err.Error())
			if inv.closeAfter {
				break
			}
			// The last reply (resumed, say) would vouch for frames the
			// client never got: answer the command with an error instead.
			var last struct{ ID json.RawMessage }
			_ = json.Unmarshal(inv.replies[n-1], &last)
			return respond(protocol.Encode(protocol.Errorf(last.ID, protocol.CodeUnavailable, "%d of %d replies not delivered (temporarily unavailable); retry", posted-i, posted)))
		}
	}
	if inv.closeAfter {
		if _, err := g.conns.DeleteConnection(ctx, &apigatewaymanagementapi.DeleteConnectionInput{ConnectionId: &id}); err != nil {
			inv.log.Warn("close failed", "error", err.Error())
		}
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	}
	if n == 0 {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}
	}
	return respond(inv.replies[n-1])
}

func respond(body []byte) events.APIGatewayProxyResponse {
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK, Body: string(body)}
}

// run executes one command. Push-only connections answer only ping and
// request_current_state and ignore everything else.
func (inv *invocation) run(ctx context.Context, cmd protocol.Command) {
	if inv.conn.PushOnly() && !servedPushOnly(cmd) {
		return
	}
	switch c := cmd.(type) {
	case protocol.Ping:
		inv.ping(c)
	case protocol.Subscribe:
		inv.subscribe(ctx, c)
	case protocol.Unsubscribe:
		inv.unsubscribe(ctx, c)
	case protocol.Register:
		inv.register(ctx, c)
	case protocol.RequestCurrentState:
		inv.currentState(ctx, c)
	case protocol.Resume:
		inv.resume(ctx, c)
	case protocol.Auth:
		inv.refresh(ctx, c)
	case protocol.Publish:
		inv.publish(ctx, c)
	case protocol.Presence:
		inv.presence(ctx, c)
	default:
		inv.replyErr(protocol.Errorf(cmd.RequestID(), protocol.CodeBadRequest, "%s is not allowed here", cmd.Type()))
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

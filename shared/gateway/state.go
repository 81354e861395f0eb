package gateway

import (
	"context"
	"errors"

	"github.com/wsgate/wsgate/shared/frame"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// currentState answers request_current_state with the stored frames. On a
// scoped connection the id field must name the scope; otherwise, as the
// reference APIs do, the request is ignored.
func (inv *invocation) currentState(ctx context.Context, c protocol.RequestCurrentState) {
	if inv.refused(inv.spend(c.ID, 1)) {
		return
	}
	scoped := inv.conn.Scope != ""
	var t topic.Pattern
	if scoped {
		scope, err := topic.ParseTopic(inv.conn.Scope)
		if err != nil {
			return
		}
		switch {
		case c.ScopeID != "" && c.ScopeID == scope.Last():
		case c.ScopeID == "" && c.Topic == inv.conn.Scope:
		default:
			inv.log.Info("request_current_state for another scope ignored")
			return
		}
		t = scope
	} else {
		if c.Topic == "" {
			inv.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "request_current_state needs \"topic\""))
			return
		}
		var err error
		if t, err = topic.ParseTopic(c.Topic); err != nil {
			inv.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "%v", err))
			return
		}
		if !inv.conn.Principal.MaySubscribe(t) {
			inv.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "not allowed to read %s", t))
			return
		}
	}
	st, err := inv.g.store.GetState(ctx, t)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		inv.internal(c.ID, err)
		return
	}
	// No state and state the principal may not see look the same.
	if errors.Is(err, store.ErrNotFound) || !st.Audience.Allows(inv.conn.Principal.Identity) || len(st.Frames) == 0 {
		if !scoped {
			inv.replyErr(protocol.Errorf(c.ID, protocol.CodeNotFound, "%s has no state", t))
		}
		return
	}
	inv.sendState(ctx, c.ID, st.Frames)
}

// errFrameSpent: the frame's time budget ran out before a reply was posted.
var errFrameSpent = errors.New("this frame's work took too long")

// sendState posts a topic's stored state frames as they are counted, under
// the frame's replay caps and time budget, as a resume's are: a state cut
// short, or not sent at all, is answered rate_limited (unavailable when
// the time ran out) with how many of its frames were sent.
func (inv *invocation) sendState(ctx context.Context, id []byte, frames [][]byte) {
	sent, err := inv.replayer().Send(ctx, frames, func(f []byte) error {
		if inv.spent() {
			return errFrameSpent
		}
		return inv.post(ctx, f)
	})
	switch {
	case err == nil:
	case errors.Is(err, frame.ErrReplayLimited):
		inv.g.limited("$default", MetricRateLimited, inv.conn.ID, inv.conn.Principal.Sub)
		inv.replyErr(protocol.Errorf(id, protocol.CodeRateLimited, "current state cut short: %d of its %d frames sent; %v; request it again later", sent, len(frames), err))
	case errors.Is(err, errFrameSpent):
		inv.replyErr(protocol.Errorf(id, protocol.CodeUnavailable, "current state cut short: %d of its %d frames sent; this frame's work took too long; request it again", sent, len(frames)))
	default:
		inv.log.Warn("current state not delivered", "error", err.Error(), "delivered", sent)
		inv.reply(protocol.Errorf(id, protocol.CodeUnavailable, "current state: %d of its %d frames delivered (temporarily unavailable); request it again", sent, len(frames)))
	}
}

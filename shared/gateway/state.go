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
func (s *session) currentState(ctx context.Context, c protocol.RequestCurrentState) {
	if s.refused(s.spend(c.ID, 1)) {
		return
	}
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

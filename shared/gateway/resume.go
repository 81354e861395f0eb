package gateway

import (
	"context"
	"errors"

	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/frame"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
)

// resumeCalls is what a resume counts for in the frame's store calls
// before it starts: the topic's number, the connection's subscriptions, a
// page of history and the replay allowance. Further history pages count as
// they are read; the frame's replay byte cap bounds them.
const resumeCalls = 4

// resume replays a topic's history after since, then confirms with
// resumed. The replayed frames are posted as they are read, after the
// frame's replies so far; resumed follows them. What the frame's (or the
// connection's allowance) replay cap leaves no room for is refused with
// rate_limited, or, once some of it was replayed, confirmed as far as it
// got with more set. A replayed frame that cannot be delivered makes the
// command answer an error instead of resumed, which would vouch for it.
func (s *session) resume(ctx context.Context, c protocol.Resume) {
	if !s.conn.Principal.MaySubscribe(c.Topic) {
		s.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "not allowed to read %s", c.Topic))
		return
	}
	if s.refused(s.spend(c.ID, resumeCalls)) {
		return
	}
	p := s.replayer()
	before := p.Calls()
	req := frame.Request{Topic: c.Topic, Since: c.Since, Until: c.Until, Envelope: s.conn.Envelope || c.Envelope}
	r, err := p.Replay(ctx, req, func(frame []byte) error {
		if s.spent() {
			return errFrameSpent // nothing is posted after the frame's budget
		}
		return s.post(ctx, frame)
	})
	if errors.Is(err, errFrameSpent) && r.Frames > 0 {
		// Cut short by time, as by bytes: resumed as far as it got.
		err, r.More = nil, true
	}
	s.calls += max(0, p.Calls()-before-resumeCalls)
	log := s.log.With("topic", c.Topic.String(), "since", c.Since)
	switch {
	case errors.Is(err, frame.ErrHistoryExpired):
		s.replyErr(protocol.Errorf(c.ID, protocol.CodeHistoryExpired, "%v", err))
	case errors.Is(err, errFrameSpent):
		s.replyErr(errBudget(c.ID))
	case errors.Is(err, frame.ErrReplayLimited):
		s.g.limited("$default", MetricRateLimited, s.conn.ID, s.conn.Principal.Sub)
		s.replyErr(protocol.Errorf(c.ID, protocol.CodeRateLimited, "%v; resume again later", err))
	case errors.Is(err, frame.ErrNotDelivered):
		log.Warn("replay not delivered", "error", err.Error(), "delivered", r.Frames)
		s.reply(protocol.Errorf(c.ID, protocol.CodeUnavailable, "%d replayed frames delivered, then one was not (temporarily unavailable); resume again", r.Frames))
	case errors.Is(err, store.ErrNotFound):
		// The connection closed while its resume ran: nobody to answer.
		log.Info("resume of a connection that is gone")
		s.replyErr(protocol.Errorf(c.ID, protocol.CodeNotFound, "connection is gone"))
	case err != nil:
		s.internal(c.ID, err)
	default:
		if r.Frames > 0 || r.More {
			log.Info("replayed", "frames", r.Frames, "events", r.Events, "seq", r.Last, "more", r.More)
		}
		s.reply(protocol.Resumed{Type: protocol.TypeResumed, ID: c.ID, Topic: c.Topic.String(), Seq: r.Last, Replayed: r.Frames, More: r.More})
	}
}

// replayer is the frame's Replayer: every command of the frame that sends
// stored data (resume, request_current_state, presence) shares its byte
// caps, and every resume its one wait for events in flight.
func (s *session) replayer() *frame.Replayer {
	if s.replay == nil {
		s.replay = frame.NewReplayer(s.g.store, s.conn, frame.LimitsFrom(s.g.cfg), s.g.now)
	}
	return s.replay
}

// post sends a frame at once, after the replies so far, so a replay is
// never held in memory and the replies keep their order.
func (s *session) post(ctx context.Context, frame []byte) error {
	for len(s.replies) > 0 {
		r := s.replies[0]
		s.replies = s.replies[1:]
		if err := fanout.Post(ctx, s.g.conns, s.target(), r, s.g.now); err != nil {
			return err
		}
	}
	return fanout.Post(ctx, s.g.conns, s.target(), frame, s.g.now)
}

// closeReplay gives back the replay allowance the frame reserved and did
// not use.
func (s *session) closeReplay(ctx context.Context) {
	if s.replay == nil {
		return
	}
	if err := s.replay.Close(ctx); err != nil {
		s.log.Warn("replay allowance not given back", "error", err.Error())
	}
}

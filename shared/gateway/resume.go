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
func (inv *invocation) resume(ctx context.Context, c protocol.Resume) {
	if !inv.conn.Principal.MaySubscribe(c.Topic) {
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "not allowed to read %s", c.Topic))
		return
	}
	if inv.refused(inv.spend(c.ID, resumeCalls)) {
		return
	}
	p := inv.replayer()
	before := p.Calls()
	req := frame.Request{Topic: c.Topic, Since: c.Since, Until: c.Until, Envelope: inv.conn.Envelope || c.Envelope}
	r, err := p.Replay(ctx, req, func(frame []byte) error {
		if inv.spent() {
			return errFrameSpent // nothing is posted after the frame's budget
		}
		return inv.post(ctx, frame)
	})
	if errors.Is(err, errFrameSpent) && r.Frames > 0 {
		// Cut short by time, as by bytes: resumed as far as it got.
		err, r.More = nil, true
	}
	inv.calls += max(0, p.Calls()-before-resumeCalls)
	log := inv.log.With("topic", c.Topic.String(), "since", c.Since)
	switch {
	case errors.Is(err, frame.ErrHistoryExpired):
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeHistoryExpired, "%v", err))
	case errors.Is(err, errFrameSpent):
		inv.replyErr(errBudget(c.ID))
	case errors.Is(err, frame.ErrReplayLimited):
		inv.g.limited("$default", MetricRateLimited, inv.conn.ID, inv.conn.Principal.Sub)
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeRateLimited, "%v; resume again later", err))
	case errors.Is(err, frame.ErrNotDelivered):
		log.Warn("replay not delivered", "error", err.Error(), "delivered", r.Frames)
		inv.reply(protocol.Errorf(c.ID, protocol.CodeUnavailable, "%d replayed frames delivered, then one was not (temporarily unavailable); resume again", r.Frames))
	case errors.Is(err, store.ErrNotFound):
		// The connection closed while its resume ran: nobody to answer.
		log.Info("resume of a connection that is gone")
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeNotFound, "connection is gone"))
	case err != nil:
		inv.internal(c.ID, err)
	default:
		if r.Frames > 0 || r.More {
			log.Info("replayed", "frames", r.Frames, "events", r.Events, "seq", r.Last, "more", r.More)
		}
		inv.reply(protocol.Resumed{Type: protocol.TypeResumed, ID: c.ID, Topic: c.Topic.String(), Seq: r.Last, Replayed: r.Frames, More: r.More})
	}
}

// replayer is the frame's Replayer: every command of the frame that sends
// stored data (resume, request_current_state, presence) shares its byte
// caps, and every resume its one wait for events in flight.
func (inv *invocation) replayer() *frame.Replayer {
	if inv.replay == nil {
		inv.replay = frame.NewReplayer(inv.g.store, inv.conn, frame.LimitsFrom(inv.g.cfg), inv.g.now)
	}
	return inv.replay
}

// post sends a frame at once, after the replies so far, so a replay is
// never held in memory and the replies keep their order.
func (inv *invocation) post(ctx context.Context, frame []byte) error {
	for len(inv.replies) > 0 {
		r := inv.replies[0]
		inv.replies = inv.replies[1:]
		if err := fanout.Post(ctx, inv.g.conns, inv.target(), r, inv.g.now); err != nil {
			return err
		}
	}
	return fanout.Post(ctx, inv.g.conns, inv.target(), frame, inv.g.now)
}

// closeReplay gives back the replay allowance the frame reserved and did
// not use.
func (inv *invocation) closeReplay(ctx context.Context) {
	if inv.replay == nil {
		return
	}
	if err := inv.replay.Close(ctx); err != nil {
		inv.log.Warn("replay allowance not given back", "error", err.Error())
	}
}

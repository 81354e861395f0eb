package broadcast

import (
	"context"
	"errors"

	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/frame"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// replay sends a connection the history it asked for with ?since=, under
// a resume's caps: at most MaxReplayBytes, taken from the connection's
// replay allowance and its principal's (or source address's), each frame posted as soon as it is read, then
// resumed (with more when the cap stopped it short) or the error.
func (h *Handler) replay(ctx context.Context, t queue.Task) error {
	log := h.log.With("connection_id", t.ConnectionID, "topic", t.Topic)
	c, err := h.store.GetConnection(ctx, t.ConnectionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	tp, err := topic.ParseTopic(t.Topic)
	if err != nil {
		log.Error("replay task with a bad topic", "error", err.Error())
		return nil
	}
	id := t.ConnectionID
	// The replay is queued by $connect and may arrive before API Gateway
	// has registered the connection: Post waits that out.
	post := func(f []byte) error {
		return fanout.Post(ctx, h.conns, fanout.Target{ConnectionID: id, ConnectedAt: c.ConnectedAt}, f, h.now)
	}
	// The connection's, and its principal's or source address's,
	// allowances: reconnecting with ?since= again gets no fresh budget.
	p := frame.NewReplayer(h.store, c, frame.LimitsFrom(h.cfg), h.now)
	r, err := p.Replay(ctx, frame.Request{Topic: tp, Since: t.Since, Envelope: c.Envelope}, post)
	if cerr := p.Close(ctx); cerr != nil {
		log.Warn("replay allowance not given back", "error", cerr.Error())
	}
	var last []byte
	switch {
	case errors.Is(err, frame.ErrHistoryExpired):
		last = protocol.Encode(protocol.Errorf(nil, protocol.CodeHistoryExpired, "%v", err))
	case errors.Is(err, frame.ErrReplayLimited):
		last = protocol.Encode(protocol.Errorf(nil, protocol.CodeRateLimited, "%v; connect again later with since=%d", err, t.Since))
	case err != nil:
		return h.replayFailed(ctx, id, err)
	default:
		last = protocol.Encode(protocol.Resumed{Type: protocol.TypeResumed, Topic: tp.String(), Seq: r.Last, Replayed: r.Frames, More: r.More})
	}
	if err := post(last); err != nil {
		return h.replayFailed(ctx, id, err)
	}
	log.Info("replayed", "since", t.Since, "frames", r.Frames, "seq", r.Last, "more", r.More)
	return nil
}

// replayFailed ends a replay that could not go on: a connection gone is
// removed and the task done; anything else is retried by the queue.
func (h *Handler) replayFailed(ctx context.Context, id string, err error) error {
	if errors.Is(fanout.Classify(err), fanout.ErrGone) {
		_, _ = h.store.DeleteConnection(ctx, id)
		return nil
	}
	return err
}

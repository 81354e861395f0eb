package gateway

import (
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/frame"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
)

// invocation is one $default invocation: one client frame (a command or
// a batch), the connection it came on, and the replies it queues. It lives
// for that frame only; a connection's life by its token is refresh.go's.
type invocation struct {
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

// refused answers a refusal, if any, and reports whether there was one.
func (inv *invocation) refused(perr *protocol.Error) bool {
	if perr != nil {
		inv.replyErr(perr)
	}
	return perr != nil
}

// reply queues a reply, in order.
func (inv *invocation) reply(v any) { inv.replies = append(inv.replies, protocol.Encode(v)) }

// replyErr queues an error reply and logs the refusal.
func (inv *invocation) replyErr(e *protocol.Error) {
	inv.log.Info("command refused", "code", e.Code, "message", e.Message)
	inv.reply(e)
}

// target is the invocation's connection, for fanout.Post.
func (inv *invocation) target() fanout.Target {
	return fanout.Target{ConnectionID: inv.conn.ID, ConnectedAt: inv.conn.ConnectedAt}
}

// internal answers a command the store failed with unavailable, which
// clients retry, and logs the failure.
func (inv *invocation) internal(id []byte, err error) {
	inv.log.Error("internal error", "error", err.Error())
	inv.reply(protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry"))
}

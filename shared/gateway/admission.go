package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
)

// Admission: before a frame's commands run, the connection's rate limit
// counts them (each command its cost, a batch as its commands); while
// they run, each command's store calls are spent from the frame's budget
// and its time from the frame's; after, what they turned out to cost
// beyond their charge is settled.

// admit counts the frame's commands against the connection's rate limit
// and returns the invocation, how many of the commands (the first ones) may
// run, and whether the frame is answered already: unknown connection, rate
// limit reached, or the store failing.
func (g *Gateway) admit(ctx context.Context, log *slog.Logger, id string, cmd protocol.Command) (*invocation, int, bool) {
	arrived := g.now()
	n := commandCount(cmd)
	conn, granted, err := g.store.CountCommands(ctx, id, arrived, n)
	conn.ID = id
	inv := &invocation{g: g, conn: conn, log: log, arrived: arrived}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// No record: it expired or $connect never completed. Close it.
		log.Warn("message from unknown connection")
		inv.reply(protocol.Errorf(nil, protocol.CodeForbidden, "unknown connection; reconnect"))
		inv.closeAfter = true
		return inv, 0, true
	case errors.Is(err, store.ErrRateLimited):
		// One reply, whatever the batch: a refused frame must cost little.
		log.Info("rate limited", "limit", conn.Limits.MessagesPerSecond, "commands", n)
		g.limited("$default", MetricRateLimited, conn.ID, conn.Principal.Sub)
		if !conn.PushOnly() || servesAny(cmd) {
			var fid json.RawMessage
			if cmd != nil {
				fid = cmd.RequestID()
			}
			inv.reply(protocol.Errorf(fid, protocol.CodeRateLimited, "more than %d messages per second; none of this frame's %d commands ran", conn.Limits.MessagesPerSecond, n))
		}
		return inv, 0, true
	case err != nil:
		// Answer each command, by its id, so the client knows what to send
		// again.
		log.Error("counting the frame against the rate limit failed", "error", err.Error())
		for _, id := range requestIDs(cmd) {
			inv.reply(protocol.Errorf(id, protocol.CodeUnavailable, "temporarily unavailable; retry"))
		}
		return inv, 0, true
	}
	if conn.Principal.Sub != "" {
		inv.log = log.With("sub", conn.Principal.Sub)
	}
	return inv, granted, false
}

// owe records that a command wrote or removed n subscriptions where it
// was charged for charged.
func (inv *invocation) owe(n, charged int) { inv.owed += max(0, n-charged) }

// settle charges the connection's rate limit what the frame owes.
func (inv *invocation) settle(ctx context.Context) {
	if inv.owed == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := inv.g.store.ChargeCommands(cctx, inv.conn.ID, inv.arrived, inv.owed); err != nil {
		inv.log.Warn("rate limit not charged for the frame's work", "units", inv.owed, "error", err.Error())
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
func (inv *invocation) spent() bool { return time.Now().After(inv.budgetEnds) }

// errBudget answers a command left undone because the frame's budget ran out.
func errBudget(id []byte) *protocol.Error {
	return protocol.Errorf(id, protocol.CodeUnavailable, "this frame's work took too long; send the command again")
}

// spend counts n store calls a command is about to make against the
// frame's budget, before it makes any: a command that would go past it is
// refused whole (too_large when it could never fit in a frame).
func (inv *invocation) spend(id []byte, n int) *protocol.Error {
	switch {
	case n > inv.callsMax:
		inv.g.limited("$default", MetricMessageTooLarge, inv.conn.ID, inv.conn.Principal.Sub)
		return protocol.Errorf(id, protocol.CodeTooLarge, "this command needs %d store operations; a frame may use at most %d: split it", n, inv.callsMax)
	case inv.calls+n > inv.callsMax:
		inv.g.limited("$default", MetricRateLimited, inv.conn.ID, inv.conn.Principal.Sub)
		return protocol.Errorf(id, protocol.CodeRateLimited, "this frame has used %d of its %d store operations and this command needs %d: send it again in another frame", inv.calls, inv.callsMax, n)
	}
	inv.calls += n
	return nil
}

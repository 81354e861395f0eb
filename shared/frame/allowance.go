package frame

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/store"
)

// Allowance is a connection's replay allowance, a token bucket of bytes
// refilled over a minute (see store.ReserveReplay), kept in its record so
// it holds across every Lambda instance.
type Allowance interface {
	ReserveReplay(ctx context.Context, id string, at time.Time, n, perMinute int64) (store.ReplayReservation, error)
	ReturnReplay(ctx context.Context, id string, r store.ReplayReservation, sent int64) error
}

// ReplayLimits bound what one Replayer sends.
type ReplayLimits struct {
	// Bytes bounds the frames of all its replays (0: the default).
	Bytes int64
	// PerMinute bounds the bytes the connection is replayed, by every
	// frame and task together: at most PerMinute at once, refilled at
	// PerMinute a minute, with no reset at a minute's edge (0: no bound).
	PerMinute int64
}

// take counts n bytes about to be sent against the caps: the first frame
// reserves the Replayer's bytes from the connection's allowance.
func (p *Replayer) take(ctx context.Context, n int64) error {
	if p.reserved == nil && !p.full {
		if err := p.reserve(ctx); err != nil {
			return err
		}
	}
	if n > p.left {
		p.full = true
		return fmt.Errorf("%w: %d bytes replayed in this frame, at most %d", ErrReplayLimited, p.sent, p.lim.Bytes)
	}
	p.left -= n
	return nil
}

// reserve takes the Replayer's bytes from the connection's allowance (all
// of them when there is no per-minute bound).
func (p *Replayer) reserve(ctx context.Context) error {
	if p.lim.PerMinute <= 0 {
		p.reserved, p.left = &store.ReplayReservation{Bytes: p.lim.Bytes}, p.lim.Bytes
		return nil
	}
	r, err := p.allowance.ReserveReplay(ctx, p.conn.ID, p.now(), p.lim.Bytes, p.lim.PerMinute)
	p.calls++
	if errors.Is(err, store.ErrRateLimited) {
		p.full = true
		return fmt.Errorf("%w: this connection's replay allowance (%d bytes a minute) is used up", ErrReplayLimited, p.lim.PerMinute)
	}
	if err != nil {
		return err
	}
	p.reserved, p.left = &r, r.Bytes
	return nil
}

// Close gives back to the connection's allowance what was reserved and
// not sent. It runs even when ctx is done: an unreturned reservation only
// makes the allowance smaller until it refills.
func (p *Replayer) Close(ctx context.Context) error {
	if p.reserved == nil || p.lim.PerMinute <= 0 {
		return nil
	}
	r := *p.reserved
	p.reserved = nil
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	p.calls++
	return p.allowance.ReturnReplay(cctx, p.conn.ID, r, p.sent)
}

package frame

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/store"
)

// Allowance is what replayed and stored bytes are taken from: token
// buckets of bytes refilled over a minute (see store.ReserveReplay), kept
// in the table so they hold across every Lambda instance: the
// connection's, and the one its principal's connections (an anonymous
// connection's source address's) share.
type Allowance interface {
	ReserveReplay(ctx context.Context, b store.ReplayBucket, at time.Time, n, perMinute int64) (store.ReplayReservation, error)
	ReturnReplay(ctx context.Context, b store.ReplayBucket, r store.ReplayReservation, sent int64) error
}

// ReplayLimits bound what one Replayer sends.
type ReplayLimits struct {
	// Bytes bounds the frames of all its replays (0: the default).
	Bytes int64
	// PerMinute bounds the bytes the connection is replayed, by every
	// frame and task together: at most PerMinute at once, refilled at
	// PerMinute a minute, with no reset at a minute's edge (0: no bound).
	PerMinute int64
	// PrincipalPerMinute bounds, the same way, what every connection of
	// the principal gets together, across connections and handshakes;
	// AddressPerMinute what every anonymous connection from one source
	// address gets (0: no bound).
	PrincipalPerMinute, AddressPerMinute int64
}

// LimitsFrom are the replay limits cfg sets.
func LimitsFrom(cfg config.Config) ReplayLimits {
	return ReplayLimits{
		Bytes:              int64(cfg.MaxReplayBytes),
		PerMinute:          int64(cfg.MaxReplayBytesPerMinute),
		PrincipalPerMinute: int64(cfg.MaxPrincipalReplayBytesPerMinute),
		AddressPerMinute:   int64(cfg.MaxAddressReplayBytesPerMinute),
	}
}

// held is a reservation from one allowance.
type held struct {
	bucket store.ReplayBucket
	r      store.ReplayReservation
}

// Send sends stored frames (a topic's current state, a presence page)
// through send in order, under the same caps as a replay, and returns how
// many it sent: fewer than all, with ErrReplayLimited, when a cap ran out
// first; ErrNotDelivered when send failed.
func (p *Replayer) Send(ctx context.Context, frames [][]byte, send func([]byte) error) (int, error) {
	for i, f := range frames {
		if err := p.take(ctx, int64(len(f))); err != nil {
			return i, err
		}
		if err := send(f); err != nil {
			return i, fmt.Errorf("%w: %w", ErrNotDelivered, err)
		}
		p.sent += int64(len(f))
	}
	return len(frames), nil
}

// take counts n bytes about to be sent against the caps: the first frame
// reserves the Replayer's bytes from the allowances.
func (p *Replayer) take(ctx context.Context, n int64) error {
	if !p.reserved && !p.full {
		if err := p.reserve(ctx); err != nil {
			return err
		}
	}
	if n > p.left {
		p.full = true
		return fmt.Errorf("%w: %d bytes sent in this frame, at most %d", ErrReplayLimited, p.sent, p.lim.Bytes)
	}
	p.left -= n
	return nil
}

// reserve takes the Replayer's bytes from the connection's allowance, then
// as much of them from its principal's (or address's): it may send what
// both gave. An allowance without a bound gives all.
func (p *Replayer) reserve(ctx context.Context) error {
	p.reserved, p.left = true, p.lim.Bytes
	source, isPrincipal := store.SourceReplay(p.conn)
	perSource, whose := p.lim.AddressPerMinute, "this source address's"
	if isPrincipal {
		perSource, whose = p.lim.PrincipalPerMinute, "this principal's"
	}
	for _, a := range []struct {
		b         store.ReplayBucket
		perMinute int64
		whose     string
	}{
		{store.ConnectionReplay(p.conn.ID), p.lim.PerMinute, "this connection's"},
		{source, perSource, whose},
	} {
		if a.perMinute <= 0 {
			continue
		}
		r, err := p.allowance.ReserveReplay(ctx, a.b, p.now(), p.left, a.perMinute)
		p.calls++
		if errors.Is(err, store.ErrRateLimited) {
			p.full = true
			return fmt.Errorf("%w: %s replay allowance (%d bytes a minute) is used up", ErrReplayLimited, a.whose, a.perMinute)
		}
		if err != nil {
			return err
		}
		p.held = append(p.held, held{a.b, r})
		p.left = min(p.left, r.Bytes)
	}
	return nil
}

// Close gives back to the allowances what was reserved and not sent. It
// runs even when ctx is done: an unreturned reservation only makes an
// allowance smaller until it refills.
func (p *Replayer) Close(ctx context.Context) error {
	hs := p.held
	p.held = nil
	if len(hs) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var errs []error
	for _, h := range hs {
		p.calls++
		errs = append(errs, p.allowance.ReturnReplay(cctx, h.bucket, h.r, p.sent))
	}
	return errors.Join(errs...)
}

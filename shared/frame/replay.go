package frame

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// MaxReplay bounds the events one resume replays; a client further behind
// gets history_expired and should reload the topic's state.
const MaxReplay = 500

var (
	// ErrHistoryExpired: the history no longer holds every event after the
	// requested sequence number (not kept, past retention, or too many).
	ErrHistoryExpired = errors.New("history expired")
	// ErrReplayLimited: the replay's byte cap (this frame's, or the
	// connection's allowance) is used up before it sent anything.
	ErrReplayLimited = errors.New("replay limit reached")
	// ErrNotDelivered: a replayed frame could not be posted; what was
	// replayed before it was.
	ErrNotDelivered = errors.New("replayed frame not delivered")
)

// HistoryReader is what a replay reads.
type HistoryReader interface {
	TopicSeq(ctx context.Context, t topic.Pattern) (store.TopicSeq, error)
	History(ctx context.Context, t topic.Pattern, since uint64, limit int) ([]store.HistoryEntry, error)
	ConnectionSubscriptions(ctx context.Context, connID string) ([]store.Subscription, error)
}

// ReplayStore is what a Replayer reads and charges (a *store.Store).
type ReplayStore interface {
	HistoryReader
	Allowance
}

// Replay tuning.
const (
	// historyPage is how many entries one history read asks for: a page
	// of 128 KB events is 4 MB in memory, and the byte cap ends reading
	// long before MaxReplay small ones would take many reads.
	historyPage = 32
	// tailWait bounds how long a Replayer waits for events in flight: an
	// event takes its number a moment before its history entry (or a
	// redelivery's number before its skip mark) is written.
	tailWait = 300 * time.Millisecond
	// inFlight is how recent the topic's last publish must be for missing
	// entries at the end to be possibly on their way rather than never
	// kept (published without history, or past retention).
	inFlight = 10 * time.Second
	// tailPoll is how often a Replayer looks for events in flight while it
	// waits: a fixed poll within tailWait, not a backoff, since the wait is
	// short and bounded.
	tailPoll = 50 * time.Millisecond
)

// Replayer replays history to one connection for one client frame (all
// its resumes) or one ?since= task. It streams: each frame is sent as soon
// as it is built. It bounds what it sends and reads: at most Bytes in
// all, taken from the connection's replay allowance; at most one wait
// for events in flight. Close gives back what it reserved and did not
// send. Not safe for concurrent use.
type Replayer struct {
	history   HistoryReader
	allowance Allowance
	conn      store.Connection
	lim       ReplayLimits
	now       func() time.Time

	reserved bool   // the allowances were drawn on, at the first frame to send
	held     []held // what they gave
	left     int64  // bytes it may still send
	sent     int64
	full     bool      // a frame did not fit: later resumes send nothing
	waitEnds time.Time // the one wait for events in flight, once started
	calls    int
}

// NewReplayer returns a Replayer for conn; now is the clock the replay
// allowance and the recency of events follow.
func NewReplayer(st ReplayStore, conn store.Connection, lim ReplayLimits, now func() time.Time) *Replayer {
	if lim.Bytes <= 0 {
		lim.Bytes = config.DefaultMaxReplayBytes
	}
	if now == nil {
		now = time.Now
	}
	return &Replayer{history: st, allowance: st, conn: conn, lim: lim, now: now}
}

// Request is one replay: the events of Topic after Since.
type Request struct {
	Topic topic.Pattern
	Since uint64
	// Until, when not 0, ends the replay there even if the topic is further.
	Until uint64
	// Envelope sends the events in the gateway envelope, with their seq.
	Envelope bool
}

// Replayed is what a Replay did.
type Replayed struct {
	// Last is the sequence number the connection is now at: every event up
	// to it was sent, filtered out or skipped.
	Last uint64
	// Frames counts the frames sent; Events the events covered.
	Frames, Events int
	// More: the byte cap stopped the replay before the topic's current
	// number (Last is short of it).
	More bool
}

// Calls is how many store calls the Replayer has made.
func (p *Replayer) Calls() int { return p.calls }

// Replay sends the connection the events of r.Topic after r.Since, in
// order, through send, under the same audience and filter rules as live
// delivery. Every event after Since must be in the history, else
// ErrHistoryExpired: a client is never told it is caught up when it is
// not (a hole found part-way ends the replay there with the error). When
// the byte cap stops it part-way, Replayed.More is set; when it stops it
// before any event, ErrReplayLimited. A send error ends it with
// ErrNotDelivered.
func (p *Replayer) Replay(ctx context.Context, r Request, send func([]byte) error) (Replayed, error) {
	ts, err := p.history.TopicSeq(ctx, r.Topic)
	p.calls++
	if err != nil {
		return Replayed{}, err
	}
	if r.Until > 0 && r.Until < ts.Seq {
		ts.Seq = r.Until
	}
	if err := p.check(r, ts.Seq); err != nil {
		return Replayed{}, err
	}
	if r.Since == ts.Seq {
		return Replayed{Last: r.Since}, nil
	}
	to := Recipient{Identity: p.conn.Principal.Identity, Envelope: r.Envelope}
	if to.Filters, err = p.filterSets(ctx, r.Topic); err != nil {
		return Replayed{}, err
	}
	out := Replayed{Last: r.Since}
	for out.Last < ts.Seq {
		entries, err := p.page(ctx, r.Topic, out.Last, ts)
		if err != nil {
			return out, err
		}
		for _, e := range entries {
			frame, ok, err := p.frame(e, to)
			if err != nil {
				return out, err
			}
			if ok {
				if err := p.take(ctx, int64(len(frame))); err != nil {
					if errors.Is(err, ErrReplayLimited) && out.Events > 0 {
						out.More = true
						return out, nil
					}
					return out, err
				}
				if err := send(frame); err != nil {
					return out, fmt.Errorf("%w: %w", ErrNotDelivered, err)
				}
				p.sent += int64(len(frame))
				out.Frames++
			}
			out.Last = e.Seq
			out.Events++
		}
	}
	return out, nil
}

// check refuses a replay of r up to the topic's sequence cur that cannot
// be made whole, or that this Replayer's cap has already ended; a replay
// with nothing to send passes.
func (p *Replayer) check(r Request, cur uint64) error {
	switch {
	case r.Since > cur:
		// The client is ahead of the topic: its counter restarted.
		return fmt.Errorf("%w: since %d is after the topic's sequence %d", ErrHistoryExpired, r.Since, cur)
	case r.Since == cur:
		return nil
	case cur-r.Since > MaxReplay:
		return fmt.Errorf("%w: %d events missed; at most %d are replayed", ErrHistoryExpired, cur-r.Since, MaxReplay)
	case p.full:
		return fmt.Errorf("%w: %d bytes replayed in this frame", ErrReplayLimited, p.sent)
	}
	return nil
}

// frame is entry e's frame for the connection, if it gets one: not when
// the entry is a skipped number, or the audience or filters leave it out.
func (p *Replayer) frame(e store.HistoryEntry, to Recipient) ([]byte, bool, error) {
	if e.Skip {
		return nil, false, nil
	}
	return NewEncoder(Item{Event: e.Event, Seq: e.Seq}).For(to)
}

// filterSets are the filters of the connection's subscriptions that match
// t, read now: a subscribe earlier in the same frame counts.
func (p *Replayer) filterSets(ctx context.Context, t topic.Pattern) ([]filter.Set, error) {
	subs, err := p.history.ConnectionSubscriptions(ctx, p.conn.ID)
	p.calls++
	if err != nil {
		return nil, err
	}
	var sets []filter.Set
	for _, s := range subs {
		pat, err := topic.ParsePattern(s.Pattern)
		if err == nil && pat.Match(t) {
			sets = append(sets, s.Filters)
		}
	}
	if len(sets) == 0 {
		sets = []filter.Set{nil} // not subscribed: everything the audience allows
	}
	return sets, nil
}

// page reads the next entries after pos, up to the topic's sequence
// ts.Seq at most; each must follow the one before. When one is missing
// (none is there yet, or one before a later one), it may be in flight
// only if the topic's last event was published a moment ago: events on a
// topic are numbered in parallel, and a number can be drawn well before
// its entry or skip mark is written, after later numbers' entries (an
// EventBridge redelivery's, a slow invocation's). Then it waits for it,
// once per Replayer and at most tailWait; otherwise, or after that, it is
// ErrHistoryExpired.
func (p *Replayer) page(ctx context.Context, t topic.Pattern, pos uint64, ts store.TopicSeq) ([]store.HistoryEntry, error) {
	for {
		entries, err := p.history.History(ctx, t, pos, int(min(ts.Seq-pos, historyPage)))
		p.calls++
		if err != nil {
			return nil, err
		}
		missing := pos + uint64(len(entries)) + 1
		for i, e := range entries {
			if want := pos + uint64(i) + 1; e.Seq != want {
				missing = want
				break
			}
		}
		if len(entries) > 0 && missing > entries[len(entries)-1].Seq {
			return entries, nil
		}
		if !p.mayWait(ts.Published) {
			return nil, fmt.Errorf("%w: event %d is no longer kept", ErrHistoryExpired, missing)
		}
		if err := backoff.Sleep(ctx, tailPoll); err != nil {
			return nil, err
		}
	}
}

// mayWait reports whether a missing entry may still be waited for: the
// topic's last event was published within inFlight, and this Replayer's
// one wait has not run out.
func (p *Replayer) mayWait(published time.Time) bool {
	if published.IsZero() || p.now().Sub(published) > inFlight {
		return false
	}
	if p.waitEnds.IsZero() {
		p.waitEnds = time.Now().Add(tailWait)
	}
	return time.Now().Before(p.waitEnds)
}

// Package delivery holds the delivery rules shared by live fan-out and
// history replay: who may receive an event (audience and filters), what
// they receive (projection, raw payload or gateway envelope), each form
// encoded once per event.
package delivery

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/events"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Item is one event to deliver, live or from history.
type Item struct {
	Topic      string
	Seq        uint64
	ID         string
	Time       time.Time
	Payload    []byte
	Binary     bool
	Attributes filter.Attributes
	Project    filter.Projection
	Audience   *auth.Audience
}

// FromEvent is a live event with its sequence number.
func FromEvent(ev events.Event, seq uint64) Item {
	return Item{
		Topic: ev.Topic.String(), Seq: seq, ID: ev.ID, Time: ev.Time,
		Payload: ev.Payload, Binary: ev.Binary,
		Attributes: ev.Attributes, Project: ev.Project, Audience: ev.Audience,
	}
}

// FromHistory is a kept event of topic t.
func FromHistory(t string, h store.HistoryEntry) Item {
	return Item{
		Topic: t, Seq: h.Seq, ID: h.ID, Time: h.Time, Payload: h.Payload, Binary: h.Binary,
		Attributes: h.Attributes, Project: h.Project, Audience: h.Audience,
	}
}

// Encoder decides and encodes deliveries of one item, caching each distinct
// frame (raw or enveloped, trimmed or whole) so a fan-out to thousands of
// connections encodes a handful of times.
type Encoder struct {
	it    Item
	cache map[string][]byte
}

// NewEncoder returns an Encoder for it.
func NewEncoder(it Item) *Encoder { return &Encoder{it: it, cache: map[string][]byte{}} }

// Item returns the item being delivered.
func (e *Encoder) Item() Item { return e.it }

// For decides whether a connection gets the item and returns its frame.
// sets are the filters of every subscription of the connection that matched
// the item's topic; the item goes out when the identity is in the audience
// and any of them accepts it, trimmed to the union of what accepting
// subscriptions asked for.
func (e *Encoder) For(id auth.Identity, envelope bool, sets []filter.Set) ([]byte, bool, error) {
	keep, ok := e.Decide(id, sets)
	if !ok {
		return nil, false, nil
	}
	frame, err := e.Frame(envelope, keep)
	if err != nil {
		return nil, false, err
	}
	return frame, true, nil
}

// Decide is For without the encoding: whether the connection gets the item,
// and which payload keys to keep (nil: all).
func (e *Encoder) Decide(id auth.Identity, sets []filter.Set) (map[string][]string, bool) {
	if !e.it.Audience.Allows(id) {
		return nil, false
	}
	accepting := make([]filter.Set, 0, len(sets))
	for _, s := range sets {
		if s.Match(e.it.Attributes) {
			accepting = append(accepting, s)
		}
	}
	if len(accepting) == 0 {
		return nil, false
	}
	return e.it.Project.Keep(accepting), true
}

// Frame returns the item as sent: the payload as published, or the gateway
// envelope around it; keep trims projected fields.
func (e *Encoder) Frame(envelope bool, keep map[string][]string) ([]byte, error) {
	k := filter.KeepKey(keep)
	if envelope {
		k = "env|" + k
	}
	if f, ok := e.cache[k]; ok {
		return f, nil
	}
	payload := e.it.Payload
	if len(keep) > 0 && !e.it.Binary {
		trimmed, err := filter.Apply(payload, keep)
		if err != nil {
			return nil, fmt.Errorf("delivery: project %s: %w", e.it.ID, err)
		}
		payload = trimmed
	}
	frame := payload
	if envelope {
		ev := protocol.Event{
			Type: protocol.TypeEvent, Topic: e.it.Topic, Seq: e.it.Seq, ID: e.it.ID,
			Time: e.it.Time.UTC().Format(time.RFC3339Nano),
		}
		if e.it.Binary {
			ev.DataBase64 = base64.StdEncoding.EncodeToString(payload)
		} else {
			ev.Data = payload
		}
		frame = protocol.Encode(ev)
	}
	e.cache[k] = frame
	return frame, nil
}

// MaxReplay bounds the events one resume replays; a client further behind
// gets history_expired and should reload the topic's state.
const MaxReplay = 500

// ErrHistoryExpired: the history no longer holds every event after the
// requested sequence number (not kept, past retention, or too many).
var ErrHistoryExpired = errors.New("history expired")

// HistoryReader is what a replay reads.
type HistoryReader interface {
	CurrentSeq(ctx context.Context, t topic.Pattern) (uint64, error)
	History(ctx context.Context, t topic.Pattern, since uint64, limit int) ([]store.HistoryEntry, error)
	ConnectionSubscriptions(ctx context.Context, connID string) ([]store.Subscription, error)
}

// Replay is the frames a connection missed on a topic, in order.
type Replay struct {
	Frames [][]byte
	// Last is the sequence number the connection is now at.
	Last uint64
	// Events counts the events the replay covered (sent or filtered out).
	Events int
}

// BuildReplay collects the events of t after since for conn, applying the
// same audience and filter rules as live delivery. Every event after since
// must be in the history, else ErrHistoryExpired: a client is never told it
// is caught up when it is not. At most max events are replayed.
func BuildReplay(ctx context.Context, r HistoryReader, conn store.Connection, t topic.Pattern, since uint64, max int) (Replay, error) {
	cur, err := r.CurrentSeq(ctx, t)
	if err != nil {
		return Replay{}, err
	}
	if since > cur {
		// The client is ahead of the topic: its counter restarted.
		return Replay{}, fmt.Errorf("%w: since %d is after the topic's sequence %d", ErrHistoryExpired, since, cur)
	}
	if since == cur {
		return Replay{Last: cur}, nil
	}
	if cur-since > uint64(max) {
		return Replay{}, fmt.Errorf("%w: %d events missed; at most %d are replayed", ErrHistoryExpired, cur-since, max)
	}
	entries, err := history(ctx, r, t, since, cur)
	if err != nil {
		return Replay{}, err
	}
	subs, err := r.ConnectionSubscriptions(ctx, conn.ID)
	if err != nil {
		return Replay{}, err
	}
	var sets []filter.Set
	for _, s := range subs {
		p, err := topic.ParsePattern(s.Pattern)
		if err == nil && p.Match(t) {
			sets = append(sets, s.Filters)
		}
	}
	if len(sets) == 0 {
		sets = []filter.Set{nil} // not subscribed: everything the audience allows
	}
	out := Replay{Last: cur, Events: len(entries)}
	for _, e := range entries {
		if e.Skip {
			continue
		}
		frame, ok, err := NewEncoder(FromHistory(t.String(), e)).For(conn.Principal.Identity, conn.Envelope, sets)
		if err != nil {
			return Replay{}, err
		}
		if ok {
			out.Frames = append(out.Frames, frame)
		}
	}
	return out, nil
}

// tailWait bounds how long a replay waits for events in flight: an event
// takes its number a moment before its history entry is written.
const tailWait = 300 * time.Millisecond

// history reads the entries (since, cur]; every one must be there, but
// entries missing only at the end get a moment to land. Otherwise it is
// ErrHistoryExpired.
func history(ctx context.Context, r HistoryReader, t topic.Pattern, since, cur uint64) ([]store.HistoryEntry, error) {
	deadline := time.Now().Add(tailWait)
	for {
		entries, err := r.History(ctx, t, since, int(cur-since))
		if err != nil {
			return nil, err
		}
		contiguous := 0
		for i, e := range entries {
			if e.Seq != since+uint64(i)+1 {
				return nil, fmt.Errorf("%w: event %d is no longer kept", ErrHistoryExpired, since+uint64(i)+1)
			}
			contiguous++
		}
		if uint64(contiguous) == cur-since {
			return entries, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: event %d is no longer kept", ErrHistoryExpired, since+uint64(contiguous)+1)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Package delivery holds the delivery rules shared by live fan-out and
// history replay: who may receive an event (audience and filters), what
// they receive (projection, raw payload or gateway envelope), each form
// encoded once per event.
package delivery

import (
	"encoding/base64"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/events"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/store"
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

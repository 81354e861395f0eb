package frame

import (
	"encoding/base64"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/protocol"
)

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

// Recipient is one connection an item may go to.
type Recipient struct {
	Identity auth.Identity
	// Envelope: the connection gets the gateway envelope.
	Envelope bool
	// Filters are the filters of every subscription of the connection
	// that matched the item's topic.
	Filters []filter.Set
}

// Form is one form of an item's frame: the payload as published or the
// gateway envelope around it, whole or trimmed to Keep (nil: whole).
type Form struct {
	Envelope bool
	Keep     map[string][]string
}

// Key names the frame f gives: forms with equal keys give the same frame.
func (f Form) Key() string {
	k := filter.KeepKey(f.Keep)
	if f.Envelope {
		k = "env|" + k
	}
	return k
}

// For decides whether a connection gets the item and returns its frame:
// the item goes out when the identity is in the audience and any of the
// filters accepts it, trimmed to the union of what accepting
// subscriptions asked for.
func (e *Encoder) For(to Recipient) ([]byte, bool, error) {
	keep, ok := e.Decide(to.Identity, to.Filters)
	if !ok {
		return nil, false, nil
	}
	frame, err := e.Frame(e.Form(to.Envelope, keep))
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

// Form is the form of the item a connection gets that asked for the
// envelope (or not), trimmed to keep. An event a principal published (a
// client's, or one a backend relays naming its principal: From is set)
// goes in the envelope to every connection, raw ones included, so that its
// bytes can never pass for one of the gateway's own frames or for a
// backend's event: only a backend's own events arrive raw.
func (e *Encoder) Form(envelope bool, keep map[string][]string) Form {
	return Form{Envelope: envelope || e.it.From != "", Keep: keep}
}

// Frame returns the item as sent in form f (enveloped, whatever f says,
// when Form would envelope it).
func (e *Encoder) Frame(f Form) ([]byte, error) {
	f = e.Form(f.Envelope, f.Keep)
	k := f.Key()
	if frame, ok := e.cache[k]; ok {
		return frame, nil
	}
	payload := e.it.Payload
	if len(f.Keep) > 0 && !e.it.Binary {
		trimmed, err := filter.Apply(payload, f.Keep)
		if err != nil {
			return nil, fmt.Errorf("delivery: project %s: %w", e.it.ID, err)
		}
		payload = trimmed
	}
	frame := payload
	if f.Envelope {
		ev := protocol.Event{
			Type: protocol.TypeEvent, Topic: e.it.Topic.String(), Seq: e.it.Seq, ID: e.it.ID,
			Time: e.it.Time.UTC().Format(time.RFC3339Nano), From: e.it.From,
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

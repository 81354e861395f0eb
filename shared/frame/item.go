// Package frame decides the frame each receiver gets of an event, live or
// replayed from history: who may receive it (audience and filters) and in
// what form (projection, raw payload or gateway envelope), each form
// encoded once per event; and it replays a topic's history to one
// connection as those frames, within its caps. broadcast (the function
// that handles published events) and gateway (resume) use it; fanout only
// posts the frames it makes.
package frame

import (
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/publish"
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
	// From is who published it ("<ptype>:<sub>"), for the envelope.
	From string
}

// FromEvent is a live event with its sequence number.
func FromEvent(ev publish.Event, seq uint64) Item {
	return Item{
		Topic: ev.Topic.String(), Seq: seq, ID: ev.ID, Time: ev.Time,
		Payload: ev.Payload, Binary: ev.Binary,
		Attributes: ev.Attributes, Project: ev.Project, Audience: ev.Audience, From: ev.From,
	}
}

// FromHistory is a kept event of topic t.
func FromHistory(t string, h store.HistoryEntry) Item {
	return Item{
		Topic: t, Seq: h.Seq, ID: h.ID, Time: h.Time, Payload: h.Payload, Binary: h.Binary,
		Attributes: h.Attributes, Project: h.Project, Audience: h.Audience, From: h.From,
	}
}

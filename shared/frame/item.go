// Package frame decides the frame each receiver gets of an event, live or
// replayed from history: who may receive it (audience and filters) and in
// what form (projection, raw payload or gateway envelope), each form
// encoded once per event; and it replays a topic's history to one
// connection as those frames, within its caps. broadcast (the function
// that handles published events) and gateway (resume) use it; fanout only
// posts the frames it makes.
package frame

import "github.com/wsgate/wsgate/shared/event"

// Item is one numbered event to deliver, live or from history.
type Item struct {
	event.Event
	Seq uint64
}

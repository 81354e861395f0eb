// Package event is the one value an event is, from publish to history to
// frame: what a backend or a client published and the gateway delivers.
// publish (which validates it), store (which keeps it for resume) and frame
// (which encodes it for each receiver) embed Event and add only what is
// theirs: the publisher's instructions, the sequence number, a skipped
// number. None copies its fields.
package event

import (
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

// Event is one published event as delivered, live or replayed.
type Event struct {
	// ID is the EventBridge event id, the event's id everywhere after.
	ID string
	// Time is when it was published: the detail's published_at when
	// plausible, else EventBridge's time. The envelope carries it.
	Time time.Time
	// Topic is a concrete topic (no wildcards).
	Topic topic.Pattern
	// Payload is the bytes to deliver; Binary says they came base64-encoded
	// (and go out base64-encoded in the envelope).
	Payload []byte
	Binary  bool
	// Attributes are what subscription filters match.
	Attributes filter.Attributes
	// Project names filter keys that also trim a payload field.
	Project filter.Projection
	// Audience restricts delivery; nil means everyone the topic allows.
	Audience *auth.Audience
	// From is who published it ("<ptype>:<sub>"), empty for a backend's
	// own event.
	From string
}

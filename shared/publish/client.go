package publish

import "encoding/json"

// A client's event (the publish command) is numbered and delivered by the
// message function itself; a copy then goes to the stack's bus so that
// backends can audit it or react with an ordinary rule. The copy has no
// top-level topic, so the stack's own rule (RulePattern) does not deliver
// it a second time.
const (
	// ClientSource is the copy's source.
	ClientSource = "wsgate"
	// ClientDetailType is the copy's detail-type.
	ClientDetailType = "wsgate.client.published"
)

// ClientPublished is the copy's detail.
type ClientPublished struct {
	// EventID and Seq are the event's id and its number in the topic.
	EventID string `json:"event_id"`
	Seq     uint64 `json:"seq"`
	// From is who published it, "<ptype>:<sub>", and Orgs the principal's
	// organizations.
	From         string   `json:"from"`
	Orgs         []string `json:"orgs,omitempty"`
	ConnectionID string   `json:"connection_id"`
	// Event is the detail the subscribers' fan-out took: topic, payload,
	// attributes, from, published_at.
	Event json.RawMessage `json:"event"`
}

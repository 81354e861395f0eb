package protocol

import (
	"bytes"
	"encoding/json"
)

// The requests below are JSON commands as a client writes them, in their
// canonical form: a topic, not the channel forms of Valtronics' clients,
// which Parse reads too. Each marshals with its "type" (a caller cannot
// forget it), and Parse reads what it writes back into the matching Command
// (TestRequests_ParseBack), so the names of the fields have one definition
// that both sides are checked against.

// SubscribeRequest asks for a subscription to the pattern Topic.
type SubscribeRequest struct {
	ID    string `json:"id,omitempty"`
	Topic string `json:"topic"`
	// Filters: for each attribute, the values accepted (strings, numbers
	// or booleans; one value or a list).
	Filters map[string][]any `json:"filters,omitempty"`
	// Presence asks for the topic's join and leave events.
	Presence bool `json:"presence,omitempty"`
}

// UnsubscribeRequest removes the subscription to the pattern Topic.
type UnsubscribeRequest struct {
	ID    string `json:"id,omitempty"`
	Topic string `json:"topic"`
}

// ResumeRequest asks for topic Topic's events after sequence number Since,
// then a Resumed (or an Error with CodeHistoryExpired).
type ResumeRequest struct {
	ID    string `json:"id,omitempty"`
	Topic string `json:"topic"`
	Since uint64 `json:"since"`
	// Until, when not 0, ends the replay at that number (see Resume).
	Until uint64 `json:"until,omitempty"`
	// Envelope asks for the replayed events in the gateway envelope (Event)
	// on a connection that otherwise receives raw payloads.
	Envelope bool `json:"envelope,omitempty"`
}

// PingRequest asks for a Pong, which echoes Timestamp.
type PingRequest struct {
	ID        string `json:"id,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
}

// AuthRequest authenticates a pending connection, or refreshes the token
// of an open one.
type AuthRequest struct {
	ID    string `json:"id,omitempty"`
	Token string `json:"token"`
}

// MarshalJSON writes the request with "type":"subscribe".
func (r SubscribeRequest) MarshalJSON() ([]byte, error) {
	type fields SubscribeRequest
	return Marshal(struct {
		Type string `json:"type"`
		fields
	}{TypeSubscribe, fields(r)})
}

// MarshalJSON writes the request with "type":"unsubscribe".
func (r UnsubscribeRequest) MarshalJSON() ([]byte, error) {
	type fields UnsubscribeRequest
	return Marshal(struct {
		Type string `json:"type"`
		fields
	}{TypeUnsubscribe, fields(r)})
}

// MarshalJSON writes the request with "type":"resume".
func (r ResumeRequest) MarshalJSON() ([]byte, error) {
	type fields ResumeRequest
	return Marshal(struct {
		Type string `json:"type"`
		fields
	}{TypeResume, fields(r)})
}

// MarshalJSON writes the request with "type":"ping".
func (r PingRequest) MarshalJSON() ([]byte, error) {
	type fields PingRequest
	return Marshal(struct {
		Type string `json:"type"`
		fields
	}{TypePing, fields(r)})
}

// MarshalJSON writes the request with "type":"auth".
func (r AuthRequest) MarshalJSON() ([]byte, error) {
	type fields AuthRequest
	return Marshal(struct {
		Type string `json:"type"`
		fields
	}{TypeAuth, fields(r)})
}

// PublishRequest publishes Payload to the topic Topic (the token's publish
// claim must cover it), answered by a Published.
type PublishRequest struct {
	ID      string          `json:"id,omitempty"`
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
	// Attributes are matched by subscription filters.
	Attributes map[string]any `json:"attributes,omitempty"`
}

// MarshalJSON writes the request with "type":"publish".
func (r PublishRequest) MarshalJSON() ([]byte, error) {
	type fields PublishRequest
	return Marshal(struct {
		Type string `json:"type"`
		fields
	}{TypePublish, fields(r)})
}

// PresenceRequest asks who is subscribed to the topic Topic, from Cursor
// (a previous PresenceReply's) on; answered by a PresenceReply.
type PresenceRequest struct {
	ID     string `json:"id,omitempty"`
	Topic  string `json:"topic"`
	Cursor string `json:"cursor,omitempty"`
}

// MarshalJSON writes the request with "type":"presence".
func (r PresenceRequest) MarshalJSON() ([]byte, error) {
	type fields PresenceRequest
	return Marshal(struct {
		Type string `json:"type"`
		fields
	}{TypePresence, fields(r)})
}

// Marshal is json.Marshal without escaping <, > and &: topics and ids
// hold '>', and a request's id comes back in its reply as written. Clients
// send requests with it (json.Marshal re-escapes even a MarshalJSON's
// output).
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

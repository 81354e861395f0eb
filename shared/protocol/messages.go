package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
)

// Error codes.
const (
	CodeBadRequest     = "bad_request"
	CodeForbidden      = "forbidden"
	CodeNotFound       = "not_found"
	CodeRateLimited    = "rate_limited"
	CodeTooLarge       = "too_large"
	CodeHistoryExpired = "history_expired"
	// CodeUnavailable: the command could not be done now (the store failed
	// or stayed busy); nothing of it was kept, and sending it again may
	// succeed. Clients retry it with backoff.
	CodeUnavailable = "unavailable"
	// CodeTokenExpired and CodeRevoked say why the gateway is closing a
	// connection: its token expired without a refresh, or a backend
	// revoked its principal or token. Sent once, just before the close.
	CodeTokenExpired = "token_expired"
	CodeRevoked      = "revoked"
)

// Message types the gateway sends.
const (
	TypeError        = "error"
	TypeSubscribed   = "subscribed"
	TypeUnsubscribed = "unsubscribed"
	TypePong         = "pong"
	TypeResumed      = "resumed"
	TypeAuthResponse = "auth_response"
	TypeEvent        = "event"
	TypePublished    = "published"
	// TypeJoin and TypeLeave announce a principal's first subscription to
	// a presence-enabled topic and its last going, to subscribers that
	// asked ("presence": true).
	TypeJoin  = "join"
	TypeLeave = "leave"
)

// Header is what every message the gateway sends starts with: its type
// and, on a reply, the id of the command it answers (on an Event, the
// event's own id). A client reads it first to pick the message's struct.
type Header struct {
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id,omitempty"`
}

// Error is both a protocol error reply and a Go error.
type Error struct {
	Kind    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Code    string          `json:"code"`
	Message string          `json:"message"`
	// Unknown marks an unknown command type, which push-only connections
	// ignore instead of answering.
	Unknown bool `json:"-"`
}

// Errorf builds an *Error.
func Errorf(id json.RawMessage, code, format string, args ...any) *Error {
	return &Error{ID: id, Code: code, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// MarshalJSON always writes "type":"error".
func (e *Error) MarshalJSON() ([]byte, error) {
	type plain Error
	c := plain(*e)
	c.Kind = TypeError
	return Marshal(c)
}

// Subscribed confirms a subscribe. Seqs holds, for each subscribed topic
// without wildcards, its sequence number when the subscription began: the
// point a client resumes from if it drops before its first event.
type Subscribed struct {
	Type   string            `json:"type"`
	ID     json.RawMessage   `json:"id,omitempty"`
	Topics []string          `json:"topics"`
	Seqs   map[string]uint64 `json:"seqs,omitempty"`
}

// Unsubscribed confirms an unsubscribe.
type Unsubscribed struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id,omitempty"`
	Topics []string        `json:"topics"`
}

// Pong answers a ping with the server time (RFC 3339, UTC) and echoes the
// client's timestamp, if it sent one.
type Pong struct {
	Type      string          `json:"type"`
	ID        json.RawMessage `json:"id,omitempty"`
	Time      string          `json:"time"`
	Timestamp string          `json:"timestamp,omitempty"`
}

// Resumed ends a resume: Seq is the last sequence number replayed or, when
// nothing was missed, the topic's current one. More: the replay stopped at
// its byte cap before the topic's current number; resume again from Seq
// (later: the cap is per frame and per minute) for the rest.
type Resumed struct {
	Type     string          `json:"type"`
	ID       json.RawMessage `json:"id,omitempty"`
	Topic    string          `json:"topic"`
	Seq      uint64          `json:"seq"`
	Replayed int             `json:"replayed"`
	More     bool            `json:"more,omitempty"`
}

// Published answers a publish: the event's id and its sequence number in
// the topic (it was delivered to the topic's subscribers, the publisher's
// own connection among them when subscribed).
type Published struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Topic   string          `json:"topic"`
	EventID string          `json:"event_id"`
	Seq     uint64          `json:"seq"`
}

// PresenceMember is one principal subscribed to the topic, with how many
// of its connections are (on this page: a principal may appear on two).
type PresenceMember struct {
	PType       string `json:"ptype"`
	Sub         string `json:"sub,omitempty"`
	Connections int    `json:"connections"`
}

// PresenceReply (type TypePresence, as the command) answers a presence command: one page of the principals
// subscribed to the exact topic now; Cursor, when set, asks for the next.
type PresenceReply struct {
	Type    string           `json:"type"`
	ID      json.RawMessage  `json:"id,omitempty"`
	Topic   string           `json:"topic"`
	Members []PresenceMember `json:"members"`
	Cursor  string           `json:"cursor,omitempty"`
}

// PresenceEvent is a join or a leave. It may arrive twice (the same ID)
// and, between two principals, in any order; one principal's
// announcements in a topic alternate, numbered by Seq: a lower Seq than
// one already seen for the principal is stale.
type PresenceEvent struct {
	Type  string `json:"type"`
	ID    string `json:"id"`
	Topic string `json:"topic"`
	PType string `json:"ptype"`
	Sub   string `json:"sub,omitempty"`
	Seq   int64  `json:"seq"`
}

// AuthResponse answers an auth message.
type AuthResponse struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id,omitempty"`
	Success bool            `json:"success"`
	Message string          `json:"message,omitempty"`
	// Error is a machine-readable reason on failure: invalid_token,
	// ticket_used, too_many_connections, auth_timeout, forbidden, revoked.
	Error string `json:"error,omitempty"`
	// Expires is when the accepted token expires (RFC 3339): the gateway
	// closes the connection then unless a fresh token arrives first.
	Expires string `json:"expires,omitempty"`
}

// Auth failure reasons.
const (
	AuthInvalidToken       = "invalid_token"
	AuthTicketUsed         = "ticket_used"
	AuthTooManyConnections = "too_many_connections"
	AuthTimeout            = "auth_timeout"
	AuthForbidden          = "forbidden"
	AuthRevoked            = "revoked"
)

// Event is the gateway envelope around a payload, sent to connections that
// asked for it (envelope=1). Binary payloads travel base64-encoded in
// DataBase64.
type Event struct {
	Type       string          `json:"type"`
	Topic      string          `json:"topic"`
	Seq        uint64          `json:"seq"`
	ID         string          `json:"id"`
	Time       string          `json:"time"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 string          `json:"data_base64,omitempty"`
	// From is who published the event, "<ptype>:<sub>", when a client did
	// (the publish command) or a backend said.
	From string `json:"from,omitempty"`
}

// Encode marshals a server message. Unlike json.Marshal it leaves <, >
// and & as they are: topics hold '>' and clients read these frames.
func Encode(v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		// Every message type here marshals; a failure is a programming error
		// that must not crash a function serving clients.
		return []byte(`{"type":"error","code":"bad_request","message":"internal encoding error"}`)
	}
	return b
}

func asErr(err error, target any) bool { return errors.As(err, target) }

// Package protocol is the wsgate wire protocol as data: the client commands
// (JSON objects and Digital Rebar's text lines) parsed into typed values, the
// same commands as a client writes them (requests.go), and every message the
// gateway sends, as structs. The names on the wire (types, error codes, auth
// failure reasons) are the constants here; other clients are derived from or
// checked against them (the JavaScript client's src/protocol.ts is generated
// from them).
package protocol

//go:generate go run ./internal/protocolts -protocol . -out ../../clients/js/src/protocol.ts

import (
	"encoding/json"

	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

// Command types.
const (
	TypeSubscribe           = "subscribe"
	TypeUnsubscribe         = "unsubscribe"
	TypePing                = "ping"
	TypeRequestCurrentState = "request_current_state"
	TypeResume              = "resume"
	TypeAuth                = "auth"
	TypeBatch               = "batch"
	TypeRegister            = "register"
	TypeDeregister          = "deregister"
	TypePublish             = "publish"
	TypePresence            = "presence"
)

// MaxIDBytes bounds the echoed request id.
const MaxIDBytes = 128

// MaxPublishDepth bounds how deep a client's publish nests its payload and
// attributes (arrays and objects, the outermost counting 1; the envelope
// adds one more): subscribers' JSON parsers refuse or overflow on deep
// input (Rust's serde_json stops at 128, Python at its recursion limit),
// and a 32 KB frame would otherwise hold 16,000 levels.
const MaxPublishDepth = 64

// maxDeviceIDs bounds a device_id list in one subscribe.
const maxDeviceIDs = 100

// Command is one parsed client command.
type Command interface {
	// Type is the command's type, as on the wire.
	Type() string
	// RequestID is the client's id, echoed in the reply (nil when absent).
	RequestID() json.RawMessage
}

// Subscribe asks for one subscription per pattern, all with the same filters.
// Presence asks for the join and leave events of the (exact) topics.
type Subscribe struct {
	ID       json.RawMessage
	Patterns []topic.Pattern
	Filters  filter.Set
	Presence bool
}

// Unsubscribe removes the subscriptions to the patterns.
type Unsubscribe struct {
	ID       json.RawMessage
	Patterns []topic.Pattern
	// Covering: remove every subscription the patterns cover, not only
	// equal ones. Set for {"channel":...} without a device_id, which in
	// Valtronics' clients means "leave the channel".
	Covering bool
}

// Register is Digital Rebar's text command "register type.action.key" (or
// "deregister"): it subscribes to every topic of the pattern the principal
// may see, and answers nothing on success.
type Register struct {
	Pattern    topic.Pattern
	Deregister bool
}

// Ping asks for a pong.
type Ping struct {
	ID        json.RawMessage
	Timestamp string
}

// RequestCurrentState asks for a topic's stored state. On a scoped
// connection the client names the scope by its id field instead.
type RequestCurrentState struct {
	ID    json.RawMessage
	Topic string
	// ScopeID is operation_id, batch_id or device_id, whichever was given.
	ScopeID string
}

// Resume asks for the history of a topic after a sequence number.
// Envelope asks for the events in the gateway envelope, with their seq,
// also on a connection that receives raw payloads.
//
// Until, when set, ends the replay there: a client that subscribed and got
// the topic's number at that moment (Subscribed.Seqs) receives every later
// event live, so it asks only for the stretch in between, and no event
// comes twice.
type Resume struct {
	ID       json.RawMessage
	Topic    topic.Pattern
	Since    uint64
	Until    uint64
	Envelope bool
}

// Auth authenticates a pending connection.
type Auth struct {
	ID    json.RawMessage
	Token string
}

// Publish sends an event to a topic from the connection, when the token's
// publish claim covers it: the gateway numbers it and delivers it as a
// backend's event, with who published it (from).
type Publish struct {
	ID      json.RawMessage
	Topic   topic.Pattern
	Payload json.RawMessage
	// Attributes are matched by subscription filters (the detail's).
	Attributes json.RawMessage
}

// Presence asks who is subscribed to a topic now, one page at a time.
type Presence struct {
	ID     json.RawMessage
	Topic  topic.Pattern
	Cursor string
}

// BatchItem is one message of a batch: a command, or the error parsing it.
type BatchItem struct {
	Command Command
	Err     *Error
}

// Batch runs several commands in order.
type Batch struct {
	ID    json.RawMessage
	Items []BatchItem
}

func (c Subscribe) Type() string                 { return TypeSubscribe }
func (c Subscribe) RequestID() json.RawMessage   { return c.ID }
func (c Unsubscribe) Type() string               { return TypeUnsubscribe }
func (c Unsubscribe) RequestID() json.RawMessage { return c.ID }
func (c Register) Type() string {
	if c.Deregister {
		return TypeDeregister
	}
	return TypeRegister
}
func (c Register) RequestID() json.RawMessage            { return nil }
func (c Ping) Type() string                              { return TypePing }
func (c Ping) RequestID() json.RawMessage                { return c.ID }
func (c RequestCurrentState) Type() string               { return TypeRequestCurrentState }
func (c RequestCurrentState) RequestID() json.RawMessage { return c.ID }
func (c Resume) Type() string                            { return TypeResume }
func (c Resume) RequestID() json.RawMessage              { return c.ID }
func (c Auth) Type() string                              { return TypeAuth }
func (c Auth) RequestID() json.RawMessage                { return c.ID }
func (c Presence) Type() string                          { return TypePresence }
func (c Presence) RequestID() json.RawMessage            { return c.ID }
func (c Publish) Type() string                           { return TypePublish }
func (c Publish) RequestID() json.RawMessage             { return c.ID }
func (c Batch) Type() string                             { return TypeBatch }
func (c Batch) RequestID() json.RawMessage               { return c.ID }

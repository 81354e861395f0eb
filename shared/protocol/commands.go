// Package protocol is the wsgate wire protocol as data: the client commands
// (JSON objects and Digital Rebar's text lines) parsed into typed values, and
// every message the gateway sends, as structs.
package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

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
)

// MaxIDBytes bounds the echoed request id.
const MaxIDBytes = 128

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
type Subscribe struct {
	ID       json.RawMessage
	Patterns []topic.Pattern
	Filters  filter.Set
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
type Resume struct {
	ID       json.RawMessage
	Topic    topic.Pattern
	Since    uint64
	Envelope bool
}

// Auth authenticates a pending connection.
type Auth struct {
	ID    json.RawMessage
	Token string
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
func (c Batch) Type() string                             { return TypeBatch }
func (c Batch) RequestID() json.RawMessage               { return c.ID }

// wire is the union of every JSON command's fields.
type wire struct {
	Type        string          `json:"type"`
	ID          json.RawMessage `json:"id"`
	Topic       *string         `json:"topic"`
	Channel     *string         `json:"channel"`
	DeviceID    json.RawMessage `json:"device_id"`
	Filters     json.RawMessage `json:"filters"`
	Timestamp   json.RawMessage `json:"timestamp"`
	OperationID json.RawMessage `json:"operation_id"`
	BatchID     json.RawMessage `json:"batch_id"`
	Since       json.RawMessage `json:"since"`
	Token       *string         `json:"token"`
	Messages    json.RawMessage `json:"messages"`
	Envelope    json.RawMessage `json:"envelope"`
	// extra holds the other top-level fields of a channel subscribe.
	extra map[string]json.RawMessage
}

// wireFields are the JSON names of wire's fields.
var wireFields = []string{"type", "id", "topic", "channel", "device_id", "filters", "timestamp", "operation_id", "batch_id", "since", "token", "messages", "envelope"}

// Parse parses one client frame. A JSON object is a command; anything else
// is read as text lines ("register ...", "deregister ..."), several lines
// making a batch. maxBatch bounds a batch's length. The error is always an
// *Error carrying the reply to send.
func Parse(data []byte, maxBatch int) (Command, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, Errorf(nil, CodeBadRequest, "empty message")
	}
	if !utf8.Valid(trimmed) {
		return nil, Errorf(nil, CodeBadRequest, "message is not UTF-8 text")
	}
	if trimmed[0] == '{' {
		return parseJSON(trimmed, maxBatch, true)
	}
	if trimmed[0] == '[' || trimmed[0] == '"' {
		return nil, Errorf(nil, CodeBadRequest, "a command is a JSON object with a \"type\"")
	}
	return parseText(string(trimmed), maxBatch)
}

func parseJSON(data []byte, maxBatch int, allowBatch bool) (Command, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, Errorf(nil, CodeBadRequest, "bad JSON: %s", jsonProblem(err))
	}
	if w.Channel != nil {
		// Valtronics' JavaScript client spreads its filters next to
		// "channel" ({type, channel, severity: [...]}); its Python client
		// nests them in "filters". Both mean the same.
		if err := json.Unmarshal(data, &w.extra); err != nil {
			return nil, Errorf(nil, CodeBadRequest, "bad JSON: %s", jsonProblem(err))
		}
		for _, known := range wireFields {
			delete(w.extra, known)
		}
	}
	id, err := parseID(w.ID)
	if err != nil {
		return nil, err
	}
	switch w.Type {
	case "":
		return nil, Errorf(id, CodeBadRequest, "missing \"type\"")
	case TypeSubscribe:
		pats, filters, err := w.target(id, true)
		if err != nil {
			return nil, err
		}
		return Subscribe{ID: id, Patterns: pats, Filters: filters}, nil
	case TypeUnsubscribe:
		pats, _, err := w.target(id, false)
		if err != nil {
			return nil, err
		}
		return Unsubscribe{ID: id, Patterns: pats, Covering: w.Channel != nil && len(w.DeviceID) == 0}, nil
	case TypePing:
		var ts string
		if len(w.Timestamp) > 0 {
			if s, err := filter.Scalar(w.Timestamp); err == nil {
				ts = s
			}
		}
		return Ping{ID: id, Timestamp: ts}, nil
	case TypeRequestCurrentState:
		c := RequestCurrentState{ID: id}
		if w.Topic != nil {
			c.Topic = *w.Topic
		}
		for _, raw := range []json.RawMessage{w.OperationID, w.BatchID, w.DeviceID} {
			if len(raw) == 0 || c.ScopeID != "" {
				continue
			}
			s, err := filter.Scalar(raw)
			if err != nil {
				return nil, Errorf(id, CodeBadRequest, "the scope id must be a string or number")
			}
			c.ScopeID = s
		}
		if c.Topic == "" && c.ScopeID == "" {
			return nil, Errorf(id, CodeBadRequest, "request_current_state needs \"topic\" or the scope's id field")
		}
		return c, nil
	case TypeResume:
		if w.Topic == nil {
			return nil, Errorf(id, CodeBadRequest, "resume needs \"topic\"")
		}
		t, err := topic.ParseTopic(*w.Topic)
		if err != nil {
			return nil, Errorf(id, CodeBadRequest, "%v", err)
		}
		var since uint64
		if err := json.Unmarshal(w.Since, &since); err != nil {
			return nil, Errorf(id, CodeBadRequest, "resume needs \"since\", a sequence number >= 0")
		}
		var envelope bool
		if len(w.Envelope) > 0 && json.Unmarshal(w.Envelope, &envelope) != nil {
			return nil, Errorf(id, CodeBadRequest, "resume's \"envelope\" is true or false")
		}
		return Resume{ID: id, Topic: t, Since: since, Envelope: envelope}, nil
	case TypeAuth:
		if w.Token == nil || *w.Token == "" {
			return nil, Errorf(id, CodeBadRequest, "auth needs \"token\"")
		}
		return Auth{ID: id, Token: *w.Token}, nil
	case TypeBatch:
		if !allowBatch {
			return nil, Errorf(id, CodeBadRequest, "a batch may not hold a batch")
		}
		var msgs []json.RawMessage
		if err := json.Unmarshal(w.Messages, &msgs); err != nil || len(msgs) == 0 {
			return nil, Errorf(id, CodeBadRequest, "batch needs \"messages\", a non-empty list")
		}
		if len(msgs) > maxBatch {
			return nil, Errorf(id, CodeTooLarge, "batch holds %d messages; at most %d", len(msgs), maxBatch)
		}
		b := Batch{ID: id, Items: make([]BatchItem, len(msgs))}
		for i, m := range msgs {
			cmd, err := parseJSON(bytes.TrimSpace(m), maxBatch, false)
			if err != nil {
				b.Items[i].Err = err.(*Error)
				continue
			}
			b.Items[i].Command = cmd
		}
		return b, nil
	}
	return nil, &Error{ID: id, Code: CodeBadRequest, Message: fmt.Sprintf("unknown type %q", truncate(w.Type, 64)), Unknown: true}
}

func parseID(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) > MaxIDBytes {
		return nil, Errorf(nil, CodeBadRequest, "\"id\" is longer than %d bytes", MaxIDBytes)
	}
	if _, err := filter.Scalar(raw); err != nil || raw[0] == 't' || raw[0] == 'f' {
		return nil, Errorf(nil, CodeBadRequest, "\"id\" must be a string or a number")
	}
	return raw, nil
}

// target turns the topic or channel+device_id forms into patterns.
func (w wire) target(id json.RawMessage, withFilters bool) ([]topic.Pattern, filter.Set, error) {
	var filters filter.Set
	if withFilters {
		var err error
		if filters, err = filter.ParseSet(w.Filters); err != nil {
			return nil, nil, Errorf(id, CodeBadRequest, "%v", err)
		}
		if len(w.extra) > 0 {
			raw, _ := json.Marshal(w.extra)
			spread, err := filter.ParseSet(raw)
			if err != nil {
				return nil, nil, Errorf(id, CodeBadRequest, "%v", err)
			}
			if filters == nil {
				filters = filter.Set{}
			}
			for k, v := range spread {
				if _, nested := filters[k]; !nested {
					filters[k] = v
				}
			}
		}
	}
	switch {
	case w.Topic != nil && w.Channel != nil:
		return nil, nil, Errorf(id, CodeBadRequest, "give \"topic\" or \"channel\", not both")
	case w.Topic != nil:
		p, err := topic.ParsePattern(*w.Topic)
		if err != nil {
			return nil, nil, Errorf(id, CodeBadRequest, "%v", err)
		}
		return []topic.Pattern{p}, filters, nil
	case w.Channel != nil:
		ch, err := topic.ParseTopic(*w.Channel)
		if err != nil || len(ch.Segments()) != 1 {
			return nil, nil, Errorf(id, CodeBadRequest, "\"channel\" must be one topic segment")
		}
		var ids []string
		if len(w.DeviceID) > 0 {
			if ids, err = filter.Values(w.DeviceID); err != nil {
				return nil, nil, Errorf(id, CodeBadRequest, "device_id: %v", err)
			}
		} else if lifted, ok := filters["device_id"]; ok {
			// Valtronics clients also put device_id inside filters; one
			// subscription per device is cheaper than filtering channel.*.
			ids = lifted
			delete(filters, "device_id")
			if len(filters) == 0 {
				filters = nil
			}
		}
		if len(ids) > maxDeviceIDs {
			return nil, nil, Errorf(id, CodeTooLarge, "device_id lists more than %d ids", maxDeviceIDs)
		}
		if len(ids) == 0 {
			return []topic.Pattern{topic.MustPattern(ch.String() + ".*")}, filters, nil
		}
		pats := make([]topic.Pattern, 0, len(ids))
		for _, d := range ids {
			p, err := topic.Join(topic.DecodeSegment(ch.String()), d)
			if err != nil {
				return nil, nil, Errorf(id, CodeBadRequest, "device_id %q: %v", truncate(d, 64), err)
			}
			pats = append(pats, p)
		}
		return pats, filters, nil
	}
	return nil, nil, Errorf(id, CodeBadRequest, "%s needs \"topic\" or \"channel\"", w.Type)
}

// parseText reads Digital Rebar's text commands, one per line.
func parseText(s string, maxBatch int) (Command, error) {
	var items []BatchItem
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		cmd, err := parseLine(line)
		if err != nil {
			items = append(items, BatchItem{Err: err})
			continue
		}
		items = append(items, BatchItem{Command: cmd})
	}
	if len(items) > maxBatch {
		return nil, Errorf(nil, CodeTooLarge, "%d lines; at most %d", len(items), maxBatch)
	}
	if len(items) == 1 {
		if items[0].Err != nil {
			return nil, items[0].Err
		}
		return items[0].Command, nil
	}
	return Batch{Items: items}, nil
}

func parseLine(line string) (Command, *Error) {
	verb, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	var dereg bool
	switch verb {
	case TypeRegister:
	case TypeDeregister:
		dereg = true
	default:
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown command %q; text commands are register and deregister", truncate(verb, 32)), Unknown: true}
	}
	typ, rest, ok1 := strings.Cut(arg, ".")
	action, key, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || typ == "" || action == "" || key == "" || strings.ContainsAny(arg, " \t") {
		return nil, &Error{Code: CodeBadRequest, Message: verb + " needs type.action.key"}
	}
	seg := func(s string) string {
		if s == "*" {
			return s
		}
		return topic.EncodeSegment(s)
	}
	p, err := topic.ParsePattern(seg(typ) + "." + seg(action) + "." + seg(key))
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	return Register{Pattern: p, Deregister: dereg}, nil
}

func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case asErr(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case asErr(err, &te):
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
	}
	return "not a JSON object"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

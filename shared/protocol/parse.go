package protocol

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

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
	Until       json.RawMessage `json:"until"`
	Token       *string         `json:"token"`
	Messages    json.RawMessage `json:"messages"`
	Envelope    json.RawMessage `json:"envelope"`
	Payload     json.RawMessage `json:"payload"`
	Attributes  json.RawMessage `json:"attributes"`
	Cursor      *string         `json:"cursor"`
	Presence    json.RawMessage `json:"presence"`
	// extra holds the other top-level fields of a channel subscribe.
	extra map[string]json.RawMessage
}

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
		return parseJSON(trimmed, maxBatch)
	}
	if trimmed[0] == '[' || trimmed[0] == '"' {
		return nil, Errorf(nil, CodeBadRequest, "a command is a JSON object with a \"type\"")
	}
	return parseText(string(trimmed), maxBatch)
}

// parseJSON parses a JSON command; only this top level may be a batch.
func parseJSON(data []byte, maxBatch int) (Command, error) {
	w, id, err := readWire(data)
	if err != nil {
		return nil, err
	}
	if w.Type == TypeBatch {
		return w.batch(id, maxBatch)
	}
	return w.command(id)
}

// readWire decodes a JSON command's fields and checks its id.
func readWire(data []byte) (wire, json.RawMessage, error) {
	var w wire
	if err := json.Unmarshal(data, &w); err != nil {
		return w, nil, Errorf(nil, CodeBadRequest, "bad JSON: %s", jsonProblem(err))
	}
	id, err := parseID(w.ID)
	if err != nil {
		return w, nil, err
	}
	if w.Channel == nil && w.Type != TypeSubscribe && w.Type != TypeUnsubscribe {
		return w, id, nil
	}
	// Valtronics' JavaScript client spreads its filters next to "channel"
	// ({type, channel, severity: [...]}); its Python client nests them in
	// "filters". Both mean the same. A topic subscribe has no spread
	// filters: any other field there is a mistake ("filter" for
	// "filters") that would leave the subscription unfiltered.
	if err := json.Unmarshal(data, &w.extra); err != nil {
		return w, nil, Errorf(nil, CodeBadRequest, "bad JSON: %s", jsonProblem(err))
	}
	dropWireFields(w.extra)
	if err := refuseUnknownFields(id, w); err != nil {
		return w, nil, err
	}
	return w, id, nil
}

// refuseUnknownFields refuses a (un)subscribe field wire does not know:
// any in the topic form, and in the channel form one holding an object
// (a filter's values are scalars or lists, so "filter": {...} is a
// misspelt "filters", not a filter).
func refuseUnknownFields(id json.RawMessage, w wire) error {
	keys := slices.Sorted(maps.Keys(w.extra))
	for _, k := range keys {
		v := bytes.TrimSpace(w.extra[k])
		if w.Channel != nil && (len(v) == 0 || v[0] != '{') {
			continue
		}
		hint := ""
		if strings.HasPrefix(strings.ToLower(k), "filt") {
			hint = `; filters go in "filters": {...}`
		}
		return Errorf(id, CodeBadRequest, "unknown field %q in %s%s", truncate(k, 64), truncate(w.Type, 64), hint)
	}
	return nil
}

// dropWireFields deletes wire's own fields from a command's object, leaving
// the filters spread next to "channel". The names come from wire's tags, so
// a new field cannot be mistaken for a filter.
func dropWireFields(fields map[string]json.RawMessage) {
	t := reflect.TypeFor[wire]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			delete(fields, name)
		}
	}
}

// command builds the (non-batch) command of w's type.
func (w wire) command(id json.RawMessage) (Command, error) {
	switch w.Type {
	case "":
		return nil, Errorf(id, CodeBadRequest, "missing \"type\"")
	case TypeSubscribe:
		return w.subscribe(id)
	case TypeUnsubscribe:
		pats, _, err := w.target(id, nil)
		if err != nil {
			return nil, err
		}
		return Unsubscribe{ID: id, Patterns: pats, Covering: w.Channel != nil && len(w.DeviceID) == 0}, nil
	case TypePing:
		return w.ping(id), nil
	case TypeRequestCurrentState:
		return w.currentState(id)
	case TypeResume:
		return w.resume(id)
	case TypeAuth:
		if w.Token == nil || *w.Token == "" {
			return nil, Errorf(id, CodeBadRequest, "auth needs \"token\"")
		}
		return Auth{ID: id, Token: *w.Token}, nil
	case TypePublish:
		return w.publish(id)
	case TypePresence:
		return w.presence(id)
	case TypeBatch:
		return nil, Errorf(id, CodeBadRequest, "a batch may not hold a batch")
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

func (w wire) subscribe(id json.RawMessage) (Command, error) {
	filters, err := w.filters(id)
	if err != nil {
		return nil, err
	}
	pats, filters, err := w.target(id, filters)
	if err != nil {
		return nil, err
	}
	var presence bool
	if len(w.Presence) > 0 && json.Unmarshal(w.Presence, &presence) != nil {
		return nil, Errorf(id, CodeBadRequest, "subscribe's \"presence\" is true or false")
	}
	return Subscribe{ID: id, Patterns: pats, Filters: filters, Presence: presence}, nil
}

// filters reads a subscribe's filters: nested in "filters" and spread next
// to "channel"; a nested key wins over a spread one.
func (w wire) filters(id json.RawMessage) (filter.Set, error) {
	filters, err := filter.ParseSet(w.Filters)
	if err != nil {
		return nil, Errorf(id, CodeBadRequest, "%v", err)
	}
	if len(w.extra) == 0 {
		return filters, nil
	}
	raw, _ := json.Marshal(w.extra)
	spread, err := filter.ParseSet(raw)
	if err != nil {
		return nil, Errorf(id, CodeBadRequest, "%v", err)
	}
	if filters == nil {
		filters = filter.Set{}
	}
	for k, v := range spread {
		if _, nested := filters[k]; !nested {
			filters[k] = v
		}
	}
	return filters, nil
}

// target turns the topic or channel+device_id forms into patterns. It
// returns filters less a device_id it moved into the patterns.
func (w wire) target(id json.RawMessage, filters filter.Set) ([]topic.Pattern, filter.Set, error) {
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
		return w.channel(id, filters)
	}
	return nil, nil, Errorf(id, CodeBadRequest, "%s needs \"topic\" or \"channel\"", w.Type)
}

// channel is target's channel form: one pattern per device_id, or the
// whole channel.
func (w wire) channel(id json.RawMessage, filters filter.Set) ([]topic.Pattern, filter.Set, error) {
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

// ping reads a ping; a timestamp that is not a scalar is left out.
func (w wire) ping(id json.RawMessage) Command {
	var ts string
	if len(w.Timestamp) > 0 {
		if s, err := filter.Scalar(w.Timestamp); err == nil {
			ts = s
		}
	}
	return Ping{ID: id, Timestamp: ts}
}

func (w wire) currentState(id json.RawMessage) (Command, error) {
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
}

func (w wire) resume(id json.RawMessage) (Command, error) {
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
	var until uint64
	if len(w.Until) > 0 && (json.Unmarshal(w.Until, &until) != nil || until < since) {
		return nil, Errorf(id, CodeBadRequest, "resume's \"until\" is a sequence number >= since")
	}
	var envelope bool
	if len(w.Envelope) > 0 && json.Unmarshal(w.Envelope, &envelope) != nil {
		return nil, Errorf(id, CodeBadRequest, "resume's \"envelope\" is true or false")
	}
	return Resume{ID: id, Topic: t, Since: since, Until: until, Envelope: envelope}, nil
}

func (w wire) publish(id json.RawMessage) (Command, error) {
	if w.Topic == nil {
		return nil, Errorf(id, CodeBadRequest, "publish needs \"topic\"")
	}
	t, err := topic.ParseTopic(*w.Topic)
	if err != nil {
		return nil, Errorf(id, CodeBadRequest, "publish: %v (a topic, no wildcards)", err)
	}
	if p := bytes.TrimSpace(w.Payload); len(p) == 0 || string(p) == "null" {
		return nil, Errorf(id, CodeBadRequest, "publish needs \"payload\", any JSON value but null")
	}
	if a := bytes.TrimSpace(w.Attributes); len(a) > 0 && (a[0] != '{' || string(a) == "null") {
		return nil, Errorf(id, CodeBadRequest, "publish's \"attributes\" is an object")
	}
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"payload", w.Payload}, {"attributes", w.Attributes}} {
		if nestsDeeper(f.v, MaxPublishDepth) {
			return nil, Errorf(id, CodeBadRequest, "publish's %q nests arrays and objects more than %d deep", f.name, MaxPublishDepth)
		}
	}
	return Publish{ID: id, Topic: t, Payload: w.Payload, Attributes: w.Attributes}, nil
}

// nestsDeeper reports whether the JSON value v (valid: json.Unmarshal
// checked it) nests arrays and objects more than max levels deep.
func nestsDeeper(v []byte, max int) bool {
	depth, inString, escaped := 0, false, false
	for _, c := range v {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			if depth++; depth > max {
				return true
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return false
}

func (w wire) presence(id json.RawMessage) (Command, error) {
	if w.Topic == nil {
		return nil, Errorf(id, CodeBadRequest, "presence needs \"topic\"")
	}
	t, err := topic.ParseTopic(*w.Topic)
	if err != nil {
		return nil, Errorf(id, CodeBadRequest, "presence: %v (a topic, no wildcards)", err)
	}
	c := Presence{ID: id, Topic: t}
	if w.Cursor != nil {
		c.Cursor = *w.Cursor
	}
	return c, nil
}

// batch parses a batch's messages, each into a command or its error.
func (w wire) batch(id json.RawMessage, maxBatch int) (Command, error) {
	var msgs []json.RawMessage
	if err := json.Unmarshal(w.Messages, &msgs); err != nil || len(msgs) == 0 {
		return nil, Errorf(id, CodeBadRequest, "batch needs \"messages\", a non-empty list")
	}
	if len(msgs) > maxBatch {
		return nil, Errorf(id, CodeTooLarge, "batch holds %d messages; at most %d", len(msgs), maxBatch)
	}
	b := Batch{ID: id, Items: make([]BatchItem, len(msgs))}
	for i, m := range msgs {
		cmd, err := batchItem(bytes.TrimSpace(m))
		if err != nil {
			b.Items[i].Err = asError(err)
			continue
		}
		b.Items[i].Command = cmd
	}
	return b, nil
}

func batchItem(data []byte) (Command, error) {
	w, id, err := readWire(data)
	if err != nil {
		return nil, err
	}
	return w.command(id)
}

// asError is err as the *Error every parse step returns.
func asError(err error) *Error {
	var pe *Error
	if !asErr(err, &pe) {
		pe = Errorf(nil, CodeBadRequest, "%v", err)
	}
	return pe
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

// Package publish is the publisher contract: the EventBridge "detail" a
// backend sends, its validation, and a Publish helper for backends.
package publish

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/event"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

// Limits of the contract.
const (
	// MaxFrameBytes is API Gateway's message limit: a payload (raw or in the
	// gateway envelope) that would exceed it is refused at publish time.
	MaxFrameBytes = 128 * 1024
	// MaxStateBytes bounds the stored state of a topic (one DynamoDB item).
	MaxStateBytes = 350 * 1024
	// MaxStateFrames bounds the frames request_current_state answers with.
	MaxStateFrames = 50
	// MaxItemBytes is DynamoDB's item size limit, counted as DynamoDB
	// counts it: every attribute's name and value, the keys included.
	MaxItemBytes = 400 * 1024
	// MaxDetailBytes is the largest event the gateway accepts: its whole
	// detail, and what it stores of it (see checkStoredSize). An event
	// writes its detail as one item when it is delivered in several shards,
	// its state (with its audience) as one, and its history entry as one,
	// so each must fit MaxItemBytes whatever the audience. itemReserve is
	// left for what an item holds besides the event's bytes: keys (a topic
	// is at most 512 bytes), the event id, attribute names, numbers and
	// list overhead, about 1.2 KB at most, and room for a detail that
	// EventBridge delivers a little longer than it was sent. EventBridge
	// and Lambda's asynchronous invocations take 1 MB; this is the bound.
	MaxDetailBytes = MaxItemBytes - itemReserve
	itemReserve    = 16 * 1024
	// envelopeReserve covers the envelope's fields around the payload.
	envelopeReserve = 160
)

// ErrInvalid is wrapped by every validation error. Invalid events are
// logged with the reason and dropped; retrying them cannot help.
var ErrInvalid = errors.New("invalid event")

// ErrTooLarge marks an event refused for its size (a subset of ErrInvalid,
// counted separately).
var ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalid)

// Detail is the EventBridge detail of a wsgate event, as a backend writes it.
type Detail struct {
	Topic string `json:"topic"`
	// Payload is delivered to subscribers exactly as given.
	Payload json.RawMessage `json:"payload,omitempty"`
	// PayloadBase64 is the alternative for bytes (protobuf): delivered as
	// the decoded bytes.
	PayloadBase64 string `json:"payload_base64,omitempty"`
	// Attributes are matched by subscription filters.
	Attributes map[string]any `json:"attributes,omitempty"`
	// Project names filter keys that also trim a payload field.
	Project filter.Projection `json:"project,omitempty"`
	// Audience restricts delivery; nil means everyone the topic allows.
	Audience *auth.Audience `json:"audience,omitempty"`
	// State replaces the topic's stored state, one frame per element.
	State []json.RawMessage `json:"state,omitempty"`
	// History keeps the event for resume; nil means the configured default.
	History *bool `json:"history,omitempty"`
	// PublishedAt is when the backend published, to the millisecond
	// (Publish sets it): the envelope's time. EventBridge's own event time
	// has whole seconds, too coarse for publish-to-receive latency.
	PublishedAt *time.Time `json:"published_at,omitempty"`
	// From names who published, "<ptype>:<sub>": the gateway sets it on
	// events its clients publish (the publish command), and subscribers
	// read it in the envelope. A backend may set it when it relays.
	From string `json:"from,omitempty"`
}

// MaxFromBytes bounds Detail.From.
const MaxFromBytes = 300

// maxClockSkew bounds how far published_at may be from EventBridge's time
// to be used instead of it.
const maxClockSkew = 5 * time.Minute

// Event is a validated event, ready for fan-out: the event itself and what
// its publisher asked the gateway to do with it besides delivering it.
type Event struct {
	event.Event
	// HasPayload: the detail had a payload to deliver (an event may only
	// replace the topic's state).
	HasPayload bool
	// State is nil when the event leaves the stored state alone.
	State        [][]byte
	ReplaceState bool
	// History keeps the event for resume.
	History bool
}

// wireDetail mirrors Detail with the raw forms validation needs.
type wireDetail struct {
	Topic         *string           `json:"topic"`
	Payload       json.RawMessage   `json:"payload"`
	PayloadBase64 *string           `json:"payload_base64"`
	Attributes    json.RawMessage   `json:"attributes"`
	Project       map[string]string `json:"project"`
	Audience      *auth.Audience    `json:"audience"`
	State         json.RawMessage   `json:"state"`
	History       *bool             `json:"history"`
	PublishedAt   *time.Time        `json:"published_at"`
	From          *string           `json:"from"`
}

// Parse validates an EventBridge detail. id and t are the EventBridge event
// id and time; historyDefault applies when the detail does not say.
func Parse(id string, t time.Time, detail []byte, historyDefault bool) (Event, error) {
	if len(detail) > MaxDetailBytes {
		return Event{}, fmt.Errorf("%w: detail is %d bytes; the gateway takes at most %d (DynamoDB keeps it in one %d-byte item)", ErrTooLarge, len(detail), MaxDetailBytes, MaxItemBytes)
	}
	w, err := decodeDetail(detail)
	if err != nil {
		return Event{}, err
	}
	if w.Topic == nil {
		return Event{}, fmt.Errorf("%w: detail.topic is required", ErrInvalid)
	}
	tp, err := topic.ParseTopic(*w.Topic)
	if err != nil {
		return Event{}, fmt.Errorf("%w: detail.topic: %v", ErrInvalid, err)
	}
	ev := Event{Event: event.Event{ID: id, Time: t, Topic: tp}, History: historyDefault}
	if p := w.PublishedAt; p != nil && p.Sub(t).Abs() <= maxClockSkew+time.Second {
		ev.Time = p.UTC()
	}
	if w.History != nil {
		ev.History = *w.History
	}
	if w.From != nil {
		if ev.From, err = parseFrom(*w.From); err != nil {
			return Event{}, err
		}
	}
	if err := parsePayload(w, &ev); err != nil {
		return Event{}, err
	}
	if ev.Attributes, err = filter.ParseAttributes(w.Attributes); err != nil {
		return Event{}, fmt.Errorf("%w: detail.attributes: %v", ErrInvalid, err)
	}
	for k, v := range w.Project {
		if k == "" || v == "" {
			return Event{}, fmt.Errorf("%w: detail.project maps filter keys to payload fields; neither may be empty", ErrInvalid)
		}
	}
	if len(w.Project) > 0 {
		if ev.Binary {
			return Event{}, fmt.Errorf("%w: detail.project cannot trim a binary payload", ErrInvalid)
		}
		ev.Project = filter.Projection(w.Project)
	}
	if w.Audience != nil {
		if w.Audience.Empty() {
			return Event{}, fmt.Errorf("%w: detail.audience lists nobody; omit it to reach every allowed subscriber", ErrInvalid)
		}
		if err := w.Audience.Validate(); err != nil {
			return Event{}, fmt.Errorf("%w: detail.audience: %v", ErrInvalid, err)
		}
		ev.Audience = w.Audience
	}
	if ev.State, ev.ReplaceState, err = parseState(w.State); err != nil {
		return Event{}, err
	}
	if !ev.HasPayload && !ev.ReplaceState {
		return Event{}, fmt.Errorf("%w: detail needs payload, payload_base64 or state", ErrInvalid)
	}
	if err := checkStoredSize(ev); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// decodeDetail decodes the detail strictly: unknown fields, trailing data,
// duplicated or case-variant keys are refused.
func decodeDetail(detail []byte) (wireDetail, error) {
	var w wireDetail
	if err := decodeStrict(detail, "detail", &w); err != nil {
		return wireDetail{}, err
	}
	if err := checkKeys(detail); err != nil {
		return wireDetail{}, err
	}
	return w, nil
}

// decodeStrict decodes the JSON object b, named what in errors, into v,
// refusing unknown fields and trailing data.
func decodeStrict(b []byte, what string, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, what, err)
	}
	// Decoder.More misses a stray closing bracket ({...}}): look at the
	// rest itself.
	if len(bytes.TrimSpace(b[dec.InputOffset():])) > 0 {
		return fmt.Errorf("%w: %s has trailing data", ErrInvalid, what)
	}
	return nil
}

// parseFrom checks detail.from: "<ptype>:<sub>", as an audience subs entry.
func parseFrom(from string) (string, error) {
	ptype, sub, ok := strings.Cut(from, ":")
	if !ok || ptype == "" || sub == "" || len(from) > MaxFromBytes || !utf8.ValidString(from) {
		return "", fmt.Errorf("%w: detail.from is \"<ptype>:<sub>\", at most %d bytes", ErrInvalid, MaxFromBytes)
	}
	return from, nil
}

// parsePayload sets the event's payload from payload or payload_base64.
func parsePayload(w wireDetail, ev *Event) error {
	hasJSON := len(w.Payload) > 0 && !bytes.Equal(w.Payload, []byte("null"))
	switch {
	case hasJSON && w.PayloadBase64 != nil:
		return fmt.Errorf("%w: give payload or payload_base64, not both", ErrInvalid)
	case hasJSON:
		ev.Payload, ev.HasPayload = []byte(w.Payload), true
	case w.PayloadBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*w.PayloadBase64)
		if err != nil {
			return fmt.Errorf("%w: payload_base64 is not standard base64", ErrInvalid)
		}
		ev.Payload, ev.Binary, ev.HasPayload = b, true, true
	}
	if ev.HasPayload {
		return checkFrameSize(*ev)
	}
	return nil
}

// parseState reads detail.state: absent or null leaves the stored state
// alone; a list (even empty) replaces it.
func parseState(raw json.RawMessage) (frames [][]byte, replace bool, err error) {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, false, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, false, fmt.Errorf("%w: detail.state must be a list of messages", ErrInvalid)
	}
	if len(list) > MaxStateFrames {
		return nil, false, fmt.Errorf("%w: detail.state holds %d messages; at most %d", ErrTooLarge, len(list), MaxStateFrames)
	}
	total := 0
	frames = make([][]byte, 0, len(list))
	for i, f := range list {
		if len(f) > MaxFrameBytes {
			return nil, false, fmt.Errorf("%w: detail.state[%d] is %d bytes; a frame is at most %d", ErrTooLarge, i, len(f), MaxFrameBytes)
		}
		total += len(f)
		frames = append(frames, []byte(f))
	}
	if total > MaxStateBytes {
		return nil, false, fmt.Errorf("%w: detail.state is %d bytes; at most %d", ErrTooLarge, total, MaxStateBytes)
	}
	return frames, true, nil
}

// checkFrameSize refuses a payload whose raw or enveloped frame would exceed
// API Gateway's limit, so no subscriber ever gets half of a fan-out.
func checkFrameSize(ev Event) error {
	raw := len(ev.Payload)
	env := envelopeReserve + len(ev.Topic.String()) + len(ev.ID) + len(strconv.Itoa(1<<62)) + len(ev.From)
	if ev.Binary {
		env += base64.StdEncoding.EncodedLen(raw)
	} else {
		env += raw
	}
	if raw > MaxFrameBytes || env > MaxFrameBytes {
		return fmt.Errorf("%w: payload is %d bytes (%d in the envelope); API Gateway's limit is %d", ErrTooLarge, raw, env, MaxFrameBytes)
	}
	return nil
}

// checkStoredSize refuses an event whose state item or history entry, as
// the store writes them, would hold more than MaxDetailBytes of it. They
// are usually smaller than the detail, but the store keeps attributes,
// project and audience re-encoded as JSON (a number attribute becomes a
// quoted string, "<" becomes \u003c), which can be several times longer
// than the detail spelt them. The history entry is checked whether or not
// this event keeps one, so that a publisher's check and the gateway's
// (which may keep history by default) agree.
func checkStoredSize(ev Event) error {
	aud := encodedLen(ev.Audience)
	if ev.ReplaceState {
		n := aud
		for _, f := range ev.State {
			n += len(f) + 1 // DynamoDB counts a byte per list element
		}
		if n > MaxDetailBytes {
			return fmt.Errorf("%w: detail.state and its audience take %d bytes stored; at most %d", ErrTooLarge, n, MaxDetailBytes)
		}
	}
	if ev.HasPayload {
		n := len(ev.Payload) + encodedLen(ev.Attributes) + encodedLen(ev.Project) + aud + len(ev.From)
		if n > MaxDetailBytes {
			return fmt.Errorf("%w: payload, attributes, project and audience take %d bytes stored for resume; at most %d", ErrTooLarge, n, MaxDetailBytes)
		}
	}
	return nil
}

// encodedLen is the length of v as the store encodes it (json.Marshal), 0
// for what it leaves out.
func encodedLen(v any) int {
	switch x := v.(type) {
	case *auth.Audience:
		if x == nil {
			return 0
		}
	case filter.Attributes:
		if len(x) == 0 {
			return 0
		}
	case filter.Projection:
		if len(x) == 0 {
			return 0
		}
	}
	b, _ := json.Marshal(v) // strings, lists and maps of them: never fails
	return len(b)
}

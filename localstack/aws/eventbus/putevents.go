package eventbus

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// PutEvents limits, as AWS has them: at most MaxEntries entries a call,
// and at most MaxRequestBytes for all of them together, counted as
// EventBridge counts an entry (entrySize). AWS raised the size from
// 256 KB to 1 MiB on 2026-01-29, with SQS's messages and Lambda's
// asynchronous payloads.
const (
	MaxEntries      = 10
	MaxRequestBytes = 1 << 20
)

// maxBodyBytes bounds the request body read: JSON escaping takes at most 6
// bytes per byte of entry (\u00XX), and what is not counted (keys, bus
// names, trace headers) fits in the slack, so a longer body cannot hold
// entries within MaxRequestBytes.
const maxBodyBytes = 6*MaxRequestBytes + 1<<20

const msgTooLarge = "Total size of the entries in the request is over the limit."

type putEventsEntry struct {
	Source       *string  `json:"Source"`
	DetailType   *string  `json:"DetailType"`
	Detail       *string  `json:"Detail"`
	EventBusName *string  `json:"EventBusName"`
	Resources    []string `json:"Resources"`
	Time         *float64 `json:"Time"`
	TraceHeader  *string  `json:"TraceHeader"`
}

type resultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

type putEventsOutput struct {
	FailedEntryCount int           `json:"FailedEntryCount"`
	Entries          []resultEntry `json:"Entries"`
}

// ServeHTTP answers AWSEvents.PutEvents; other operations are refused.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AWSEvents.")
	if op != "PutEvents" {
		awsError(w, "UnknownOperationException", fmt.Sprintf("the local EventBridge serves PutEvents only, not %s", op))
		return
	}
	entries, code, msg := readEntries(r.Body)
	if code != "" {
		awsError(w, code, msg)
		return
	}
	out := putEventsOutput{Entries: make([]resultEntry, len(entries))}
	for i, e := range entries {
		out.Entries[i] = s.put(e)
		if out.Entries[i].ErrorCode != "" {
			out.FailedEntryCount++
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

// readEntries reads a PutEvents request and checks the limits on the call
// as a whole; it returns the AWS error code and message of a refusal.
func readEntries(body io.Reader) (entries []putEventsEntry, code, msg string) {
	raw, err := io.ReadAll(io.LimitReader(body, maxBodyBytes+1))
	switch {
	case err != nil:
		return nil, "SerializationException", "could not read the request"
	case len(raw) > maxBodyBytes:
		return nil, "ValidationException", msgTooLarge
	}
	var in struct {
		Entries []putEventsEntry `json:"Entries"`
	}
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, "SerializationException", "the request is not valid JSON"
	}
	if n := len(in.Entries); n < 1 || n > MaxEntries {
		return nil, "ValidationException", fmt.Sprintf(
			"1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and %d (got %d)", MaxEntries, n)
	}
	size := 0
	for _, e := range in.Entries {
		size += entrySize(e)
	}
	if size > MaxRequestBytes {
		return nil, "ValidationException", msgTooLarge
	}
	return in.Entries, "", ""
}

// entrySize counts an entry's bytes as EventBridge does for its size
// limit: Time (when given) 14, then the UTF-8 bytes of Source, DetailType,
// Detail and each of Resources. EventBusName and TraceHeader do not count.
func entrySize(e putEventsEntry) int {
	n := 0
	if e.Time != nil {
		n += 14
	}
	for _, p := range []*string{e.Source, e.DetailType, e.Detail} {
		if p != nil {
			n += len(*p)
		}
	}
	for _, r := range e.Resources {
		n += len(r)
	}
	return n
}

// put validates one entry as EventBridge does, then hands the event to
// the rules of its bus that match it.
func (s *Service) put(e putEventsEntry) resultEntry {
	if res, ok := validateEntry(e); !ok {
		return res
	}
	bus := "default"
	if e.EventBusName != nil && *e.EventBusName != "" {
		bus = *e.EventBusName
		if i := strings.LastIndex(bus, "event-bus/"); strings.HasPrefix(bus, "arn:") && i >= 0 {
			bus = bus[i+len("event-bus/"):]
		}
	}
	id := newEventID()
	t := time.Now().UTC()
	if e.Time != nil {
		t = time.Unix(int64(*e.Time), 0).UTC()
	}
	resources := e.Resources
	if resources == nil {
		resources = []string{}
	}
	raw, _ := json.Marshal(map[string]any{
		"version": "0", "id": id, "detail-type": *e.DetailType, "source": *e.Source,
		"account": accountID, "time": t.Format(time.RFC3339), "region": region,
		"resources": resources, "detail": json.RawMessage(*e.Detail),
	})
	var event map[string]any
	_ = json.Unmarshal(raw, &event)

	targets, known := s.targets(bus, event)
	if !known {
		// EventBridge refuses the entry, so a bus name copied from another
		// stage (wsgate-prod) is an error the publisher sees.
		s.log.Warn("event for an unknown bus refused", "bus", bus)
		return resultEntry{ErrorCode: "ResourceNotFoundException", ErrorMessage: fmt.Sprintf("Event bus %s does not exist.", bus)}
	}
	s.stats.Accepted.Add(1)
	order := s.accepted.Add(1)
	for _, r := range targets {
		s.dispatch(r, delivery{id: id, event: raw, order: order})
	}
	return resultEntry{EventID: id}
}

// validateEntry checks what EventBridge requires of an entry: a Source, a
// DetailType and a Detail holding a JSON object.
func validateEntry(e putEventsEntry) (resultEntry, bool) {
	invalid := func(field string) (resultEntry, bool) {
		return resultEntry{ErrorCode: "InvalidArgument", ErrorMessage: fmt.Sprintf("Parameter %s is not valid. Reason: %s is a required argument.", field, field)}, false
	}
	switch {
	case e.Source == nil || *e.Source == "":
		return invalid("Source")
	case e.DetailType == nil || *e.DetailType == "":
		return invalid("DetailType")
	case e.Detail == nil || *e.Detail == "":
		return invalid("Detail")
	}
	var detail map[string]json.RawMessage
	if err := json.Unmarshal([]byte(*e.Detail), &detail); err != nil || detail == nil {
		return resultEntry{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."}, false
	}
	return resultEntry{}, true
}

func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// awsError answers a refused call, always a 400 in the JSON 1.1 protocol.
func awsError(w http.ResponseWriter, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

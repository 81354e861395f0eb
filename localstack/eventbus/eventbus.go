// Package eventbus emulates Amazon EventBridge's PutEvents on one machine:
// AWS JSON 1.1 requests with AWS's entry validation and per-entry results,
// buses, rules with event patterns, and asynchronous delivery to Lambda
// targets, retried on Lambda's schedule for asynchronous invocations, as
// EventBridge invokes Lambda.
package eventbus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Target receives matched events (the EventBridge event JSON), like an
// asynchronous Lambda invocation.
type Target func(ctx context.Context, event []byte) error

// Rule forwards matching events on a bus to a target.
type Rule struct {
	Name    string
	Bus     string
	Pattern string
	Target  Target
}

// Options configure the service.
type Options struct {
	Region    string
	AccountID string
	// RetryDelays are the waits before each retry of a delivery whose
	// target failed, one element per retry. nil means Lambda's schedule
	// for an asynchronous invocation, LambdaRetryDelays(1): a retry after
	// 1 minute, another 2 minutes later. Tests shorten it with
	// LambdaRetryDelays(scale); an empty, non-nil slice means no retries.
	RetryDelays []time.Duration
	// MaxEventAge bounds how long after PutEvents an event is still
	// retried (Lambda's MaximumEventAgeInSeconds): a retry that would start
	// later is not made and the event is dead-lettered. 0 means
	// LambdaMaxEventAge, 6 hours.
	MaxEventAge time.Duration
	// Retries and RetryDelay are the older way to give the schedule, used
	// only when RetryDelays is nil and Retries is positive: Retries
	// retries, the first RetryDelay (default 1 s) after the failure, each
	// next one twice as long after the one before. {Retries: 2,
	// RetryDelay: time.Minute} is Lambda's schedule.
	//
	// Deprecated: use RetryDelays.
	Retries    int
	RetryDelay time.Duration
	Log        *slog.Logger
}

// Stats count deliveries.
type Stats struct {
	Accepted, Delivered, Retried, DeadLettered atomic.Int64
}

// Service is the local EventBridge.
type Service struct {
	opts  Options
	log   *slog.Logger
	mu    sync.RWMutex
	buses map[string]bool
	rules []compiledRule
	wg    sync.WaitGroup
	stop  chan struct{}
	once  sync.Once
	stats Stats
	// DeadLetters keeps the events whose every delivery failed.
	dlqMu       sync.Mutex
	deadLetters [][]byte
}

type compiledRule struct {
	Rule
	pattern pattern
}

// New returns a Service with the default bus.
func New(opts Options) *Service {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "000000000000"
	}
	opts.RetryDelays = retryDelays(opts)
	if opts.MaxEventAge <= 0 {
		opts.MaxEventAge = LambdaMaxEventAge
	}
	s := &Service{opts: opts, log: opts.Log, buses: map[string]bool{"default": true}, stop: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Stats returns the delivery counters.
func (s *Service) Stats() *Stats { return &s.stats }

// DeadLetters returns events no delivery attempt succeeded for.
func (s *Service) DeadLetters() [][]byte {
	s.dlqMu.Lock()
	defer s.dlqMu.Unlock()
	return append([][]byte(nil), s.deadLetters...)
}

// CreateBus adds an event bus.
func (s *Service) CreateBus(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buses[name] = true
}

// PutRule adds a rule; the pattern must be a valid event pattern.
func (s *Service) PutRule(r Rule) error {
	p, err := parsePattern(r.Pattern)
	if err != nil {
		return fmt.Errorf("eventbus: rule %s: %w", r.Name, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.buses[r.Bus] {
		return fmt.Errorf("eventbus: rule %s: no bus %q", r.Name, r.Bus)
	}
	s.rules = append(s.rules, compiledRule{Rule: r, pattern: p})
	return nil
}

// Close stops retries and waits for deliveries in flight.
func (s *Service) Close() {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}

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

// ServeHTTP answers AWSEvents.* requests (PutEvents).
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AWSEvents.")
	if op != "PutEvents" {
		awsError(w, http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf("the local EventBridge serves PutEvents only, not %s", op))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	switch {
	case err != nil:
		awsError(w, http.StatusBadRequest, "SerializationException", "could not read the request")
		return
	case len(body) > maxBodyBytes:
		awsError(w, http.StatusBadRequest, "ValidationException", msgTooLarge)
		return
	}
	var in struct {
		Entries []putEventsEntry `json:"Entries"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		awsError(w, http.StatusBadRequest, "SerializationException", "the request is not valid JSON")
		return
	}
	if n := len(in.Entries); n < 1 || n > MaxEntries {
		awsError(w, http.StatusBadRequest, "ValidationException",
			fmt.Sprintf("1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and %d (got %d)", MaxEntries, n))
		return
	}
	size := 0
	for _, e := range in.Entries {
		size += entrySize(e)
	}
	if size > MaxRequestBytes {
		awsError(w, http.StatusBadRequest, "ValidationException", msgTooLarge)
		return
	}
	out := struct {
		FailedEntryCount int           `json:"FailedEntryCount"`
		Entries          []resultEntry `json:"Entries"`
	}{Entries: make([]resultEntry, len(in.Entries))}
	for i, e := range in.Entries {
		res := s.put(e)
		if res.ErrorCode != "" {
			out.FailedEntryCount++
		}
		out.Entries[i] = res
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(out)
}

const msgTooLarge = "Total size of the entries in the request is over the limit."

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

func (s *Service) put(e putEventsEntry) resultEntry {
	invalid := func(field string) resultEntry {
		return resultEntry{ErrorCode: "InvalidArgument", ErrorMessage: fmt.Sprintf("Parameter %s is not valid. Reason: %s is a required argument.", field, field)}
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
		return resultEntry{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."}
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
	event := map[string]any{
		"version": "0", "id": id, "detail-type": *e.DetailType, "source": *e.Source,
		"account": s.opts.AccountID, "time": t.Format(time.RFC3339), "region": s.opts.Region,
		"resources": nonNil(e.Resources), "detail": json.RawMessage(*e.Detail),
	}
	raw, _ := json.Marshal(event)
	var asMap map[string]any
	_ = json.Unmarshal(raw, &asMap)

	s.mu.RLock()
	known := s.buses[bus]
	var targets []compiledRule
	for _, r := range s.rules {
		if r.Bus == bus && r.pattern.match(asMap) {
			targets = append(targets, r)
		}
	}
	s.mu.RUnlock()
	s.stats.Accepted.Add(1)
	if !known {
		// AWS accepts events for a bus that does not exist and drops them;
		// say so here, where it is easy to spot.
		s.log.Warn("event for an unknown bus dropped", "bus", bus, "event_id", id)
	}
	for _, r := range targets {
		s.deliver(r, id, raw)
	}
	return resultEntry{EventID: id}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func awsError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

// pattern is a compiled event pattern: for each field, the accepted values,
// or a nested pattern.
type pattern map[string]any

func parsePattern(s string) (pattern, error) {
	var p map[string]any
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, fmt.Errorf("event pattern is not a JSON object: %w", err)
	}
	if err := checkPattern(p); err != nil {
		return nil, err
	}
	return p, nil
}

func checkPattern(p map[string]any) error {
	for k, v := range p {
		switch x := v.(type) {
		case map[string]any:
			if err := checkPattern(x); err != nil {
				return err
			}
		case []any:
			for _, m := range x {
				if obj, ok := m.(map[string]any); ok {
					if len(obj) != 1 {
						return fmt.Errorf("field %s: a matcher object has one key", k)
					}
					for op := range obj {
						switch op {
						case "exists", "prefix", "suffix", "anything-but", "equals-ignore-case":
						default:
							return fmt.Errorf("field %s: the local EventBridge does not support %q", k, op)
						}
					}
				}
			}
		default:
			return fmt.Errorf("field %s: pattern values are lists or objects", k)
		}
	}
	return nil
}

// match reports whether an event (decoded JSON) matches the pattern.
func (p pattern) match(event map[string]any) bool {
	for k, want := range p {
		v, present := event[k]
		switch w := want.(type) {
		case map[string]any:
			obj, ok := v.(map[string]any)
			if !ok || !pattern(w).match(obj) {
				return false
			}
		case []any:
			if !matchAny(w, v, present) {
				return false
			}
		}
	}
	return true
}

func matchAny(matchers []any, v any, present bool) bool {
	values := []any{v}
	if list, ok := v.([]any); ok {
		values = list
	}
	for _, m := range matchers {
		if obj, ok := m.(map[string]any); ok {
			if ex, ok := obj["exists"].(bool); ok {
				if ex == present {
					return true
				}
				continue
			}
		}
		if !present {
			continue
		}
		for _, val := range values {
			if matchOne(m, val) {
				return true
			}
		}
	}
	return false
}

func matchOne(m, v any) bool {
	obj, ok := m.(map[string]any)
	if !ok {
		return fmt.Sprint(m) == fmt.Sprint(v)
	}
	s, isStr := v.(string)
	for op, arg := range obj {
		switch op {
		case "prefix":
			return isStr && strings.HasPrefix(s, fmt.Sprint(arg))
		case "suffix":
			return isStr && strings.HasSuffix(s, fmt.Sprint(arg))
		case "equals-ignore-case":
			return isStr && strings.EqualFold(s, fmt.Sprint(arg))
		case "anything-but":
			if list, ok := arg.([]any); ok {
				for _, a := range list {
					if fmt.Sprint(a) == fmt.Sprint(v) {
						return false
					}
				}
				return true
			}
			return fmt.Sprint(arg) != fmt.Sprint(v)
		}
	}
	return false
}

package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/wsgate/wsgate/shared/backoff"
)

// How Publish groups entries into PutEvents calls: at most 10 entries, and
// at most 256 KB together, which every region has taken; an entry larger
// than that (up to MaxDetailBytes of detail) goes alone in its call, as
// EventBridge takes 1 MB a call since January 2026.
const (
	MaxEntriesPerCall = 10
	MaxBytesPerCall   = 256 * 1024
)

// Defaults for the EventBridge envelope. The stack's rule matches any event
// with detail.topic, whatever its source and detail-type.
const (
	DefaultSource     = "wsgate.publisher"
	DefaultDetailType = "wsgate.event"
)

// RulePattern is the EventBridge event pattern of the stack's rule: every
// event whose detail has a topic, whatever its source and detail-type. The
// CDK stack and the local gateway both use it.
const RulePattern = `{"detail":{"topic":[{"exists":true}]}}`

// BusName is the stack's event bus for a stage.
func BusName(stage string) string { return "wsgate-" + stage }

// PutEventsAPI is the part of the EventBridge client Publish needs.
type PutEventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

// Publisher sends wsgate events to the stack's bus.
type Publisher struct {
	Client     PutEventsAPI
	Bus        string
	Source     string
	DetailType string
	// Attempts bounds how often entries that EventBridge rejected with a
	// retryable code are sent again (default 3).
	Attempts int
	// Retry is the wait before sending them again (zero: from 100 ms
	// doubling to 2 s, fully jittered).
	Retry backoff.Policy
}

// defaultRetry paces the resending of throttled entries: jittered, so
// publishers throttled together do not come back together.
var defaultRetry = backoff.Policy{Base: 100 * time.Millisecond, Max: 2 * time.Second}

// EntryError is one event EventBridge did not accept.
type EntryError struct {
	Index   int
	Code    string
	Message string
}

// PublishError lists the events that were not published; the others were.
type PublishError struct {
	Failed []EntryError
}

func (e *PublishError) Error() string {
	parts := make([]string, 0, len(e.Failed))
	for _, f := range e.Failed {
		parts = append(parts, fmt.Sprintf("#%d %s: %s", f.Index, f.Code, f.Message))
	}
	return "publish: " + strings.Join(parts, "; ")
}

// Publish validates every detail, as the gateway will (one over
// MaxDetailBytes is refused with ErrTooLarge and nothing is sent), then
// sends them in calls of at most 10 entries and 256 KB (a larger entry
// alone), retrying entries EventBridge throttled. It returns the
// EventBridge event ids in the order of details ("" for a failed one).
func (p Publisher) Publish(ctx context.Context, details ...Detail) ([]string, error) {
	src, dt := p.Source, p.DetailType
	if src == "" {
		src = DefaultSource
	}
	if dt == "" {
		dt = DefaultDetailType
	}
	entries := make([]types.PutEventsRequestEntry, len(details))
	sizes := make([]int, len(details))
	now := time.Now().UTC()
	for i, d := range details {
		if d.PublishedAt == nil {
			d.PublishedAt = &now
		}
		b, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("publish #%d: %w", i, err)
		}
		if _, err := Parse("local-check", time.Now(), b, false); err != nil {
			return nil, fmt.Errorf("publish #%d: %w", i, err)
		}
		entries[i] = types.PutEventsRequestEntry{
			EventBusName: aws.String(p.Bus), Source: aws.String(src),
			DetailType: aws.String(dt), Detail: aws.String(string(b)),
		}
		// EventBridge counts source, detail-type and detail bytes.
		sizes[i] = len(src) + len(dt) + len(b)
	}
	ids := make([]string, len(details))
	var failed []EntryError
	for start := 0; start < len(entries); {
		end, size := start, 0
		for end < len(entries) && end-start < MaxEntriesPerCall && (end == start || size+sizes[end] <= MaxBytesPerCall) {
			size += sizes[end]
			end++
		}
		f, err := p.send(ctx, entries[start:end], start, ids)
		if err != nil {
			return ids, err
		}
		failed = append(failed, f...)
		start = end
	}
	if len(failed) > 0 {
		return ids, &PublishError{Failed: failed}
	}
	return ids, nil
}

func (p Publisher) send(ctx context.Context, batch []types.PutEventsRequestEntry, offset int, ids []string) ([]EntryError, error) {
	attempts := p.Attempts
	if attempts <= 0 {
		attempts = 3
	}
	policy := p.Retry
	if policy == (backoff.Policy{}) {
		policy = defaultRetry
	}
	pending := make([]int, len(batch))
	for i := range pending {
		pending[i] = i
	}
	var failed []EntryError
	for attempt := 1; len(pending) > 0; attempt++ {
		in := &eventbridge.PutEventsInput{Entries: make([]types.PutEventsRequestEntry, len(pending))}
		for i, idx := range pending {
			in.Entries[i] = batch[idx]
		}
		out, err := p.Client.PutEvents(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		if len(out.Entries) != len(pending) {
			return nil, errors.New("publish: EventBridge answered a different number of entries")
		}
		var retry []int
		for i, res := range out.Entries {
			idx := pending[i]
			if res.EventId != nil && res.ErrorCode == nil {
				ids[offset+idx] = *res.EventId
				continue
			}
			code, msg := aws.ToString(res.ErrorCode), aws.ToString(res.ErrorMessage)
			if retryable(code) && attempt < attempts {
				retry = append(retry, idx)
				continue
			}
			failed = append(failed, EntryError{Index: offset + idx, Code: code, Message: msg})
		}
		if len(retry) > 0 {
			if err := policy.Wait(ctx, attempt-1); err != nil {
				return nil, err
			}
		}
		pending = retry
	}
	return failed, nil
}

func retryable(code string) bool {
	switch code {
	case "ThrottlingException", "InternalException", "InternalFailure", "ServiceUnavailable":
		return true
	}
	return false
}

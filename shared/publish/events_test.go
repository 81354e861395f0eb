package publish

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/backoff"
)

func TestParse_Valid(t *testing.T) {
	d := `{"topic":"telemetry.1","payload":{"type":"telemetry_update","telemetry":{"temperature":{"value":1}}},
	  "attributes":{"device_id":1,"metrics":["temperature"]},"project":{"metrics":"telemetry"},
	  "audience":{"orgs":["acme"]},"state":[{"a":1},{"b":2}],"history":true}`
	ev, err := Parse("e1", time.Unix(1, 0), []byte(d), false)
	require.NoError(t, err)
	assert.Equal(t, "telemetry.1", ev.Topic.String())
	assert.JSONEq(t, `{"type":"telemetry_update","telemetry":{"temperature":{"value":1}}}`, string(ev.Payload))
	assert.False(t, ev.Binary)
	assert.Equal(t, []string{"1"}, ev.Attributes["device_id"])
	assert.Equal(t, &auth.Audience{Orgs: []string{"acme"}}, ev.Audience)
	assert.True(t, ev.ReplaceState)
	assert.Len(t, ev.State, 2)
	assert.True(t, ev.History)

	bin, err := Parse("e2", time.Now(), []byte(`{"topic":"a","payload_base64":"AAEC/w=="}`), true)
	require.NoError(t, err)
	assert.Equal(t, []byte{0, 1, 2, 255}, bin.Payload)
	assert.True(t, bin.Binary)
	assert.True(t, bin.History, "the configured default applies")

	stateOnly, err := Parse("e3", time.Now(), []byte(`{"topic":"a","state":[]}`), false)
	require.NoError(t, err)
	assert.False(t, stateOnly.HasPayload)
	assert.True(t, stateOnly.ReplaceState, "an empty list clears the state")
}

func TestParse_PublishedAtGivesTheEnvelopeMillisecondsUnlessFarOff(t *testing.T) {
	ebTime := time.Date(2026, 11, 23, 6, 45, 24, 0, time.UTC) // EventBridge: whole seconds
	ev, err := Parse("e", ebTime, []byte(`{"topic":"a.b","payload":{},"published_at":"2026-11-23T06:45:24.789Z"}`), false)
	require.NoError(t, err)
	assert.Equal(t, ebTime.Add(789*time.Millisecond), ev.Time)
	ev, err = Parse("e", ebTime, []byte(`{"topic":"a.b","payload":{},"published_at":"2026-11-23T07:45:24Z"}`), false)
	require.NoError(t, err)
	assert.Equal(t, ebTime, ev.Time, "a publisher clock an hour off is not believed")
	_, err = Parse("e", ebTime, []byte(`{"topic":"a.b","payload":{},"published_at":"yesterday"}`), false)
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestParse_RefusesBadEvents(t *testing.T) {
	big := strings.Repeat("x", MaxFrameBytes)
	cases := []struct {
		name, detail string
		tooLarge     bool
	}{
		{"not JSON", `{`, false},
		{"no topic", `{"payload":1}`, false},
		{"wildcard topic", `{"topic":"a.*","payload":1}`, false},
		{"no payload nor state", `{"topic":"a"}`, false},
		{"both payloads", `{"topic":"a","payload":1,"payload_base64":"AA=="}`, false},
		{"bad base64", `{"topic":"a","payload_base64":"!!"}`, false},
		{"misspelt field is refused, not ignored", `{"topic":"a","payload":1,"audiance":{"orgs":["x"]}}`, false},
		{"empty audience", `{"topic":"a","payload":1,"audience":{}}`, false},
		{"nested attribute", `{"topic":"a","payload":1,"attributes":{"x":{"y":1}}}`, false},
		{"state not a list", `{"topic":"a","state":{"x":1}}`, false},
		{"project on binary", `{"topic":"a","payload_base64":"AA==","project":{"m":"t"}}`, false},
		{"project empty field", `{"topic":"a","payload":{},"project":{"m":""}}`, false},
		{"payload over 128 KB", `{"topic":"a","payload":"` + big + `"}`, true},
		{"payload that only the envelope pushes over", `{"topic":"a","payload":"` + big[:MaxFrameBytes-40] + `"}`, true},
		{"binary over the envelope limit", `{"topic":"a","payload_base64":"` + base64.StdEncoding.EncodeToString([]byte(big[:100*1024])) + `"}`, true},
		{"state too large", `{"topic":"a","state":[` + strings.TrimSuffix(strings.Repeat(`"`+big[:100*1024]+`",`, 4), ",") + `]}`, true},
		{"trailing data", `{"topic":"a","payload":1} {}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("e", time.Now(), []byte(c.detail), false)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Equal(t, c.tooLarge, errors.Is(err, ErrTooLarge))
		})
	}
}

type fakeBus struct {
	calls    [][]types.PutEventsRequestEntry
	throttle map[string]int // detail substring -> times to throttle
	reject   string
}

func (f *fakeBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	f.calls = append(f.calls, in.Entries)
	out := &eventbridge.PutEventsOutput{}
	for i, e := range in.Entries {
		d := aws.ToString(e.Detail)
		switch {
		case f.reject != "" && strings.Contains(d, f.reject):
			out.Entries = append(out.Entries, types.PutEventsResultEntry{ErrorCode: aws.String("ValidationException"), ErrorMessage: aws.String("nope")})
			out.FailedEntryCount++
		case throttled(f.throttle, d):
			out.Entries = append(out.Entries, types.PutEventsResultEntry{ErrorCode: aws.String("ThrottlingException"), ErrorMessage: aws.String("slow down")})
			out.FailedEntryCount++
		default:
			out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String(fmt.Sprintf("id-%d-%d", len(f.calls), i))})
		}
	}
	return out, nil
}

func throttled(m map[string]int, d string) bool {
	for k, n := range m {
		if strings.Contains(d, k) && n > 0 {
			m[k] = n - 1
			return true
		}
	}
	return false
}

func TestPublish_BatchesByCountAndSize(t *testing.T) {
	bus := &fakeBus{}
	p := Publisher{Client: bus, Bus: "wsgate-local"}
	var ds []Detail
	for i := range 23 {
		ds = append(ds, Detail{Topic: fmt.Sprintf("t.%d", i), Payload: json.RawMessage(`{}`)})
	}
	ids, err := p.Publish(context.Background(), ds...)
	require.NoError(t, err)
	assert.Len(t, ids, 23)
	require.Len(t, bus.calls, 3)
	assert.Len(t, bus.calls[0], 10)
	assert.Equal(t, "wsgate-local", aws.ToString(bus.calls[0][0].EventBusName))
	assert.Equal(t, DefaultSource, aws.ToString(bus.calls[0][0].Source))

	bus = &fakeBus{}
	p.Client = bus
	payload := json.RawMessage(`"` + strings.Repeat("x", 100*1024) + `"`)
	_, err = p.Publish(context.Background(), Detail{Topic: "a", Payload: payload}, Detail{Topic: "b", Payload: payload}, Detail{Topic: "c", Payload: payload})
	require.NoError(t, err)
	assert.Len(t, bus.calls, 2, "two 100 KB entries fill a 256 KB call")
}

func TestPublish_RetriesThrottledEntriesAndReportsFailures(t *testing.T) {
	bus := &fakeBus{throttle: map[string]int{`"slow"`: 1}, reject: `"bad"`}
	p := Publisher{Client: bus, Bus: "b"}
	ids, err := p.Publish(context.Background(),
		Detail{Topic: "ok", Payload: json.RawMessage(`1`)},
		Detail{Topic: "slow", Payload: json.RawMessage(`1`)},
		Detail{Topic: "bad", Payload: json.RawMessage(`1`)},
	)
	var pe *PublishError
	require.ErrorAs(t, err, &pe)
	require.Len(t, pe.Failed, 1)
	assert.Equal(t, 2, pe.Failed[0].Index)
	assert.Equal(t, "ValidationException", pe.Failed[0].Code)
	assert.NotEmpty(t, ids[0])
	assert.NotEmpty(t, ids[1], "the throttled entry went through on retry")
	assert.Empty(t, ids[2])
	assert.Len(t, bus.calls, 2)
}

func TestPublish_ValidatesBeforeSending(t *testing.T) {
	bus := &fakeBus{}
	_, err := Publisher{Client: bus, Bus: "b"}.Publish(context.Background(), Detail{Topic: "a.*", Payload: json.RawMessage(`1`)})
	require.ErrorIs(t, err, ErrInvalid)
	assert.Empty(t, bus.calls)
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"topic":"a.b","payload":{"x":1},"attributes":{"k":[1,2]},"audience":{"orgs":["o"]}}`,
		`{"topic":"a","payload_base64":"AAE=","history":true}`,
		`{"topic":"a","state":[{"x":1}],"project":{"m":"t"},"payload":{"t":{"m":1}}}`,
		`{}`, `[]`, `null`,
		`{"topic":"a","payload":1,"audience":{"orgs":["o"]},"AUDIENCE":null}`,
		`{"topic":"a","payload":1,"audience":null}`,
		`{"topic":"a","payload":1,"audience":{"subs":["device:42"]},"audience":{"orgs":["o"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Parse("id", time.Unix(0, 0), b, false)
		if err != nil {
			return
		}
		if ev.Topic.IsZero() || ev.Topic.HasWildcard() {
			t.Fatal("accepted an event without a concrete topic")
		}
		if !ev.HasPayload && !ev.ReplaceState {
			t.Fatal("accepted an event that does nothing")
		}
		if len(ev.Payload) > MaxFrameBytes {
			t.Fatal("accepted an oversize payload")
		}
		if ev.Audience != nil && ev.Audience.Empty() {
			t.Fatal("accepted an empty audience")
		}
		// Whatever spells "audience" must be the one audience delivered by:
		// a null, duplicated or case-variant key must never widen it.
		var top map[string]json.RawMessage
		if json.Unmarshal(b, &top) != nil {
			t.Fatal("accepted a detail that is not an object")
		}
		for k := range top {
			if strings.EqualFold(k, "audience") && (k != "audience" || ev.Audience == nil) {
				t.Fatalf("accepted audience key %q but delivers to %v", k, ev.Audience)
			}
		}
	})
}

// Throttled entries are resent after the one jittered backoff, as the
// Publisher's policy says, not after a fixed attempt²·100ms of its own
// (which made five retries take 5.5 s, and every throttled publisher come
// back at the same instant).
func TestPublish_ThrottledEntriesWaitTheBackoffPolicy(t *testing.T) {
	bus := &fakeBus{throttle: map[string]int{`"slow"`: 5}}
	p := Publisher{Client: bus, Bus: "b", Attempts: 6, Retry: backoff.Policy{Base: time.Millisecond, Max: 4 * time.Millisecond}}
	start := time.Now()
	ids, err := p.Publish(context.Background(), Detail{Topic: "slow", Payload: json.RawMessage(`1`)})
	require.NoError(t, err)
	assert.NotEmpty(t, ids[0])
	assert.Len(t, bus.calls, 6)
	assert.Less(t, time.Since(start), time.Second, "five retries of at most 5 ms each")
}

func TestParseRevocation_LiftTakesNoUntil(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r, err := ParseRevocation([]byte(`{"principal":"user:42","lift":true}`), now, time.Hour)
	require.NoError(t, err)
	assert.True(t, r.Lift)
	assert.True(t, r.Until.IsZero(), "a lift is not a new ban")
	_, err = ParseRevocation([]byte(`{"principal":"user:42","lift":true,"until":"2026-02-01T00:00:00Z"}`), now, time.Hour)
	assert.ErrorIs(t, err, ErrInvalid)
}

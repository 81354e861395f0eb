package eventbus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireAPIError asserts err is the AWS error code.
func requireAPIError(t *testing.T, err error, code string) {
	t.Helper()
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, code, apiErr.ErrorCode())
}

// detailOf returns a JSON object detail of exactly n bytes (n >= 8).
func detailOf(n int) string {
	return `{"x":"` + strings.Repeat("a", n-8) + `"}`
}

func TestPutEvents_AtMostTenEntriesPerCall(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := client(t, s)
	entries := func(n int) []types.PutEventsRequestEntry {
		out := make([]types.PutEventsRequestEntry, n)
		for i := range out {
			out[i] = entry("default", `{"n":1}`)
		}
		return out
	}

	out, err := c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: entries(MaxEntries)})
	require.NoError(t, err)
	assert.Zero(t, out.FailedEntryCount)
	assert.Len(t, out.Entries, MaxEntries)

	_, err = c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: entries(MaxEntries + 1)})
	requireAPIError(t, err, "ValidationException")
	assert.ErrorContains(t, err, "length between 1 and 10")
	assert.Equal(t, int64(MaxEntries), s.Stats().Accepted.Load(), "a refused call accepts none of its entries")
}

func TestPutEvents_SizeLimitCountsEntriesAsEventBridgeDoes(t *testing.T) {
	const src, dt = "src", "dt" // 5 bytes counted in every entry
	tests := []struct {
		name string
		// entries builds the call's entries; their sizes add up to
		// MaxRequestBytes+extra.
		entries func(extra int) []types.PutEventsRequestEntry
	}{
		{
			name: "one entry: source, detail-type and detail",
			entries: func(extra int) []types.PutEventsRequestEntry {
				return []types.PutEventsRequestEntry{{Source: aws.String(src), DetailType: aws.String(dt), Detail: aws.String(detailOf(MaxRequestBytes - 5 + extra))}}
			},
		},
		{
			name: "time counts 14 bytes, resources their bytes, the bus name nothing",
			entries: func(extra int) []types.PutEventsRequestEntry {
				return []types.PutEventsRequestEntry{{
					Source: aws.String(src), DetailType: aws.String(dt), Time: aws.Time(time.Now()),
					Resources:    []string{"arn:a", "arn:bc"},
					EventBusName: aws.String("default"),
					Detail:       aws.String(detailOf(MaxRequestBytes - 5 - 14 - 11 + extra)),
				}}
			},
		},
		{
			name: "UTF-8 bytes, not characters",
			entries: func(extra int) []types.PutEventsRequestEntry {
				detail := `{"x":"` + strings.Repeat("é", 1000) + strings.Repeat("a", MaxRequestBytes-5-8-2000+extra) + `"}`
				return []types.PutEventsRequestEntry{{Source: aws.String(src), DetailType: aws.String(dt), Detail: aws.String(detail)}}
			},
		},
		{
			name: "the limit is on all the entries of a call together",
			entries: func(extra int) []types.PutEventsRequestEntry {
				var out []types.PutEventsRequestEntry
				for i := range 4 {
					n := MaxRequestBytes/4 - 5
					if i == 3 {
						n += extra
					}
					out = append(out, types.PutEventsRequestEntry{Source: aws.String(src), DetailType: aws.String(dt), Detail: aws.String(detailOf(n))})
				}
				return out
			},
		},
	}
	s := New(Options{})
	defer s.Close()
	c := client(t, s)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total := 0
			for _, e := range tt.entries(0) {
				total += entrySize(putEventsEntry{Source: e.Source, DetailType: e.DetailType, Detail: e.Detail, Resources: e.Resources, Time: timeOf(e.Time)})
			}
			require.Equal(t, MaxRequestBytes, total, "the test's own arithmetic")

			out, err := c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: tt.entries(0)})
			require.NoError(t, err, "exactly the limit is accepted")
			assert.Zero(t, out.FailedEntryCount)

			_, err = c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: tt.entries(1)})
			requireAPIError(t, err, "ValidationException")
		})
	}
}

func timeOf(t *time.Time) *float64 {
	if t == nil {
		return nil
	}
	f := float64(t.Unix())
	return &f
}

func TestPutEvents_BodyTooLongToHoldEntriesWithinTheLimitIsValidationException(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	// Every byte escaped as \u0001: six bytes on the wire for one counted.
	detail := `{"x":"` + strings.Repeat("\x01", MaxRequestBytes+1<<19) + `"}`

	_, err := client(t, s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry("default", detail)}})

	requireAPIError(t, err, "ValidationException")
}

func TestLambdaRetryDelays_AreLambdasScheduleScaled(t *testing.T) {
	tests := []struct {
		scale float64
		want  []time.Duration
	}{
		{scale: 1, want: []time.Duration{time.Minute, 2 * time.Minute}},
		{scale: 0.01, want: []time.Duration{600 * time.Millisecond, 1200 * time.Millisecond}},
		{scale: 0, want: []time.Duration{time.Minute, 2 * time.Minute}},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, LambdaRetryDelays(tt.scale), "scale %v", tt.scale)
	}
}

func TestNew_RetryScheduleFromOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want []time.Duration
	}{
		{name: "default is Lambda's", opts: Options{}, want: []time.Duration{time.Minute, 2 * time.Minute}},
		{name: "explicit delays", opts: Options{RetryDelays: []time.Duration{time.Second}}, want: []time.Duration{time.Second}},
		{name: "empty delays: no retries", opts: Options{RetryDelays: []time.Duration{}}, want: []time.Duration{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.opts)
			defer s.Close()
			assert.Equal(t, tt.want, s.retryDelays)
			assert.Equal(t, LambdaMaxEventAge, s.maxEventAge)
		})
	}
}

// failing is a target that always fails and records when it was called.
type failing struct {
	calls chan time.Time
}

func (f failing) target(context.Context, []byte) error {
	f.calls <- time.Now()
	return errors.New("function error")
}

func TestDelivery_RetriesAfterEachDelayOfTheSchedule(t *testing.T) {
	delays := LambdaRetryDelays(0.002) // 120 ms, then 240 ms
	s := New(Options{RetryDelays: delays})
	defer s.Close()
	f := failing{calls: make(chan time.Time, 10)}
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: f.target}))

	_, err := client(t, s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry("default", `{}`)}})
	require.NoError(t, err)

	require.Eventually(t, func() bool { return s.Stats().DeadLettered.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
	require.Len(t, f.calls, 3, "the first attempt and two retries")
	first, second, third := <-f.calls, <-f.calls, <-f.calls
	assert.GreaterOrEqual(t, second.Sub(first), delays[0])
	assert.GreaterOrEqual(t, third.Sub(second), delays[1])
	assert.Equal(t, int64(2), s.Stats().Retried.Load())
}

func TestDelivery_EventTooOldIsNotRetried(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		wantCalls int
	}{
		{name: "retry due after the max age", opts: Options{RetryDelays: []time.Duration{50 * time.Millisecond}, MaxEventAge: 20 * time.Millisecond}, wantCalls: 1},
		{name: "retry due within the max age", opts: Options{RetryDelays: []time.Duration{10 * time.Millisecond}, MaxEventAge: time.Hour}, wantCalls: 2},
		{name: "no retries asked for", opts: Options{RetryDelays: []time.Duration{}}, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.opts)
			defer s.Close()
			f := failing{calls: make(chan time.Time, 10)}
			require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: f.target}))

			_, err := client(t, s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry("default", `{}`)}})
			require.NoError(t, err)

			require.Eventually(t, func() bool { return s.Stats().DeadLettered.Load() == 1 }, 5*time.Second, 5*time.Millisecond)
			assert.Len(t, f.calls, tt.wantCalls)
		})
	}
}

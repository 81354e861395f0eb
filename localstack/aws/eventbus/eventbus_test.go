package eventbus

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/eventpattern"
	"github.com/wsgate/wsgate/shared/publish"
)

func client(t *testing.T, s *Service) *eventbridge.Client {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return eventbridge.New(eventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""), RetryMaxAttempts: 1})
}

func entry(bus, detail string) types.PutEventsRequestEntry {
	return types.PutEventsRequestEntry{EventBusName: aws.String(bus), Source: aws.String("src"), DetailType: aws.String("dt"), Detail: aws.String(detail)}
}

type recorder struct {
	mu     sync.Mutex
	events []map[string]any
}

func (r *recorder) target(_ context.Context, ev []byte) error {
	var m map[string]any
	if err := json.Unmarshal(ev, &m); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, m)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func TestPutEvents_RuleDeliversMatchingEventsAsEventBridgeEvents(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	s.CreateBus("wsgate-local")
	rec := &recorder{}
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "wsgate-local", Pattern: publish.RulePattern, Target: rec.target}))
	out, err := client(t, s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{
		entry("wsgate-local", `{"topic":"a.b","payload":1}`),
		entry("wsgate-local", `{"no_topic":true}`),
		entry("arn:aws:events:us-east-1:000000000000:event-bus/wsgate-local", `{"topic":"by.arn"}`),
		entry("default", `{"topic":"other.bus"}`),
	}})
	require.NoError(t, err)
	assert.Zero(t, out.FailedEntryCount)
	require.Eventually(t, func() bool { return rec.count() == 2 }, 5*time.Second, 10*time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var ev map[string]any
	for _, e := range rec.events {
		if e["detail"].(map[string]any)["topic"] == "a.b" {
			ev = e
		}
	}
	require.NotNil(t, ev)
	assert.Equal(t, "dt", ev["detail-type"])
	assert.Equal(t, "src", ev["source"])
	assert.Equal(t, "0", ev["version"])
	assert.Equal(t, aws.ToString(out.Entries[0].EventId), ev["id"])
	assert.NotEmpty(t, ev["time"])
	assert.Equal(t, map[string]any{"topic": "a.b", "payload": 1.0}, ev["detail"])
}

func TestPutEvents_EntryValidation(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	c := client(t, s)
	out, err := c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{
		{Source: aws.String("s"), DetailType: aws.String("d")},
		{DetailType: aws.String("d"), Detail: aws.String(`{}`)},
		{Source: aws.String("s"), DetailType: aws.String("d"), Detail: aws.String(`[1]`)},
		{Source: aws.String("s"), DetailType: aws.String("d"), Detail: aws.String(`{"ok":1}`)},
	}})
	require.NoError(t, err)
	assert.Equal(t, int32(3), out.FailedEntryCount)
	assert.Equal(t, "InvalidArgument", aws.ToString(out.Entries[0].ErrorCode))
	assert.Equal(t, "InvalidArgument", aws.ToString(out.Entries[1].ErrorCode))
	assert.Equal(t, "MalformedDetail", aws.ToString(out.Entries[2].ErrorCode))
	assert.NotEmpty(t, aws.ToString(out.Entries[3].EventId))

	_, err = c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{}})
	assert.Error(t, err)
}

func TestDelivery_RetriesThenDeadLetters(t *testing.T) {
	s := New(Options{RetryDelays: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}})
	defer s.Close()
	var calls atomic.Int32
	require.NoError(t, s.PutRule(Rule{Name: "flaky", Bus: "default", Pattern: `{"source":["src"]}`, Target: func(context.Context, []byte) error {
		if calls.Add(1) < 3 {
			return errors.New("boom")
		}
		return nil
	}}))
	require.NoError(t, s.PutRule(Rule{Name: "broken", Bus: "default", Pattern: `{"detail-type":["broken.thing"]}`, Target: func(context.Context, []byte) error {
		return errors.New("always")
	}}))
	c := client(t, s)
	_, err := c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry("default", `{}`)}})
	require.NoError(t, err)
	_, err = c.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{{Source: aws.String("x"), DetailType: aws.String("broken.thing"), Detail: aws.String(`{}`)}}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().Delivered.Load() == 1 && s.Stats().DeadLettered.Load() == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, int32(3), calls.Load(), "two retries")
	assert.Equal(t, int64(4), s.Stats().Retried.Load(), "two for each rule")
}

// A rule whose pattern the local bus cannot evaluate is refused, not
// matched wrongly (package eventpattern).
func TestPutRule_UnsupportedPatternIsRefused(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	err := s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":[{"suffix":".b"}]}`, Target: (&recorder{}).target})
	assert.ErrorIs(t, err, eventpattern.ErrUnsupported)
}

func TestServeHTTP_OperationsOtherThanPutEventsAreRefused(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	_, err := client(t, s).PutRule(context.Background(), &eventbridge.PutRuleInput{Name: aws.String("r"), EventPattern: aws.String(`{"source":["a"]}`)})
	requireAPIError(t, err, "UnknownOperationException")
}

func TestClose_EndsTheWaitBeforeARetry(t *testing.T) {
	s := New(Options{RetryDelays: []time.Duration{time.Hour}})
	f := failing{calls: make(chan time.Time, 10)}
	require.NoError(t, s.PutRule(Rule{Name: "r", Bus: "default", Pattern: `{"source":["src"]}`, Target: f.target}))
	_, err := client(t, s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{entry("default", `{}`)}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.Stats().Retried.Load() == 1 }, 5*time.Second, 5*time.Millisecond)

	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the retry an hour away")
	}
	assert.Len(t, f.calls, 1, "no retry after Close")
}

func TestPutEvents_UnknownBusIsResourceNotFound(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	s.CreateBus("wsgate-local")
	out, err := client(t, s).PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []types.PutEventsRequestEntry{
		entry("wsgate-prod", `{"topic":"a.b"}`),
		entry("arn:aws:events:us-east-1:000000000000:event-bus/wsgate-prod", `{"topic":"a.b"}`),
		entry("wsgate-local", `{"topic":"a.b"}`),
	}})
	require.NoError(t, err)
	assert.EqualValues(t, 2, out.FailedEntryCount)
	for _, e := range out.Entries[:2] {
		assert.Equal(t, "ResourceNotFoundException", aws.ToString(e.ErrorCode))
		assert.Equal(t, "Event bus wsgate-prod does not exist.", aws.ToString(e.ErrorMessage))
		assert.Empty(t, aws.ToString(e.EventId))
	}
	assert.NotEmpty(t, aws.ToString(out.Entries[2].EventId))
	assert.EqualValues(t, 1, s.Stats().Accepted.Load())
}

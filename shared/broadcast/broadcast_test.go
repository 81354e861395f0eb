package broadcast_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/topic"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var reader = auth.Grant{Sub: "u1", Orgs: []string{"acme"}, Topics: []string{"telemetry.>", "alerts.>"}}

func TestBroadcast_DeliversRawAndEnvelope(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("raw", h.Token(reader), nil)
	h.MustConnect("env", h.Token(reader), map[string]string{"envelope": "1"})
	h.Send("raw", `{"type":"subscribe","topic":"telemetry.1"}`)
	h.Send("env", `{"type":"subscribe","topic":"telemetry.*"}`)

	require.NoError(t, h.Publish("e1", `{"topic":"telemetry.1","payload":{"type":"telemetry_update","device_id":1}}`))
	require.Equal(t, []string{`{"type":"telemetry_update","device_id":1}`}, h.Received("raw"), "the payload exactly as published")
	env := h.Received("env")
	require.Len(t, env, 1)
	var e map[string]any
	require.NoError(t, json.Unmarshal([]byte(env[0]), &e))
	assert.Equal(t, "event", e["type"])
	assert.Equal(t, "telemetry.1", e["topic"])
	assert.Equal(t, 1.0, e["seq"])
	assert.Equal(t, "e1", e["id"])
	assert.Equal(t, map[string]any{"type": "telemetry_update", "device_id": 1.0}, e["data"])
	assert.Equal(t, 2.0, h.Metrics.Last("Delivered"))
}

func TestBroadcast_RedeliveredEventIsNotDeliveredTwice(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c", h.Token(reader), map[string]string{"envelope": "1"})
	h.Send("c", `{"type":"subscribe","topic":"telemetry.1"}`)
	for range 3 {
		require.NoError(t, h.Publish("same-id", `{"topic":"telemetry.1","payload":{"n":1},"history":true}`))
	}
	require.NoError(t, h.Publish("next-id", `{"topic":"telemetry.1","payload":{"n":2},"history":true}`))
	got := h.Received("c")
	require.Len(t, got, 2, "delivered once")
	assert.Contains(t, got[0], `"seq":1`)
	// A client that resumes across the numbers the redeliveries drew is told
	// it missed nothing.
	resumed := h.Send("c", `{"type":"resume","topic":"telemetry.1","since":1}`)
	require.Len(t, resumed, 2)
	assert.Contains(t, resumed[0], `"data":{"n":2}`, "only the next event is replayed")
	assert.Contains(t, resumed[1], `"type":"resumed"`)
	assert.Equal(t, 0.0, h.Metrics.Last("Duplicate"), "the last line is the new event's")
}

// EventBridge delivers at least once: a redelivery of an event already
// numbered takes no number of its own, so the next event's number follows
// and clients see no hole to wait out and resume across.
func TestBroadcast_ARedeliveryDrawsNoNumber(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c", h.Token(reader), map[string]string{"envelope": "1"})
	h.Send("c", `{"type":"subscribe","topic":"telemetry.1"}`)
	require.NoError(t, h.Publish("e1", `{"topic":"telemetry.1","payload":{"n":1},"history":true}`))
	require.NoError(t, h.Publish("e1", `{"topic":"telemetry.1","payload":{"n":1},"history":true}`))
	require.NoError(t, h.Publish("e2", `{"topic":"telemetry.1","payload":{"n":2},"history":true}`))
	got := h.Received("c")
	require.Len(t, got, 2, "delivered once")
	assert.Contains(t, got[1], `"seq":2`, "the next number")
	cur, err := h.Store.CurrentSeq(context.Background(), topic.MustPattern("telemetry.1"))
	require.NoError(t, err)
	assert.Equal(t, uint64(2), cur, "no number drawn for the redelivery")
}

func TestBroadcast_EventADeadInvocationHeldIsTakenOverOnceItsLeaseLapses(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.EventLease = time.Second })
	h.MustConnect("c", h.Token(reader), map[string]string{"envelope": "1"})
	h.Send("c", `{"type":"subscribe","topic":"telemetry.1"}`)
	detail := `{"topic":"telemetry.1","payload":{"n":1}}`
	// An invocation took the event and its number, then died without
	// renewing its lease.
	ev, err := publish.Parse("e1", h.Now, []byte(detail), false)
	require.NoError(t, err)
	rec, err := h.Store.BeginEvent(context.Background(), ev, "dead-invocation", time.Second, time.Hour)
	require.NoError(t, err)

	// The harness clock stands still: move it past the lease while the
	// retry waits.
	start := time.Now()
	go func() { time.Sleep(500 * time.Millisecond); h.Advance(2 * time.Second) }()
	require.NoError(t, h.Publish("e1", detail), "the retry waits out the lease and takes over")
	assert.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond)
	got := h.Received("c")
	require.Len(t, got, 1)
	assert.Contains(t, got[0], fmt.Sprintf(`"seq":%d`, rec.Seq), "with the number the dead attempt drew")
	require.NoError(t, h.Publish("e1", detail))
	assert.Len(t, h.Received("c"), 1, "then it is done")
}

func TestBroadcast_EventALiveInvocationHoldsIsLeftToIt(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.EventLease = time.Second })
	h.MustConnect("c", h.Token(reader), nil)
	h.Send("c", `{"type":"subscribe","topic":"telemetry.1"}`)
	detail := `{"topic":"telemetry.1","payload":{"n":1}}`
	ev, err := publish.Parse("e1", h.Now, []byte(detail), false)
	require.NoError(t, err)
	_, err = h.Store.BeginEvent(context.Background(), ev, "live-invocation", time.Minute, time.Hour)
	require.NoError(t, err)

	err = h.Publish("e1", detail)
	assert.ErrorIs(t, err, store.ErrInProgress, "EventBridge retries later")
	assert.Empty(t, h.Received("c"), "not delivered twice at once")
	require.NoError(t, h.Store.RenewEvent(context.Background(), "e1", "live-invocation", time.Minute), "the holder keeps its lease")
	assert.ErrorIs(t, h.Store.RenewEvent(context.Background(), "e1", "someone-else", time.Minute), store.ErrInProgress)
}

func TestBroadcast_GoneConnectionIsRemoved(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("alive", h.Token(reader), nil)
	h.MustConnect("dead", h.Token(reader), nil)
	for _, id := range []string{"alive", "dead"} {
		h.Send(id, `{"type":"subscribe","topic":"alerts.*"}`)
	}
	h.Conns.Gone("dead")
	h.Advance(fanout.ConnectWindow) // long registered: a 410 means gone
	require.NoError(t, h.Publish("e1", `{"topic":"alerts.7","payload":{"a":1}}`))
	assert.Len(t, h.Received("alive"), 1)
	assert.Equal(t, 1.0, h.Metrics.Last("Gone"))
	_, err := h.Store.GetConnection(context.Background(), "dead")
	assert.ErrorIs(t, err, store.ErrNotFound)
	subs, _, err := h.Store.Subscribers(context.Background(), "alerts.*", "", 10)
	require.NoError(t, err)
	require.Len(t, subs, 1)
	assert.Equal(t, "alive", subs[0].ConnectionID)

	require.NoError(t, h.Publish("e2", `{"topic":"alerts.7","payload":{"a":2}}`))
	assert.Equal(t, 0.0, h.Metrics.Last("Gone"), "never posted to again after the first 410")
}

// API Gateway answers 410 for a moment after $connect while it registers
// the connection: a post in that window is retried, and the connection and
// its subscriptions are kept.
func TestBroadcast_NewConnectionAnswering410IsKept(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("new", h.Token(reader), nil)
	h.Send("new", `{"type":"subscribe","topic":"alerts.*"}`)
	h.Conns.Script("new", http.StatusGone, http.StatusGone)
	require.NoError(t, h.Publish("e1", `{"topic":"alerts.7","payload":{"a":1}}`))
	assert.Len(t, h.Received("new"), 1, "delivered once registered")
	assert.Equal(t, 0.0, h.Metrics.Last("Gone"))
	_, err := h.Store.GetConnection(context.Background(), "new")
	require.NoError(t, err, "not removed")
	subs, _, err := h.Store.Subscribers(context.Background(), "alerts.*", "", 10)
	require.NoError(t, err)
	assert.Len(t, subs, 1)
}

func TestBroadcast_ThrottledThenDelivered(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c", h.Token(reader), nil)
	h.Send("c", `{"type":"subscribe","topic":"alerts.1"}`)
	h.Conns.Script("c", http.StatusTooManyRequests, http.StatusTooManyRequests)
	require.NoError(t, h.Publish("e1", `{"topic":"alerts.1","payload":{"a":1}}`))
	assert.Equal(t, []string{`{"a":1}`}, h.Received("c"))
	assert.Equal(t, 2.0, h.Metrics.Last("BufferFull"), "one client throttled while none else is: its buffer")
	assert.Equal(t, 2.0, h.Metrics.Last("Retried"))
	assert.Equal(t, 1.0, h.Metrics.Last("Delivered"))
}

func TestBroadcast_ServerErrorThatNeverRecoversIsCountedFailed(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("ok", h.Token(reader), nil)
	h.MustConnect("broken", h.Token(reader), nil)
	for _, id := range []string{"ok", "broken"} {
		h.Send(id, `{"type":"subscribe","topic":"alerts.1"}`)
	}
	h.Conns.AlwaysFail("broken", http.StatusInternalServerError)
	require.NoError(t, h.Publish("e1", `{"topic":"alerts.1","payload":{"a":1}}`), "a failed delivery is not an invocation error: retrying would duplicate the others")
	assert.Equal(t, 1.0, h.Metrics.Last("Failed"))
	assert.Equal(t, 1.0, h.Metrics.Last("Delivered"))
	_, err := h.Store.GetConnection(context.Background(), "broken")
	assert.NoError(t, err, "a 500 is not a 410: the connection stays")
}

func TestBroadcast_AudienceFiltersAndProjection(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("acme", h.Token(reader), nil)
	h.MustConnect("globex", h.Token(auth.Grant{Sub: "g1", Orgs: []string{"globex"}, Topics: []string{"telemetry.>", "alerts.>"}}), nil)
	h.MustConnect("root", h.Token(auth.Grant{Sub: "root", Superuser: true}), nil)
	h.MustConnect("critical", h.Token(reader), nil)
	h.MustConnect("temps", h.Token(reader), nil)
	for _, id := range []string{"acme", "globex", "root"} {
		h.Send(id, `{"type":"subscribe","topic":"alerts.*"}`)
	}
	h.Send("critical", `{"type":"subscribe","channel":"alerts","filters":{"severity":["critical"]}}`)
	h.Send("temps", `{"type":"subscribe","channel":"telemetry","device_id":1,"filters":{"metrics":["temperature"]}}`)

	require.NoError(t, h.Publish("a1", `{"topic":"alerts.1","payload":{"sev":"warning"},"attributes":{"severity":"warning"},"audience":{"orgs":["acme"]}}`))
	require.NoError(t, h.Publish("a2", `{"topic":"alerts.1","payload":{"sev":"critical"},"attributes":{"severity":"critical"}}`))
	assert.Equal(t, []string{`{"sev":"warning"}`, `{"sev":"critical"}`}, h.Received("acme"))
	assert.Equal(t, []string{`{"sev":"critical"}`}, h.Received("globex"), "not in acme's audience")
	assert.Len(t, h.Received("root"), 2, "superusers are in every audience")
	assert.Equal(t, []string{`{"sev":"critical"}`}, h.Received("critical"), "severity filter")

	require.NoError(t, h.Publish("t1", `{"topic":"telemetry.1","payload":{"type":"telemetry_update","telemetry":{"temperature":{"value":23.5},"humidity":{"value":45}}},"attributes":{"metrics":["temperature","humidity"]},"project":{"metrics":"telemetry"}}`))
	require.Len(t, h.Received("temps"), 1)
	assert.JSONEq(t, `{"type":"telemetry_update","telemetry":{"temperature":{"value":23.5}}}`, h.Received("temps")[0])
}

func TestBroadcast_OneDeliveryPerConnectionAcrossPatterns(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c", h.Token(reader), nil)
	h.Send("c", `{"type":"subscribe","topic":"telemetry.1","filters":{"metrics":["humidity"]}}`)
	h.Send("c", `{"type":"subscribe","topic":"telemetry.*","filters":{"metrics":["temperature"]}}`)
	h.Send("c", `{"type":"subscribe","topic":"telemetry.>"}`)
	require.NoError(t, h.Publish("e", `{"topic":"telemetry.1","payload":{"telemetry":{"temperature":1,"humidity":2,"pressure":3}},"attributes":{"metrics":["temperature","humidity","pressure"]},"project":{"metrics":"telemetry"}}`))
	got := h.Received("c")
	require.Len(t, got, 1)
	assert.JSONEq(t, `{"telemetry":{"temperature":1,"humidity":2,"pressure":3}}`, got[0], "the unfiltered subscription wants everything")
}

func TestBroadcast_BinaryPayloadIsByteExact(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("raw", h.Token(reader), nil)
	h.MustConnect("env", h.Token(reader), map[string]string{"envelope": "1"})
	h.Send("raw", `{"type":"subscribe","topic":"telemetry.pb"}`)
	h.Send("env", `{"type":"subscribe","topic":"telemetry.pb"}`)
	bin := []byte{0x08, 0x96, 0x01, 0x00, 0xff, 0xfe}
	require.NoError(t, h.Publish("b", fmt.Sprintf(`{"topic":"telemetry.pb","payload_base64":%q}`, base64.StdEncoding.EncodeToString(bin))))
	assert.Equal(t, [][]byte{bin}, h.Conns.Received("raw"))
	assert.Contains(t, h.Received("env")[0], `"data_base64":"`+base64.StdEncoding.EncodeToString(bin)+`"`)
}

func TestBroadcast_InvalidEventsAreDroppedAndCounted(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c", h.Token(reader), nil)
	h.Send("c", `{"type":"subscribe","topic":"alerts.1"}`)
	require.NoError(t, h.Publish("bad", `{"topic":"alerts.1"}`), "no retry for a bad event")
	assert.Equal(t, 1.0, h.Metrics.Last("Rejected"))
	require.NoError(t, h.Publish("huge", `{"topic":"alerts.1","payload":"`+strings.Repeat("x", 130*1024)+`"}`))
	assert.Equal(t, 1.0, h.Metrics.Last("RejectedTooLarge"))
	assert.Empty(t, h.Received("c"), "never half-sent")
	seq, err := h.Store.CurrentSeq(context.Background(), topic.MustPattern("alerts.1"))
	require.NoError(t, err)
	assert.Zero(t, seq, "a rejected event writes nothing")
}

func TestBroadcast_HandleDispatchesEventBridgeAndSQS(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c", h.Token(reader), nil)
	h.Send("c", `{"type":"subscribe","topic":"alerts.1"}`)
	raw, _ := json.Marshal(lambdaevents.CloudWatchEvent{ID: "x1", DetailType: "wsgate.event", Source: "s", Time: time.Now(), Detail: json.RawMessage(`{"topic":"alerts.1","payload":1}`)})
	_, err := h.Broadcast.Handle(context.Background(), raw)
	require.NoError(t, err)
	assert.Equal(t, []string{"1"}, h.Received("c"))

	out, err := h.Broadcast.Handle(context.Background(), json.RawMessage(`{"Records":[{"messageId":"m1","body":"{\"kind\":\"nope\"}"}]}`))
	require.NoError(t, err)
	assert.Empty(t, out.(lambdaevents.SQSEventResponse).BatchItemFailures, "an unreadable task is dropped, not retried forever")
	_, err = h.Broadcast.Handle(context.Background(), json.RawMessage(`[1,2]`))
	assert.NoError(t, err)
}

func TestBroadcast_AuthDeadlineClosesPendingConnections(t *testing.T) {
	h := gatewaytest.New(t)
	require.Equal(t, http.StatusOK, h.Connect("slow", nil, nil).StatusCode)
	require.Equal(t, http.StatusOK, h.Connect("quick", nil, nil).StatusCode)
	h.Send("quick", `{"type":"auth","token":"`+h.Token(reader)+`"}`)
	h.Advance(10 * time.Second)
	h.RunTasks()
	assert.Contains(t, h.Conns.Deleted(), "slow")
	assert.NotContains(t, h.Conns.Deleted(), "quick")
	assert.Contains(t, h.Received("slow")[0], `"auth_timeout"`)
	_, err := h.Store.GetConnection(context.Background(), "slow")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestBroadcast_ReplayRequestedAtConnect(t *testing.T) {
	h := gatewaytest.New(t)
	for i := 1; i <= 3; i++ {
		require.NoError(t, h.Publish(fmt.Sprintf("e%d", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d},"history":true}`, i)))
	}
	h.MustConnect("c", h.Token(reader), map[string]string{"topic": "telemetry.1", "since": "1", "envelope": "1"})
	h.RunTasks()
	got := h.Received("c")
	require.Len(t, got, 3)
	assert.Contains(t, got[0], `"seq":2`)
	assert.Contains(t, got[1], `"seq":3`)
	assert.Contains(t, got[2], `"type":"resumed"`)
}

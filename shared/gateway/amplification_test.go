package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Issue 13: a client must not buy more work, store calls or bytes out
// with one frame than its limits allow, however it packs the frame.

// batch is a batch frame of n copies of a command, each with its index as
// id (the command's text holds %d for it).
func batch(n int, command string) string {
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf(command, i)
	}
	return `{"type":"batch","id":"b","messages":[` + strings.Join(msgs, ",") + `]}`
}

// kinds tallies the frames by type (errors by code).
func kinds(t *testing.T, frames []string) map[string]int {
	out := map[string]int{}
	for _, f := range frames {
		m := decode(t, f)
		k := m["type"].(string)
		if k == "error" {
			k += ":" + m["code"].(string)
		}
		out[k]++
	}
	return out
}

// metered runs one frame on the gateway with a store meter on its context
// and returns what the store was asked to do.
func metered(t *testing.T, h *gatewaytest.Harness, id, body string) map[string]int {
	t.Helper()
	var m store.Meter
	req := events.APIGatewayWebsocketProxyRequest{Body: body, RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: id, RouteKey: "$default", RequestID: "metered", Stage: h.Cfg.Stage,
	}}
	_, err := h.Gateway.Message(store.WithMeter(context.Background(), &m), req)
	require.NoError(t, err)
	_, _, calls := m.Snapshot()
	return calls
}

func TestMessage_EveryCommandOfABatchCountsAgainstTheRateLimit(t *testing.T) {
	h := connected(t, func(c *config.Config) { c.Limits.MessagesPerSecond = 20 })
	frames := h.Send("c1", batch(50, `{"type":"ping","id":%d}`))
	require.Len(t, frames, 50, "one reply per command")
	for i, f := range frames {
		m := decode(t, f)
		assert.Equal(t, float64(i), m["id"], "in order, by id")
		if i < 20 {
			assert.Equal(t, "pong", m["type"], "the first 20 fit this second")
		} else {
			assert.Equal(t, "rate_limited", m["code"], "the rest are refused")
		}
	}
	// The window is full: a whole frame is refused with one reply, by the
	// frame's id, however many commands it holds.
	refused := one(t, h.Send("c1", batch(50, `{"type":"ping","id":%d}`)), "error")
	assert.Equal(t, "rate_limited", refused["code"])
	assert.Equal(t, "b", refused["id"])
	h.Advance(time.Second)
	one(t, h.Send("c1", `{"type":"ping"}`), "pong")
}

// One 3 KB frame of resumes of history that does not exist kept the
// message function busy 17 s: each resume waited for the missing events.
func TestMessage_ResumesOfMissingHistoryDoNotWaitEach(t *testing.T) {
	h := connected(t, func(c *config.Config) { c.Limits.MessagesPerSecond = 20 })
	for i := 1; i <= 3; i++ {
		require.NoError(t, h.Publish(fmt.Sprint("e", i), `{"topic":"telemetry.1","payload":{"n":1},"history":false}`))
	}
	frame := batch(50, `{"type":"resume","id":%d,"topic":"telemetry.1","since":0}`)
	require.Less(t, len(frame), 4096)
	for _, when := range []string{"just published: one wait for events in flight", "published long ago: no wait"} {
		t.Run(when, func(t *testing.T) {
			start := time.Now()
			got := kinds(t, h.Send("c1", frame))
			assert.Less(t, time.Since(start), 2*time.Second)
			assert.Equal(t, map[string]int{"error:history_expired": 20, "error:rate_limited": 30}, got)
			h.Advance(time.Minute)
		})
	}
}

// 50 resumes in one 3 KB frame replayed 1,050 frames (~100 MB).
func TestMessage_ReplayIsCappedPerFrameAndPerMinute(t *testing.T) {
	h := connected(t, func(c *config.Config) {
		c.MaxReplayBytes = 2000
		c.MaxReplayBytesPerMinute = 3000
	})
	pad := strings.Repeat("x", 280) // each replayed frame is 300 bytes
	for i := 1; i <= 20; i++ {
		require.NoError(t, h.Publish(fmt.Sprint("e", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d,"pad":"%s"},"history":true}`, i, pad)))
	}
	h.Received("c1")
	frame := batch(50, `{"type":"resume","id":%d,"topic":"telemetry.1","since":0}`)

	frames := h.Send("c1", frame)
	replayed := 0
	for _, f := range frames[:6] {
		assert.Contains(t, f, `"pad"`, "six 300-byte frames fit in 2000 bytes")
		replayed += len(f)
	}
	assert.LessOrEqual(t, replayed, 2000)
	resumed := decode(t, frames[6])
	assert.Equal(t, "resumed", resumed["type"], "the frames, then resumed")
	assert.Equal(t, 6.0, resumed["seq"], "as far as the cap let it go")
	assert.Equal(t, true, resumed["more"])
	assert.Equal(t, map[string]int{"error:rate_limited": 49}, kinds(t, frames[7:]), "the other resumes are refused: nothing left this frame")

	// The next frame gets what is left of the connection's 3000 bytes, and
	// the second's refill (50): four frames (the 200 bytes the first frame
	// reserved and did not send were given back).
	h.Advance(time.Second)
	frames = h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":6}`)
	require.Len(t, frames, 5)
	assert.Equal(t, 10.0, decode(t, frames[4])["seq"])
	h.Advance(time.Second)
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":10}`)), "the allowance is used up")

	h.Advance(time.Minute)
	frames = h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":10}`)
	require.Len(t, frames, 7, "a minute refilled the allowance")
	assert.Equal(t, 16.0, decode(t, frames[6])["seq"])
}

// The replay allowance does not reset at a calendar minute's edge: a
// client that spent it in a minute's last second cannot spend it again in
// the next one's first (a fixed window gave 16 MiB in two seconds under an
// 8 MiB cap).
func TestMessage_ReplayAllowanceSpentBeforeAMinuteEdgeIsNotThereAgainAfterIt(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.MaxReplayBytes = 3000
		c.MaxReplayBytesPerMinute = 3000
	})
	h.Now = time.Unix(gatewaytest.StartUnix/60*60+59, 0) // a minute's last second
	h.MustConnect("c1", h.Token(user), nil)
	pad := strings.Repeat("x", 280) // each replayed frame is 300 bytes
	for i := 1; i <= 20; i++ {
		require.NoError(t, h.Publish(fmt.Sprint("e", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d,"pad":"%s"},"history":true}`, i, pad)))
	}
	h.Received("c1")
	frames := h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":0}`)
	require.Len(t, frames, 11, "ten 300-byte frames spend the 3000 bytes, then resumed")
	assert.Equal(t, 10.0, decode(t, frames[10])["seq"])

	h.Advance(2 * time.Second) // past the edge
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":10}`)),
		"two seconds refilled 100 bytes, not a fresh 3000")
	h.Advance(5 * time.Second)
	frames = h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":10}`)
	require.Len(t, frames, 2, "seven seconds refilled 350 bytes: one frame")
	assert.Equal(t, 11.0, decode(t, frames[1])["seq"])
}

// Replayed frames are posted as they are read, yet every reply keeps its
// place: the replies before the resume, its frames, resumed, the rest.
func TestMessage_ReplayKeepsTheReplyOrder(t *testing.T) {
	h := connected(t)
	for i := 1; i <= 2; i++ {
		require.NoError(t, h.Publish(fmt.Sprint("e", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d},"history":true}`, i)))
	}
	h.Received("c1")
	frames := h.Send("c1", `{"type":"batch","messages":[{"type":"ping","id":1},{"type":"resume","id":2,"topic":"telemetry.1","since":0},{"type":"ping","id":3}]}`)
	require.Len(t, frames, 5)
	assert.Equal(t, "pong", decode(t, frames[0])["type"])
	assert.JSONEq(t, `{"i":1}`, frames[1])
	assert.JSONEq(t, `{"i":2}`, frames[2])
	assert.Equal(t, "resumed", decode(t, frames[3])["type"])
	assert.Equal(t, "pong", decode(t, frames[4])["type"])
}

// A subscribe that would go past the subscription limit is refused before
// anything is written (it used to write 49 subscriptions, then undo them).
func TestMessage_SubscribeOverTheLimitWritesNothing(t *testing.T) {
	h := connected(t, func(c *config.Config) { c.Limits.MaxSubscriptions = 50 })
	ids := make([]string, 99)
	for i := range ids {
		ids[i] = fmt.Sprint(i + 1)
	}
	calls := metered(t, h, "c1", `{"type":"subscribe","id":"s","channel":"telemetry","device_id":[`+strings.Join(ids, ",")+`]}`)
	assert.Zero(t, calls["TransactWriteItems"], "no subscription written, none undone")
	got := h.Received("c1")
	require.Len(t, got, 0, "the answer is the route response")
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	assert.Len(t, subs, 1, "the direct topic only")
	assert.Equal(t, 1.0, h.Limits.Sum(gateway.MetricTooManySubscriptions))

	// Subscribing again to what it holds takes no more room.
	h.Advance(time.Second)
	one(t, h.Send("c1", `{"type":"subscribe","channel":"telemetry","device_id":[`+strings.Join(ids[:49], ",")+`]}`), "subscribed")
	one(t, h.Send("c1", `{"type":"subscribe","channel":"telemetry","device_id":[1,2,3]}`), "subscribed")
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("c1", `{"type":"subscribe","channel":"telemetry","device_id":[49,50]}`)))
}

// A frame's store calls are bounded: a command that would go past the
// frame's budget is refused whole before it writes anything.
func TestMessage_FrameStoreCallsAreBounded(t *testing.T) {
	h := connected(t, func(c *config.Config) { c.Limits.MaxSubscriptions = 1000 })
	sub := func(from int) string {
		ids := make([]string, 99)
		for i := range ids {
			ids[i] = fmt.Sprint(from + i)
		}
		return `{"type":"subscribe","channel":"telemetry","device_id":[` + strings.Join(ids, ",") + `]}`
	}
	calls := metered(t, h, "c1", `{"type":"batch","messages":[`+sub(1)+`,`+sub(100)+`,`+sub(200)+`]}`)
	assert.Equal(t, 99, calls["TransactWriteItems"], "one subscribe of 99 (99 writes and 99 reads) fits in 200 calls; the next does not")
	got := kinds(t, h.Received("c1"))
	assert.Equal(t, map[string]int{"subscribed": 1, "error:rate_limited": 1}, got, "posted before the route response")
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	assert.Len(t, subs, 100)

	small := gatewaytest.New(t, func(c *config.Config) { c.FrameStoreCalls = 50 })
	small.MustConnect("c2", small.Token(user), nil)
	frames := small.Send("c2", `{"type":"subscribe","channel":"telemetry","device_id":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30]}`)
	assert.Equal(t, "too_large", errorCode(t, frames), "60 calls never fit in 50")
	subs, err = small.Store.ConnectionSubscriptions(context.Background(), "c2")
	require.NoError(t, err)
	assert.Len(t, subs, 1)
}

// A connection waiting to authenticate that sends anything but auth is
// closed at once: it is not a client about to authenticate.
func TestMessage_PendingConnectionIsClosedAtItsFirstOtherFrame(t *testing.T) {
	h := gatewaytest.New(t)
	require.Equal(t, http.StatusOK, h.Connect("p1", nil, nil).StatusCode)
	assert.Equal(t, "forbidden", errorCode(t, h.Send("p1", `{"type":"subscribe","channel":"telemetry"}`)))
	assert.Contains(t, h.Conns.Deleted(), "p1")

	require.Equal(t, http.StatusOK, h.Connect("p2", nil, nil).StatusCode)
	one(t, h.Send("p2", `{"type":"auth","token":"`+h.Token(auth.Grant{Sub: "v1", Topics: []string{"telemetry.*"}})+`"}`), "auth_response")
	assert.NotContains(t, h.Conns.Deleted(), "p2", "auth first is served")
}

// The replay a connection asks for at connect (?topic=&since=, anonymous
// too) has a resume's caps: it could otherwise send 500 events to every
// new connection.
func TestConnect_SinceReplayIsCapped(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.AnonymousTopics = []topic.Pattern{topic.MustPattern("telemetry.*")}
		c.MaxReplayBytes = 2000
		c.MaxReplayBytesPerMinute = 3000
	})
	pad := strings.Repeat("x", 280)
	for i := 1; i <= 20; i++ {
		require.NoError(t, h.Publish(fmt.Sprint("e", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d,"pad":"%s"},"history":true}`, i, pad)))
	}
	require.Equal(t, http.StatusOK, h.Connect("anon", map[string]string{"topic": "telemetry.1", "since": "0"}, nil).StatusCode)
	h.RunTasks()
	got := h.Received("anon")
	require.Len(t, got, 7, "six 300-byte frames, then resumed")
	replayed := 0
	for _, f := range got[:6] {
		replayed += len(f)
	}
	assert.LessOrEqual(t, replayed, 2000)
	resumed := decode(t, got[6])
	assert.Equal(t, "resumed", resumed["type"])
	assert.Equal(t, 6.0, resumed["seq"])
	assert.Equal(t, true, resumed["more"], "the client reconnects with since=6 for the rest")
}

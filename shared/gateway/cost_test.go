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
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Issue 23: a command is charged what it costs, and what the gateway sends
// from storage is bounded per frame, per connection, per principal and,
// for the anonymous, per source address.

// bytesOf adds up the frames' sizes.
func bytesOf(frames []string) int {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n
}

// storedBytes adds up the frames that are not the gateway's own replies
// (current state, replayed events).
func storedBytes(t *testing.T, frames []string) int {
	n := 0
	for _, f := range frames {
		switch decode(t, f)["type"] {
		case "error", "resumed", "pong", "subscribed":
		default:
			n += len(f)
		}
	}
	return n
}

// refusals counts the frames that are errors with code.
func refusals(t *testing.T, frames []string, code string) int {
	n := 0
	for _, f := range frames {
		if m := decode(t, f); m["type"] == "error" && m["code"] == code {
			n++
		}
	}
	return n
}

// bigState publishes a current state of 40 frames of about 6 KB on topic.
func bigState(t *testing.T, h *gatewaytest.Harness, tp string) {
	pad := strings.Repeat("x", 6000)
	frames := make([]string, 40)
	for i := range frames {
		frames[i] = fmt.Sprintf(`{"model":"UpgradeOperation","data":{"n":%d,"pad":"%s"}}`, i, pad)
	}
	require.NoError(t, h.Publish("state", `{"topic":"`+tp+`","payload":{},"state":[`+strings.Join(frames, ",")+`]}`))
}

// One 3 KB frame of 50 request_current_state on an anonymous scope sent
// 2,000 frames (11 MiB), posted after the frame's budget, with no token.
// Now the frame sends at most the frame's replay bytes, and each command
// it cut short or refused is answered rate_limited by its id.
func TestMessage_CurrentStateBatchIsCappedToTheFramesReplayBytes(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.AnonymousTopics = []topic.Pattern{topic.MustPattern("firmware.operation.*")}
	})
	bigState(t, h, "firmware.operation.op1")
	require.Equal(t, http.StatusOK, h.Connect("anon", map[string]string{"topic": "firmware.operation.op1"}, nil).StatusCode)
	frame := batch(50, `{"type":"request_current_state","id":%d,"operation_id":"op1"}`)
	require.Less(t, len(frame), 4096)

	got := h.Send("anon", frame)
	sent := storedBytes(t, got)
	t.Logf("one frame of 50 request_current_state: %d frames, %d bytes (%d of them state)", len(got), bytesOf(got), sent)
	assert.LessOrEqual(t, sent, config.DefaultMaxReplayBytes, "the frame's replay bytes")
	assert.Greater(t, sent, config.DefaultMaxReplayBytes-7000, "as much as fits")
	limited := refusals(t, got, "rate_limited")
	assert.Equal(t, 50-4, limited, "four whole states fit; the fifth is cut short, the rest refused, each by its id")
	assert.Less(t, len(got), 4*40+40+50)

	// 10 anonymous connections from one address share its allowance.
	small := gatewaytest.New(t, func(c *config.Config) {
		c.AnonymousTopics = []topic.Pattern{topic.MustPattern("firmware.operation.*")}
		c.MaxAddressReplayBytesPerMinute = 2 << 20
	})
	bigState(t, small, "firmware.operation.op1")
	total := 0
	for i := range 10 {
		id := fmt.Sprint("anon", i)
		require.Equal(t, http.StatusOK, small.Connect(id, map[string]string{"topic": "firmware.operation.op1"}, nil).StatusCode)
		total += storedBytes(t, small.Send(id, frame))
	}
	t.Logf("10 anonymous connections from one address: %d bytes of state", total)
	assert.LessOrEqual(t, total, 2<<20, "the address's allowance")
}

// 10 connections of one principal replayed 80 MiB in 30 s: each had its
// own allowance. They share the principal's.
func TestMessage_PrincipalsConnectionsShareItsReplayBudget(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.MaxReplayBytes = 2000
		c.MaxReplayBytesPerMinute = 3000
		c.MaxPrincipalReplayBytesPerMinute = 6000
	})
	publishPadded(t, h, 20)
	total := 0
	for i := range 10 {
		id := fmt.Sprint("c", i)
		h.MustConnect(id, h.Token(user), nil)
		total += storedBytes(t, h.Send(id, `{"type":"resume","id":"r","topic":"telemetry.1","since":0}`))
	}
	t.Logf("10 connections of one principal, one resume each: %d bytes replayed", total)
	assert.LessOrEqual(t, total, 6000, "the principal's allowance, not 10 connections' 2000 each")
	assert.Greater(t, total, 5000)

	h.MustConnect("other", h.Token(auth.Grant{Sub: "u2", Orgs: []string{"acme"}, Topics: []string{"telemetry.>"}}), nil)
	assert.Greater(t, storedBytes(t, h.Send("other", `{"type":"resume","id":"r","topic":"telemetry.1","since":0}`)), 1500, "another principal has its own")
}

// publishPadded publishes n events of about 300 bytes on telemetry.1.
func publishPadded(t *testing.T, h *gatewaytest.Harness, n int) {
	pad := strings.Repeat("x", 280)
	for i := 1; i <= n; i++ {
		require.NoError(t, h.Publish(fmt.Sprint("e", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d,"pad":"%s"},"history":true}`, i, pad)))
	}
}

// 75 reconnects with ?since=0 replayed 73 MiB in 30 s: each handshake got
// a fresh allowance. They draw on the principal's (the source address's,
// anonymous) and stop there.
func TestConnect_SinceReplaysStopAtThePrincipalsBudget(t *testing.T) {
	for _, anonymous := range []bool{false, true} {
		t.Run(map[bool]string{false: "principal", true: "anonymous by address"}[anonymous], func(t *testing.T) {
			h := gatewaytest.New(t, func(c *config.Config) {
				c.AnonymousTopics = []topic.Pattern{topic.MustPattern("telemetry.*")}
				c.MaxReplayBytes = 2000
				c.MaxReplayBytesPerMinute = 3000
				c.MaxPrincipalReplayBytesPerMinute = 6000
				c.MaxAddressReplayBytesPerMinute = 6000
			})
			publishPadded(t, h, 20)
			total, limited := 0, 0
			for i := range 75 {
				id := fmt.Sprint("r", i)
				q := map[string]string{"topic": "telemetry.1", "since": "0"}
				if !anonymous {
					q["token"] = h.Token(user)
				}
				require.Equal(t, http.StatusOK, h.Connect(id, q, nil).StatusCode)
				h.RunTasks()
				got := h.Received(id)
				total += storedBytes(t, got)
				limited += refusals(t, got, "rate_limited")
				h.Disconnect(id)
			}
			t.Logf("75 reconnects with ?since=0: %d bytes replayed, %d refused", total, limited)
			assert.LessOrEqual(t, total, 6000)
			assert.Greater(t, limited, 70, "the later handshakes are refused: rate_limited")
		})
	}
}

// One 492-byte subscribe of 99 ids made 205 store calls and counted as one
// command: 20 such frames a second made 3,748. It counts 99 units now.
func TestMessage_SubscribeIsChargedPerSubscription(t *testing.T) {
	h := connected(t)
	ids := make([]string, 99)
	for i := range ids {
		ids[i] = fmt.Sprint(i + 1)
	}
	sub := `{"type":"subscribe","id":"s","channel":"telemetry","device_id":[` + strings.Join(ids, ",") + `]}`
	require.Less(t, len(sub), 500)

	calls, ran := 0, 0
	for range 20 { // within one second of the pinned clock
		var m store.Meter
		req := events.APIGatewayWebsocketProxyRequest{Body: sub, RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			ConnectionID: "c1", RouteKey: "$default", RequestID: "r", Stage: h.Cfg.Stage,
		}}
		resp, err := h.Gateway.Message(store.WithMeter(context.Background(), &m), req)
		require.NoError(t, err)
		_, _, byOp := m.Snapshot()
		for _, n := range byOp {
			calls += n
		}
		ran += kinds(t, []string{resp.Body})["subscribed"]
	}
	t.Logf("20 subscribes of 99 ids in one second: %d store calls, %d ran", calls, ran)
	assert.Equal(t, 1, ran, "99 units of the second's 100")
	// About 220 for the frame that ran and the refusals, plus one read of
	// each of the 99 topics' layouts by this container, which caches none
	// yet (store: place), plus each subscription's entry put and the
	// read-back of its reverse entry (store: createSubscription): 518.
	assert.Less(t, calls, 600)

	// The next second: 99 units and one more fit; a second ping does not.
	h.Advance(time.Second)
	one(t, h.Send("c1", sub), "subscribed")
	got := kinds(t, h.Send("c1", batch(2, `{"type":"ping","id":%d}`)))
	assert.Equal(t, map[string]int{"pong": 1, "error:rate_limited": 1}, got)
}

// A register (narrowed to every grant) and a covering unsubscribe learn
// how many subscriptions they write only as they run: the frame is charged
// the rest after it, so the next frame in the second finds the window full.
func TestMessage_WorkKnownOnlyAsItRunsIsChargedAfterTheFrame(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.Limits.MessagesPerSecond = 10 })
	grants := make([]string, 9)
	for i := range grants {
		grants[i] = fmt.Sprintf("k%d.*.*", i)
	}
	h.MustConnect("drp", h.Token(auth.Grant{Sub: "d1", Topics: grants}), nil)
	assert.Empty(t, h.Send("drp", `register *.*.*`), "success answers nothing")
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "drp")
	require.NoError(t, err)
	require.Len(t, subs, 10, "nine grants and the direct topic")
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("drp", `{"type":"ping"}`)), "one line, nine subscriptions: the second's 10 units are spent")

	h.Advance(time.Second)
	h.MustConnect("v", h.Token(auth.Grant{Sub: "v1", Topics: []string{"telemetry.*"}}), nil)
	one(t, h.Send("v", `{"type":"subscribe","channel":"telemetry","device_id":[1,2,3,4,5,6,7,8,9,10]}`), "subscribed")
	h.Advance(time.Second)
	one(t, h.Send("v", `{"type":"unsubscribe","channel":"telemetry"}`), "unsubscribed")
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("v", `{"type":"ping"}`)), "one command, ten subscriptions removed")
}

// With 10 ms posts one frame of 50 request_current_state ran 23 s of the
// invocation's 29: its replies were posted after the frame's budget.
// Nothing is posted after it now; what it cut short says so.
func TestMessage_NothingIsPostedAfterTheFramesBudget(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.AnonymousTopics = []topic.Pattern{topic.MustPattern("firmware.operation.*")}
		c.FrameBudget = 300 * time.Millisecond
	})
	bigState(t, h, "firmware.operation.op1")
	publishPadded(t, h, 40)
	require.Equal(t, http.StatusOK, h.Connect("anon", map[string]string{"topic": "firmware.operation.op1"}, nil).StatusCode)
	h.MustConnect("c1", h.Token(user), nil)
	h.Conns.Latency(10 * time.Millisecond)

	start := time.Now()
	got := h.Send("anon", batch(50, `{"type":"request_current_state","id":%d,"operation_id":"op1"}`))
	took := time.Since(start)
	t.Logf("50 request_current_state with 10 ms posts and a 300 ms budget: %s, %d frames", took, len(got))
	assert.Less(t, took, 2*time.Second, "the budget and the replies after it, not 2,000 posts")
	assert.Equal(t, 50, refusals(t, got, "unavailable"), "the state cut short by time says so, by its id, and so do the commands it left undone")

	h.Advance(time.Second)
	got = h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":0}`)
	resumed := decode(t, got[len(got)-1])
	require.Equal(t, "resumed", resumed["type"], got[len(got)-1])
	assert.Equal(t, true, resumed["more"], "cut short by time: resumed as far as it got, with more")
	assert.Less(t, resumed["seq"], 40.0)
	assert.Equal(t, float64(len(got)-1), resumed["replayed"])
}

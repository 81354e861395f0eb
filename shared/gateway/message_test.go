package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
)

func decode(t *testing.T, frame string) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(frame), &m), frame)
	return m
}

// one asserts exactly one reply of the given type and returns it.
func one(t *testing.T, frames []string, typ string) map[string]any {
	t.Helper()
	require.Len(t, frames, 1, "%v", frames)
	m := decode(t, frames[0])
	require.Equal(t, typ, m["type"], frames[0])
	return m
}

func errorCode(t *testing.T, frames []string) string {
	t.Helper()
	return one(t, frames, "error")["code"].(string)
}

func connected(t *testing.T, opts ...func(*config.Config)) *gatewaytest.Harness {
	h := gatewaytest.New(t, opts...)
	h.MustConnect("c1", h.Token(user), nil)
	return h
}

func TestMessage_Ping(t *testing.T) {
	h := connected(t)
	pong := one(t, h.Send("c1", `{"type":"ping","id":"p1","timestamp":"2024-01-01T12:00:00Z"}`), "pong")
	assert.Equal(t, "p1", pong["id"])
	assert.Equal(t, "2024-01-01T12:00:00Z", pong["timestamp"])
	_, err := time.Parse(time.RFC3339Nano, pong["time"].(string))
	assert.NoError(t, err, "server time")
	assert.Equal(t, 1.0, one(t, h.Send("c1", `{"type":"ping","id":1}`), "pong")["id"], "numeric ids are echoed as numbers")
}

func TestMessage_SubscribeAndUnsubscribe(t *testing.T) {
	h := connected(t)
	sub := one(t, h.Send("c1", `{"type":"subscribe","id":"s1","topic":"telemetry.*","filters":{"metrics":["temperature"]}}`), "subscribed")
	assert.Equal(t, []any{"telemetry.*"}, sub["topics"])
	assert.Equal(t, "s1", sub["id"])
	sub = one(t, h.Send("c1", `{"type":"subscribe","channel":"telemetry","device_id":[1,2]}`), "subscribed")
	assert.Equal(t, []any{"telemetry.1", "telemetry.2"}, sub["topics"])
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	assert.Len(t, subs, 4, "direct + 3")

	unsub := one(t, h.Send("c1", `{"type":"unsubscribe","channel":"telemetry","device_id":2}`), "unsubscribed")
	assert.Equal(t, []any{"telemetry.2"}, unsub["topics"])
	subs, err = h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	assert.Len(t, subs, 3)
}

func TestMessage_Errors(t *testing.T) {
	h := connected(t, func(c *config.Config) { c.Limits.MaxMessageBytes = 256 })
	cases := []struct {
		name, body, code string
	}{
		{"bad JSON", `{"type":"subscribe",`, "bad_request"},
		{"unknown type", `{"type":"launch"}`, "bad_request"},
		{"missing type", `{"topic":"a"}`, "bad_request"},
		{"subscribe without topic", `{"type":"subscribe"}`, "bad_request"},
		{"bad pattern", `{"type":"subscribe","topic":"a..b"}`, "bad_request"},
		{"pattern wider than the capability", `{"type":"subscribe","topic":"telemetry.>.x"}`, "bad_request"},
		{"topic outside the capability", `{"type":"subscribe","topic":"alerts.*"}`, "forbidden"},
		{"wider than the capability", `{"type":"subscribe","topic":">"}`, "forbidden"},
		{"another principal's direct topic", `{"type":"subscribe","topic":"direct.user.u2"}`, "forbidden"},
		{"oversized message", `{"type":"ping","pad":"` + strings.Repeat("x", 300) + `"}`, "too_large"},
		{"resume without since", `{"type":"resume","topic":"telemetry.1"}`, "bad_request"},
		{"resume outside the capability", `{"type":"resume","topic":"alerts.1","since":0}`, "forbidden"},
		{"request_current_state without topic", `{"type":"request_current_state"}`, "bad_request"},
		{"request_current_state forbidden", `{"type":"request_current_state","topic":"alerts.1"}`, "forbidden"},
		{"request_current_state with no state", `{"type":"request_current_state","topic":"telemetry.9"}`, "not_found"},
		{"unsubscribe the direct topic", `{"type":"unsubscribe","topic":"direct.user.u1"}`, "forbidden"},
		{"unknown text command", `launch rockets`, "bad_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.code, errorCode(t, h.Send("c1", c.body)))
		})
	}
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	assert.Len(t, subs, 1, "no refused command left a subscription behind")
}

func TestMessage_RateLimit(t *testing.T) {
	h := connected(t, func(c *config.Config) { c.Limits.MessagesPerSecond = 5 })
	for i := range 5 {
		one(t, h.Send("c1", `{"type":"ping"}`), "pong")
		_ = i
	}
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("c1", `{"type":"ping"}`)))
	h.Advance(time.Second)
	one(t, h.Send("c1", `{"type":"ping"}`), "pong")
}

func TestMessage_SubscriptionLimitIsAllOrNothing(t *testing.T) {
	h := connected(t, func(c *config.Config) { c.Limits.MaxSubscriptions = 3 })
	one(t, h.Send("c1", `{"type":"subscribe","topic":"telemetry.1"}`), "subscribed")
	assert.Equal(t, "rate_limited", errorCode(t, h.Send("c1", `{"type":"subscribe","channel":"telemetry","device_id":[2,3]}`)))
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	assert.Len(t, subs, 2, "neither telemetry.2 nor telemetry.3: the subscribe would pass the limit")
	c, err := h.Store.GetConnection(context.Background(), "c1")
	require.NoError(t, err)
	assert.Equal(t, 2, c.Subscriptions)
	one(t, h.Send("c1", `{"type":"subscribe","topic":"telemetry.1"}`), "subscribed")
}

func TestMessage_BatchRepliesInOrder(t *testing.T) {
	h := connected(t)
	frames := h.Send("c1", `{"type":"batch","messages":[{"type":"ping","id":1},{"type":"subscribe","topic":"telemetry.5","id":2},{"type":"nope","id":3},{"type":"ping","id":4}]}`)
	require.Len(t, frames, 4)
	var types []string
	for i, f := range frames {
		m := decode(t, f)
		types = append(types, m["type"].(string))
		assert.Equal(t, float64(i+1), m["id"])
	}
	assert.Equal(t, []string{"pong", "subscribed", "error", "pong"}, types)
	msgs := make([]string, 51)
	for i := range msgs {
		msgs[i] = `{"type":"ping"}`
	}
	assert.Equal(t, "too_large", errorCode(t, h.Send("c1", `{"type":"batch","messages":[`+strings.Join(msgs, ",")+`]}`)))
}

func TestMessage_RegisterTextCommands(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("drp", h.Token(auth.Grant{Sub: "rocketskates", Topics: []string{"profiles.>", "machines.*.*"}}), nil)
	assert.Empty(t, h.Send("drp", "register profiles.*.*"), "success answers nothing")
	assert.Empty(t, h.Send("drp", "register *.*.*\nregister machines.update.m1.example.com"))
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "drp")
	require.NoError(t, err)
	var pats []string
	for _, s := range subs {
		pats = append(pats, s.Pattern)
	}
	assert.ElementsMatch(t, []string{"direct.user.rocketskates", "profiles.*.*", "machines.*.*", "machines.update.m1%2Eexample%2Ecom"}, pats,
		"*.*.* became what the user may see")
	assert.Equal(t, "forbidden", errorCode(t, h.Send("drp", "register params.*.*")))
	assert.Equal(t, "bad_request", errorCode(t, h.Send("drp", "register profiles")))
	assert.Empty(t, h.Send("drp", "deregister *.*.*"))
	subs, err = h.Store.ConnectionSubscriptions(context.Background(), "drp")
	require.NoError(t, err)
	assert.Len(t, subs, 2, "deregister *.*.* undid register *.*.*")
}

func TestMessage_RequestCurrentState(t *testing.T) {
	h := gatewaytest.New(t)
	require.NoError(t, h.Publish("s1", `{"topic":"firmware.device.d1","state":[{"model":"UpgradeOperation","data":{"n":1}},{"model":"UpgradeOperation","data":{"n":2}}],"audience":{"orgs":["acme"]}}`))
	staff := h.Token(auth.Grant{Sub: "staff", Orgs: []string{"acme"}, Topics: []string{"firmware.>"}})
	outsider := h.Token(auth.Grant{Sub: "other", Orgs: []string{"globex"}, Topics: []string{"firmware.>"}})

	h.MustConnect("free", staff, nil)
	frames := h.Send("free", `{"type":"request_current_state","topic":"firmware.device.d1"}`)
	require.Len(t, frames, 2, "one frame per stored message")
	assert.JSONEq(t, `{"model":"UpgradeOperation","data":{"n":1}}`, frames[0])
	h.MustConnect("outsider", outsider, nil)
	assert.Equal(t, "not_found", errorCode(t, h.Send("outsider", `{"type":"request_current_state","topic":"firmware.device.d1"}`)), "another org's state looks absent")

	h.MustConnect("scoped", staff, map[string]string{"topic": "firmware.device.d1"})
	assert.Len(t, h.Send("scoped", `{"type":"request_current_state","device_id":"d1"}`), 2)
	assert.Empty(t, h.Send("scoped", `{"type":"request_current_state","device_id":"d2"}`), "a mismatched id is ignored")
	assert.Empty(t, h.Send("scoped", `{"type":"subscribe","topic":"firmware.device.d2"}`), "other commands are ignored on a scoped connection")
	assert.Empty(t, h.Send("scoped", `{"type":"nonsense"}`))
	assert.Empty(t, h.Send("scoped", `not json`))
	one(t, h.Send("scoped", `{"type":"ping"}`), "pong")
}

func TestMessage_PushModeIgnoresCommands(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("p", h.Token(auth.Grant{Sub: "dev1", Type: "device", Mode: "push", Topics: []string{"x.>"}}), nil)
	assert.Empty(t, h.Send("p", `{"type":"subscribe","topic":"x.1"}`))
	one(t, h.Send("p", `{"type":"ping"}`), "pong")
}

func TestMessage_Resume(t *testing.T) {
	h := connected(t)
	for i := 1; i <= 4; i++ {
		require.NoError(t, h.Publish(fmt.Sprintf("e%d", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d},"history":true}`, i)))
	}
	frames := h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":2}`)
	require.Len(t, frames, 3)
	assert.JSONEq(t, `{"i":3}`, frames[0])
	assert.JSONEq(t, `{"i":4}`, frames[1])
	resumed := decode(t, frames[2])
	assert.Equal(t, "resumed", resumed["type"])
	assert.Equal(t, 4.0, resumed["seq"])
	assert.Equal(t, 2.0, resumed["replayed"])

	one(t, h.Send("c1", `{"type":"resume","topic":"telemetry.1","since":4}`), "resumed")
	require.NoError(t, h.Publish("e5", `{"topic":"telemetry.1","payload":{"i":5},"history":false}`))
	assert.Equal(t, "history_expired", errorCode(t, h.Send("c1", `{"type":"resume","topic":"telemetry.1","since":4}`)), "event 5 was not kept")
	assert.Equal(t, "history_expired", errorCode(t, h.Send("c1", `{"type":"resume","topic":"telemetry.1","since":99}`)))
}

// A client that subscribed at number 3 gets everything after it live: its
// resume asks only up to there, so no event comes twice.
func TestMessage_ResumeUntilStopsAtTheSubscriptionsStart(t *testing.T) {
	h := connected(t)
	for i := 1; i <= 4; i++ {
		require.NoError(t, h.Publish(fmt.Sprintf("e%d", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d},"history":true}`, i)))
	}
	frames := h.Send("c1", `{"type":"resume","id":"r","topic":"telemetry.1","since":1,"until":3}`)
	require.Len(t, frames, 3)
	assert.JSONEq(t, `{"i":2}`, frames[0])
	assert.JSONEq(t, `{"i":3}`, frames[1])
	assert.Equal(t, 3.0, decode(t, frames[2])["seq"])
	// until past the topic's number replays to the number.
	frames = h.Send("c1", `{"type":"resume","topic":"telemetry.1","since":3,"until":9}`)
	require.Len(t, frames, 2)
	assert.Equal(t, 4.0, decode(t, frames[1])["seq"])
	assert.Equal(t, "bad_request", errorCode(t, h.Send("c1", `{"type":"resume","topic":"telemetry.1","since":3,"until":2}`)))
}

func TestMessage_ResumeNeverVouchesForFramesThatWereNotDelivered(t *testing.T) {
	h := connected(t)
	for i := 1; i <= 3; i++ {
		require.NoError(t, h.Publish(fmt.Sprintf("e%d", i), fmt.Sprintf(`{"topic":"telemetry.1","payload":{"i":%d},"history":true}`, i)))
	}
	h.Received("c1")
	// Throttled twice, then through: retried like the fan-out.
	h.Conns.Script("c1", http.StatusTooManyRequests, http.StatusInternalServerError)
	frames := h.Send("c1", `{"type":"resume","id":"r1","topic":"telemetry.1","since":0}`)
	require.Len(t, frames, 4)
	assert.Equal(t, "resumed", decode(t, frames[3])["type"])

	// Refused on every attempt: the command gets an error, not "resumed".
	h.Conns.Script("c1", http.StatusInternalServerError, http.StatusInternalServerError, http.StatusInternalServerError,
		http.StatusInternalServerError, http.StatusInternalServerError)
	frames = h.Send("c1", `{"type":"resume","id":"r2","topic":"telemetry.1","since":0}`)
	require.Len(t, frames, 1, "nothing delivered but the answer")
	e := decode(t, frames[0])
	assert.Equal(t, "error", e["type"])
	assert.Equal(t, "r2", e["id"], "the client knows which command to repeat")
}

func TestMessage_AuthMessageMode(t *testing.T) {
	h := gatewaytest.New(t)
	tok := h.Token(auth.Grant{Sub: "v1", Topics: []string{"telemetry.*"}})

	require.Equal(t, http.StatusOK, h.Connect("p0", nil, nil).StatusCode)
	assert.Equal(t, "forbidden", errorCode(t, h.Send("p0", `{"type":"subscribe","channel":"telemetry"}`)), "nothing but auth before auth")
	assert.Contains(t, h.Conns.Deleted(), "p0", "and a connection that tries is closed")

	require.Equal(t, http.StatusOK, h.Connect("p1", nil, nil).StatusCode)
	ok := one(t, h.Send("p1", `{"type":"auth","token":"`+tok+`"}`), "auth_response")
	assert.Equal(t, true, ok["success"])
	one(t, h.Send("p1", `{"type":"subscribe","channel":"telemetry","device_id":1}`), "subscribed")

	require.Equal(t, http.StatusOK, h.Connect("p2", nil, nil).StatusCode)
	bad := one(t, h.Send("p2", `{"type":"auth","token":"forged"}`), "auth_response")
	assert.Equal(t, false, bad["success"])
	assert.Equal(t, "invalid_token", bad["error"])
	assert.Contains(t, h.Conns.Deleted(), "p2", "a failed auth is disconnected")

	expired, err := auth.Minter{Alg: "HS256", Key: []byte(gatewaytest.Secret), Now: func() time.Time { return h.Now.Add(-3 * time.Hour) }}.Token(auth.Grant{Sub: "u1"})
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, h.Connect("p2x", nil, nil).StatusCode)
	old := one(t, h.Send("p2x", `{"type":"auth","token":"`+expired+`"}`), "auth_response")
	assert.Equal(t, "invalid_token", old["error"], "the code the Valtronics client refreshes its token on")
	assert.Contains(t, old["message"], "token_expired", "an expired token is told apart from a forged one")

	require.Equal(t, http.StatusOK, h.Connect("p3", nil, nil).StatusCode)
	h.Advance(11 * time.Second)
	late := one(t, h.Send("p3", `{"type":"auth","token":"`+tok+`"}`), "auth_response")
	assert.Equal(t, "auth_timeout", late["error"])
	assert.Contains(t, h.Conns.Deleted(), "p3")
}

func TestMessage_UnknownConnectionIsClosed(t *testing.T) {
	h := gatewaytest.New(t)
	assert.Equal(t, "forbidden", errorCode(t, h.Send("ghost", `{"type":"ping"}`)))
	assert.Contains(t, h.Conns.Deleted(), "ghost")
}

func TestMessage_UnsubscribeChannelLeavesEveryDevice(t *testing.T) {
	h := connected(t)
	one(t, h.Send("c1", `{"type":"subscribe","channel":"telemetry","device_id":[1,2]}`), "subscribed")
	one(t, h.Send("c1", `{"type":"subscribe","channel":"telemetry"}`), "subscribed")
	unsub := one(t, h.Send("c1", `{"type":"unsubscribe","channel":"telemetry"}`), "unsubscribed")
	assert.ElementsMatch(t, []any{"telemetry.1", "telemetry.2", "telemetry.*"}, unsub["topics"])
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	require.Len(t, subs, 1)
	assert.Equal(t, "direct.user.u1", subs[0].Pattern)
}

// However large its batch, a frame's work stops within its budget: the
// commands left are answered "unavailable" (the client sends them again)
// and nothing of them is done.
func TestMessage_FrameWorkIsBounded(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.FrameBudget = time.Nanosecond })
	h.MustConnect("c1", h.Token(auth.Grant{Sub: "u1", Orgs: []string{"acme"}, Topics: []string{"telemetry.>"}}), nil)
	frames := h.Send("c1", `{"type":"batch","messages":[{"type":"subscribe","topic":"telemetry.1","id":1},{"type":"subscribe","topic":"telemetry.2","id":2},{"type":"ping","id":3}]}`)
	require.Len(t, frames, 3)
	assert.Equal(t, "subscribed", decode(t, frames[0])["type"], "the first command always runs")
	for _, f := range frames[1:] {
		m := decode(t, f)
		assert.Equal(t, "error", m["type"])
		assert.Equal(t, "unavailable", m["code"])
	}
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	var pats []string
	for _, s := range subs {
		pats = append(pats, s.Pattern)
	}
	assert.ElementsMatch(t, []string{"direct.user.u1", "telemetry.1"}, pats)
}

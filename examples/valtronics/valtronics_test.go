// Package valtronics_test plays the Valtronics IoT platform's WebSocket
// clients (../shared/seeds/001) against wsgate on the local stack.
package valtronics_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const wait = 10 * time.Second

func deployment(t *testing.T, extra map[string]string) *stack.Stack {
	env := stacktest.LoadEnv(t, "../wsgate.env")
	for k, v := range extra {
		env[k] = v
	}
	return stacktest.Start(t, func(o *stack.Options) { o.Env = env })
}

// Valtronics' backend issues JWTs for its users; the valtronics profile
// carries the API's limits (1 KB messages, 100 per second, 100 connections).
func jwt(t *testing.T, s *stack.Stack, user string) string {
	t.Helper()
	tok, err := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(auth.Grant{
		Sub: user, Profile: "valtronics", Topics: []string{"telemetry.*", "alerts.*", "devices.*", "system.*"},
	})
	require.NoError(t, err)
	return tok
}

// connect plays ValtronicsWebSocket.connect(): open ws://host/ with no
// token, then send {type: 'auth', token}.
func connect(t *testing.T, s *stack.Stack, user string) *stacktest.Client {
	t.Helper()
	c := stacktest.MustDial(t, s.WebSocketURL, nil)
	c.SendJSON(map[string]string{"type": "auth", "token": jwt(t, s, user)})
	resp := c.Expect("auth_response", wait)
	require.Equal(t, true, resp["success"], "%v", resp)
	return c
}

func payload(t *testing.T, file string) string {
	t.Helper()
	b, err := json.Marshal(stacktest.ReadDetails(t, "events/"+file)[0].Payload)
	require.NoError(t, err)
	return string(b)
}

func TestValtronics_AuthMessageAnsweredByAuthResponse(t *testing.T) {
	s := deployment(t, nil)
	c := connect(t, s, "operator")
	c.SendJSON(map[string]any{"type": "subscribe", "channel": "telemetry", "device_id": 1})
	c.Expect("subscribed", wait)
}

func TestValtronics_FailedAuthIsAnsweredThenDisconnected(t *testing.T) {
	s := deployment(t, nil)
	c := stacktest.MustDial(t, s.WebSocketURL, nil)
	c.SendJSON(map[string]string{"type": "auth", "token": "jwt-token"})
	resp := c.Expect("auth_response", wait)
	assert.Equal(t, false, resp["success"])
	assert.Equal(t, "invalid_token", resp["error"], "handleAuthResponse checks data.error === 'invalid_token'")
	assert.NotEmpty(t, resp["message"])
	assert.Equal(t, websocket.StatusNormalClosure, c.CloseStatus(wait))
}

func TestValtronics_LateAuthIsDisconnected(t *testing.T) {
	s := deployment(t, map[string]string{"WSGATE_AUTH_DEADLINE": "2s"})
	c := stacktest.MustDial(t, s.WebSocketURL, nil)
	resp := c.Expect("auth_response", wait)
	assert.Equal(t, false, resp["success"])
	assert.Equal(t, "auth_timeout", resp["error"])
	assert.Equal(t, websocket.StatusNormalClosure, c.CloseStatus(wait))
}

func TestValtronics_ChannelsWithDeviceIDsAndFilters(t *testing.T) {
	s := deployment(t, nil)
	telemetry := connect(t, s, "u-telemetry")
	alerts := connect(t, s, "u-alerts")
	alertTypes := connect(t, s, "u-alert-types")
	devices := connect(t, s, "u-devices")
	system := connect(t, s, "u-system")

	// The seed's own example subscriptions, in both client styles.
	telemetry.SendJSON(map[string]any{"type": "subscribe", "channel": "telemetry", "device_id": 1, "filters": map[string]any{"metrics": []string{"temperature", "humidity"}, "frequency": "real-time"}})
	alerts.SendJSON(map[string]any{"type": "subscribe", "channel": "alerts", "filters": map[string]any{"severity": []string{"critical", "warning"}, "device_id": 1}})
	alertTypes.SendJSON(map[string]any{"type": "subscribe", "channel": "alerts", "alert_type": []string{"connectivity"}}) // JS client: filters spread
	devices.SendJSON(map[string]any{"type": "subscribe", "channel": "devices", "filters": map[string]any{"device_id": []int{1, 2, 3}, "status_types": []string{"online", "offline", "warning"}}})
	system.SendJSON(map[string]any{"type": "subscribe", "channel": "system", "filters": map[string]any{"metrics": []string{"cpu_usage", "memory_usage", "active_connections"}, "frequency": "30s"}})
	for _, c := range []*stacktest.Client{telemetry, alerts, alertTypes, devices, system} {
		c.Expect("subscribed", wait)
	}

	for _, f := range []string{"telemetry-update.json", "alert-info.json", "alert-critical.json", "alert-connectivity-device2.json", "device-maintenance.json", "device-offline.json", "system-status.json"} {
		stacktest.PublishFileAndWait(t, s, "events/"+f)
	}

	// metrics trims the telemetry object to what was asked for.
	got := telemetry.NextJSON(wait)
	assert.Equal(t, "telemetry_update", got["type"])
	assert.Equal(t, []string{"humidity", "temperature"}, keys(got["telemetry"]), "pressure was not asked for")
	telemetry.Quiet(300 * time.Millisecond)

	// severity [critical, warning] on device 1: the info alert and device 2's are not sent.
	assert.JSONEq(t, payload(t, "alert-critical.json"), string(alerts.Next(wait)))
	alerts.Quiet(300 * time.Millisecond)
	assert.JSONEq(t, payload(t, "alert-connectivity-device2.json"), string(alertTypes.Next(wait)), "alert_type filter")
	alertTypes.Quiet(300 * time.Millisecond)

	// devices 1-3, status_types online/offline/warning: maintenance is not sent.
	assert.JSONEq(t, payload(t, "device-offline.json"), string(devices.Next(wait)))
	devices.Quiet(300 * time.Millisecond)

	sys := system.NextJSON(wait)
	assert.Equal(t, []string{"active_connections", "cpu_usage", "memory_usage"}, keys(sys["metrics"]), "disk_usage was not asked for")

	// unsubscribe(channel) leaves the channel.
	telemetry.SendJSON(map[string]any{"type": "unsubscribe", "channel": "telemetry"})
	telemetry.Expect("unsubscribed", wait)
	stacktest.PublishFileAndWait(t, s, "events/telemetry-update.json")
	telemetry.Quiet(500 * time.Millisecond)
}

func keys(v any) []string {
	m, _ := v.(map[string]any)
	out := slices.Collect(maps.Keys(m))
	slices.Sort(out)
	return out
}

func TestValtronics_PingAnsweredByPong(t *testing.T) {
	s := deployment(t, nil)
	c := connect(t, s, "pinger")
	c.SendJSON(map[string]string{"type": "ping", "timestamp": "2024-01-01T12:00:00Z"})
	pong := c.Expect("pong", wait)
	assert.Equal(t, "2024-01-01T12:00:00Z", pong["timestamp"])
}

func TestValtronics_BatchOfUpTo50(t *testing.T) {
	s := deployment(t, nil)
	c := connect(t, s, "batcher")
	// 50 messages within the 1 KB message limit.
	msgs := []map[string]any{{"type": "subscribe", "channel": "alerts", "device_id": 7}}
	for range 49 {
		msgs = append(msgs, map[string]any{"type": "ping"})
	}
	c.SendJSON(map[string]any{"type": "batch", "messages": msgs})
	c.Expect("subscribed", wait)
	for range 49 {
		c.Expect("pong", wait)
	}
	c.SendJSON(map[string]any{"type": "batch", "messages": append(msgs, map[string]any{"type": "ping"})})
	e := c.Expect("error", wait)
	assert.Equal(t, "too_large", e["code"], "51 messages")
	assert.Contains(t, e["message"], "at most 50")
}

func TestValtronics_MessagesOver1KBAreRefused(t *testing.T) {
	s := deployment(t, nil)
	c := connect(t, s, "chatty")
	c.Send(`{"type":"ping","timestamp":"` + strings.Repeat("x", 1100) + `"}`)
	e := c.Expect("error", wait)
	assert.Equal(t, "too_large", e["code"])
	c.SendJSON(map[string]string{"type": "ping"})
	c.Expect("pong", wait)
}

func TestValtronics_MoreThan100MessagesPerSecondAreRefused(t *testing.T) {
	s := deployment(t, nil)
	c := connect(t, s, "flooder")
	accepted := map[string]int{} // by server second
	limited := 0
	for sent := 0; limited == 0 && sent < 3000; sent += 50 {
		for range 50 {
			c.Send(`{"type":"ping"}`)
		}
		for range 50 {
			m := c.NextJSON(wait)
			switch m["type"] {
			case "pong":
				accepted[m["time"].(string)[:19]]++
			case "error":
				require.Equal(t, "rate_limited", m["code"])
				limited++
			}
		}
	}
	require.Positive(t, limited, "the 101st message within a second is refused")
	for second, n := range accepted {
		assert.LessOrEqual(t, n, 100, "accepted in %s", second)
	}
}

func TestValtronics_MoreThan100ConnectionsPerUserAreRefused(t *testing.T) {
	s := deployment(t, nil)
	for i := range 100 {
		c := stacktest.MustDial(t, s.WebSocketURL, nil)
		c.SendJSON(map[string]string{"type": "auth", "token": jwt(t, s, "busy-user")})
		require.Equal(t, true, c.Expect("auth_response", wait)["success"], "connection %d", i+1)
	}
	c := stacktest.MustDial(t, s.WebSocketURL, nil)
	c.SendJSON(map[string]string{"type": "auth", "token": jwt(t, s, "busy-user")})
	resp := c.Expect("auth_response", wait)
	assert.Equal(t, false, resp["success"])
	assert.Equal(t, "too_many_connections", resp["error"])
	assert.Equal(t, websocket.StatusNormalClosure, c.CloseStatus(wait))
	connect(t, s, "another-user")
}

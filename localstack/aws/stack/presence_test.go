package stack_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/apigw"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
)

// presenceOf asks for a topic's presence and returns "ptype:sub" -> connections.
func presenceOf(t *testing.T, c *stacktest.Client, topic string) map[string]int {
	t.Helper()
	c.SendJSON(map[string]any{"type": "presence", "id": "who", "topic": topic})
	m := c.Expect("presence", 10*time.Second)
	require.Equal(t, topic, m["topic"])
	out := map[string]int{}
	for _, e := range m["members"].([]any) {
		mem := e.(map[string]any)
		sub, _ := mem["sub"].(string)
		out[mem["ptype"].(string)+":"+sub] += int(mem["connections"].(float64))
	}
	return out
}

func joinRoom(t *testing.T, s *stack.Stack, g auth.Grant, topic string) *stacktest.Client {
	t.Helper()
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, g)})
	c.SendJSON(map[string]any{"type": "subscribe", "topic": topic})
	c.Expect("subscribed", 10*time.Second)
	return c
}

// presence lists who is subscribed to an exact topic now, with how many
// connections, to principals who may read the topic, on topics
// WSGATE_PRESENCE_TOPICS enables; a connection leaves it when it
// unsubscribes or goes, and one whose $disconnect never came leaves when
// its record expires.
func TestPresence_WhoIsInTheRoom(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvPresenceTopics: "room.*"}
	})
	member := func(sub string) auth.Grant { return auth.Grant{Sub: sub, Topics: []string{"room.*"}} }
	a1 := joinRoom(t, s, member("alice"), "room.1")
	a2 := joinRoom(t, s, member("alice"), "room.1")
	bob := joinRoom(t, s, auth.Grant{Sub: "bob", Type: "device", Topics: []string{"room.*"}}, "room.1")
	joinRoom(t, s, member("carol"), "room.2")
	wild := joinRoom(t, s, member("dave"), "room.*") // a wildcard is not presence in room.1

	assert.Equal(t, map[string]int{"user:alice": 2, "device:bob": 1}, presenceOf(t, wild, "room.1"))
	assert.Equal(t, map[string]int{"user:carol": 1}, presenceOf(t, bob, "room.2"))

	// Leaving: an unsubscribe, a close.
	a2.SendJSON(map[string]any{"type": "unsubscribe", "topic": "room.1"})
	a2.Expect("unsubscribed", 10*time.Second)
	assert.Equal(t, map[string]int{"user:alice": 1, "device:bob": 1}, presenceOf(t, wild, "room.1"))
	require.NoError(t, bob.WS.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return len(presenceOf(t, wild, "room.1")) == 1 }, 10*time.Second, 100*time.Millisecond, "bob left with his connection")

	// A ghost: $disconnect never comes for alice's last connection; her
	// entry goes when its TTL passes (expired at once here).
	in, _, err := storeOf(s).Subscribers(context.Background(), "room.1", "", 10)
	require.NoError(t, err)
	require.Len(t, in, 1)
	s.SetFaults(stack.Faults{Faults: apigw.Faults{SkipDisconnectRate: 1}})
	_ = a1.WS.CloseNow()
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, map[string]int{"user:alice": 1}, presenceOf(t, wild, "room.1"), "no $disconnect: still listed")
	expireConnection(t, s, in[0].ConnectionID, "room.1")
	assert.Empty(t, presenceOf(t, wild, "room.1"), "gone once its record expired")
}

// Nobody sees presence outside their capability or where it is not
// enabled, and a cursor is only one the gateway gave.
func TestPresence_OnlyWithinCapabilityAndWhereEnabled(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvPresenceTopics: "acme.room.*,globex.room.*"}
	})
	joinRoom(t, s, auth.Grant{Sub: "g1", Orgs: []string{"globex"}, Topics: []string{"globex.>"}}, "globex.room.1")
	spy := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "a1", Orgs: []string{"acme"}, Topics: []string{"acme.>", "news.*"}})})
	for _, c := range []struct{ name, cmd, code string }{
		{"another tenant's room", `{"type":"presence","topic":"globex.room.1"}`, "forbidden"},
		{"a topic without presence", `{"type":"presence","topic":"news.today"}`, "forbidden"},
		{"a pattern", `{"type":"presence","topic":"acme.room.*"}`, "bad_request"},
		{"a forged cursor", `{"type":"presence","topic":"acme.room.1","cursor":"%%%"}`, "bad_request"},
	} {
		spy.Send(c.cmd)
		m := spy.Expect("error", 10*time.Second)
		assert.Equal(t, c.code, m["code"], "%s: %v", c.name, m)
	}
	assert.Empty(t, presenceOf(t, spy, "acme.room.1"), "its own tenant's empty room")
}

// announcements reads what c receives for d and returns its joins and
// leaves as "join user:alice".
func announcements(t *testing.T, c *stacktest.Client, d time.Duration) []string {
	t.Helper()
	var out []string
	end := time.Now().Add(d)
	for {
		m, err := c.Read(time.Until(end))
		if errors.Is(err, stacktest.ErrTimeout) {
			return out
		}
		require.NoError(t, err)
		var v map[string]any
		require.NoError(t, json.Unmarshal(m.Data, &v))
		if v["type"] == "join" || v["type"] == "leave" {
			sub, _ := v["sub"].(string)
			out = append(out, fmt.Sprintf("%s %s:%s %s", v["type"], v["ptype"], sub, v["topic"]))
		}
	}
}

// firstAnnouncements reads what c receives until it holds n joins and
// leaves, for at most within (a loaded machine's stream may lag).
func firstAnnouncements(t *testing.T, c *stacktest.Client, n int, within time.Duration) []string {
	t.Helper()
	var out []string
	end := time.Now().Add(within)
	for len(out) < n && time.Now().Before(end) {
		out = append(out, announcements(t, c, 500*time.Millisecond)...)
	}
	return out
}

// Subscribers that ask ("presence": true) learn when a principal's first
// connection joins a presence-enabled topic and its last leaves; a second
// connection of a principal is no news, other subscribers hear nothing, and
// a client flapping in and out is coalesced instead of flooding them.
func TestPresence_JoinAndLeaveReachSubscribersWhoAsked(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvPresenceTopics: "room.*"}
	})
	grant := func(sub string) auth.Grant { return auth.Grant{Sub: sub, Topics: []string{"room.*"}} }
	watcher := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, grant("watcher"))})
	watcher.SendJSON(map[string]any{"type": "subscribe", "topic": "room.1", "presence": true})
	watcher.Expect("subscribed", 10*time.Second)
	own := firstAnnouncements(t, watcher, 1, 15*time.Second) // a loaded machine's stream may lag
	own = append(own, announcements(t, watcher, time.Second)...)
	assert.Equal(t, []string{"join user:watcher room.1"}, own, "its own arrival, once")
	plain := joinRoom(t, s, grant("plain"), "room.1")

	a1 := joinRoom(t, s, grant("alice"), "room.1")
	a2 := joinRoom(t, s, grant("alice"), "room.1")
	got := announcements(t, watcher, 3*time.Second)
	assert.Equal(t, []string{"join user:plain room.1", "join user:alice room.1"}, got, "one join per principal")
	require.NoError(t, a1.WS.Close(websocket.StatusNormalClosure, ""))
	assert.Empty(t, announcements(t, watcher, 2*time.Second), "alice is still there")
	require.NoError(t, a2.WS.Close(websocket.StatusNormalClosure, ""))
	assert.Equal(t, []string{"leave user:alice room.1"}, announcements(t, watcher, 3*time.Second))

	// Flapping: ten subscribes and unsubscribes in one frame.
	bob := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, grant("bob"))})
	var msgs []any
	for range 10 {
		msgs = append(msgs, map[string]any{"type": "subscribe", "topic": "room.1"}, map[string]any{"type": "unsubscribe", "topic": "room.1"})
	}
	bob.SendJSON(map[string]any{"type": "batch", "messages": msgs})
	flaps := announcements(t, watcher, 3*time.Second)
	t.Logf("10 flaps in one frame: %v", flaps)
	// One batch (the 1 s window) folds them all to nothing; a slow machine
	// may split the frame's records across two batches: a join and a leave.
	assert.LessOrEqual(t, len(flaps), 2, "coalesced, not 20 announcements")
	assert.Empty(t, announcements(t, plain, 500*time.Millisecond), "nobody else hears them")

	// presence: true only where presence is enabled, on exact topics.
	for _, topic := range []string{"room.*", "news.today"} {
		bob.SendJSON(map[string]any{"type": "subscribe", "topic": topic, "presence": true})
		m := bob.NextJSON(10 * time.Second)
		for m["type"] == "subscribed" || m["type"] == "unsubscribed" {
			m = bob.NextJSON(10 * time.Second)
		}
		assert.Equal(t, "bad_request", m["code"], "%s: %v", topic, m)
	}
}

// A watcher whose posts fail (every post answered 429 for a while: full
// buffers) holds back neither the stream nor the lifecycle events: each
// lifecycle event reaches the bus once, not once per retry of a batch, and
// the join reaches the watcher once its posts go through again, once.
func TestPresence_FailingPostsHoldBackNothing(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvPresenceTopics: "room.*", config.EnvLifecycleEvents: "true"}
	})
	life := watchLifecycle(t, s)
	grant := func(sub string) auth.Grant { return auth.Grant{Sub: sub, Topics: []string{"room.*"}} }
	watcher := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, grant("watcher"))})
	watcher.SendJSON(map[string]any{"type": "subscribe", "topic": "room.1", "presence": true})
	watcher.Expect("subscribed", 10*time.Second)
	require.Equal(t, []string{"join user:watcher room.1"}, firstAnnouncements(t, watcher, 1, 15*time.Second))

	s.SetFaults(stack.Faults{Faults: apigw.Faults{ThrottleRate: 1}})
	joinRoom(t, s, grant("alice"), "room.1")
	opened := life.of(t, "alice", 1)
	time.Sleep(3 * time.Second) // the batch's retries, if it failed, would re-put alice's event
	s.SetFaults(stack.Faults{})
	assert.Len(t, life.of(t, "alice", 1), len(opened), "alice's connection announced on the bus once")
	assert.Equal(t, []string{"join user:alice room.1"}, announcements(t, watcher, 15*time.Second),
		"the join, once, after the posts went through again")
}

// A principal that subscribes and unsubscribes slower than the stream's
// batching (six pairs, 1.2 s apart) loses no announcement: what reaches a
// watcher alternates join and leave with consecutive seqs (a claimed
// announcement lost would leave a hole) and ends with the leave. A leave
// and the next join that reach the broadcast function in one stream batch
// (it runs longer than the batching window while the function is busy)
// are folded, as a flap within a batch is: the principal was never
// announced gone, and is not announced back.
func TestPresence_SlowFlappingLosesNoAnnouncement(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvPresenceTopics: "room.*"}
	})
	grant := func(sub string) auth.Grant { return auth.Grant{Sub: sub, Topics: []string{"room.*"}} }
	watcher := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, grant("watcher"))})
	watcher.SendJSON(map[string]any{"type": "subscribe", "topic": "room.1", "presence": true})
	watcher.Expect("subscribed", 10*time.Second)
	require.Equal(t, []string{"join user:watcher room.1"}, firstAnnouncements(t, watcher, 1, 15*time.Second))

	bob := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, grant("bob"))})
	for range 6 {
		bob.SendJSON(map[string]any{"type": "subscribe", "topic": "room.1"})
		bob.Expect("subscribed", 10*time.Second)
		time.Sleep(1200 * time.Millisecond)
		bob.SendJSON(map[string]any{"type": "unsubscribe", "topic": "room.1"})
		bob.Expect("unsubscribed", 10*time.Second)
		time.Sleep(1200 * time.Millisecond)
	}
	type ann struct {
		kind string
		seq  int
	}
	var got []ann
	end := time.Now().Add(5 * time.Second)
	for {
		m, err := watcher.Read(time.Until(end))
		if errors.Is(err, stacktest.ErrTimeout) {
			break
		}
		require.NoError(t, err)
		var v struct {
			Type, Sub string
			Seq       int
		}
		require.NoError(t, json.Unmarshal(m.Data, &v))
		if v.Sub == "bob" && (v.Type == "join" || v.Type == "leave") {
			got = append(got, ann{v.Type, v.Seq})
		}
	}
	t.Logf("bob's announcements: %v", got)
	require.NotEmpty(t, got)
	slices.SortFunc(got, func(a, b ann) int { return a.seq - b.seq }) // tasks may deliver two in either order
	for i, a := range got {
		assert.Equal(t, i+1, a.seq, "no announcement lost between two others")
		assert.Equal(t, map[bool]string{true: "join", false: "leave"}[i%2 == 0], a.kind)
	}
	assert.Equal(t, "leave", got[len(got)-1].kind, "bob is gone")
}

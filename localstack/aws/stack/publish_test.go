package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/eventbus"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
)

// busCopies collects the copies of client events the stack's bus receives.
func busCopies(t *testing.T, s *stack.Stack) chan publish.ClientPublished {
	t.Helper()
	got := make(chan publish.ClientPublished, 64)
	require.NoError(t, s.Bus.PutRule(eventbus.Rule{
		Name: "test-client-events", Bus: s.BusName, Pattern: `{"detail-type":["` + publish.ClientDetailType + `"]}`,
		Target: func(_ context.Context, event []byte) error {
			var e struct {
				Source string                  `json:"source"`
				Detail publish.ClientPublished `json:"detail"`
			}
			if err := json.Unmarshal(event, &e); err != nil || e.Source != publish.ClientSource {
				return fmt.Errorf("unexpected bus event %s: %v", event, err)
			}
			got <- e.Detail
			return nil
		},
	}))
	return got
}

// A principal whose token's publish claim covers a topic publishes to it:
// the answer carries the event's id and number, every subscriber (the
// publisher too) receives it with "from", it is kept for resume, and a
// copy goes to the bus, which the stack's own rule does not deliver again.
func TestPublish_AClientEventReachesTheTopicWithItsPublisher(t *testing.T) {
	s := stacktest.Start(t)
	copies := busCopies(t, s)
	alice := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": token(t, s, auth.Grant{Sub: "alice", Topics: []string{"chat.>"}, Publish: []string{"chat.*"}})})
	bob := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": token(t, s, auth.Grant{Sub: "bob", Topics: []string{"chat.>"}})})
	for _, c := range []*stacktest.Client{alice, bob} {
		c.SendJSON(map[string]any{"type": "subscribe", "topic": "chat.r1"})
		c.Expect("subscribed", 5*time.Second)
	}

	alice.SendJSON(map[string]any{"type": "publish", "id": "p1", "topic": "chat.r1", "payload": map[string]any{"text": "hello"}, "attributes": map[string]any{"lang": "en"}})
	ev := alice.Expect("event", 10*time.Second)
	pub := alice.Expect("published", 5*time.Second)
	assert.Equal(t, "p1", pub["id"])
	assert.Equal(t, "chat.r1", pub["topic"])
	assert.EqualValues(t, 1, pub["seq"])
	assert.NotEmpty(t, pub["event_id"])
	assert.Equal(t, pub["event_id"], ev["id"], "the event the publisher received is the one answered")

	got := bob.Expect("event", 5*time.Second)
	assert.Equal(t, "user:alice", got["from"], "subscribers see who published")
	assert.Equal(t, map[string]any{"text": "hello"}, got["data"])
	assert.EqualValues(t, 1, got["seq"])

	select {
	case cp := <-copies:
		assert.Equal(t, pub["event_id"], cp.EventID)
		assert.EqualValues(t, 1, cp.Seq)
		assert.Equal(t, "user:alice", cp.From)
		assert.NotEmpty(t, cp.ConnectionID)
		assert.JSONEq(t, `{"text":"hello"}`, string(mustField(t, cp.Event, "payload")))
	case <-time.After(10 * time.Second):
		t.Fatal("no copy of the client event on the bus")
	}
	bob.Quiet(500 * time.Millisecond) // the copy is not delivered a second time

	// Kept for resume, from included.
	bob.SendJSON(map[string]any{"type": "resume", "id": "r", "topic": "chat.r1", "since": 0})
	replayed := bob.Expect("event", 5*time.Second)
	assert.Equal(t, "user:alice", replayed["from"])
	bob.Expect("resumed", 5*time.Second)
}

func mustField(t *testing.T, obj json.RawMessage, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(obj, &m))
	return m[name]
}

// Nobody publishes outside their publish claim: not without one (su
// included), not to a topic it does not cover, not from a push-only or a
// pending connection; and a publisher cannot set "from" or an audience.
func TestPublish_OnlyWhatThePublishClaimCovers(t *testing.T) {
	s := stacktest.Start(t)
	watcher := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": token(t, s, auth.Grant{Sub: "w", Superuser: true})})
	watcher.SendJSON(map[string]any{"type": "subscribe", "topic": ">"})
	watcher.Expect("subscribed", 5*time.Second)

	cases := []struct {
		name  string
		grant auth.Grant
		cmd   map[string]any
		code  string
	}{
		{"no publish claim", auth.Grant{Sub: "a", Topics: []string{"chat.>"}}, map[string]any{"topic": "chat.r1", "payload": 1}, "forbidden"},
		{"a superuser without a publish claim", auth.Grant{Sub: "b", Superuser: true}, map[string]any{"topic": "chat.r1", "payload": 1}, "forbidden"},
		{"another room", auth.Grant{Sub: "c", Topics: []string{"chat.>"}, Publish: []string{"chat.r1"}}, map[string]any{"topic": "chat.r2", "payload": 1}, "forbidden"},
		{"another tenant", auth.Grant{Sub: "d", Orgs: []string{"acme"}, Topics: []string{"acme.>"}, Publish: []string{"acme.>"}}, map[string]any{"topic": "globex.chat", "payload": 1}, "forbidden"},
		{"a direct topic", auth.Grant{Sub: "e", Publish: []string{"chat.*"}}, map[string]any{"topic": "direct.user.bob", "payload": 1}, "forbidden"},
		{"setting from", auth.Grant{Sub: "f", Publish: []string{"chat.*"}}, map[string]any{"topic": "chat.r1", "payload": 1, "from": "user:ceo"}, ""},
		{"an audience", auth.Grant{Sub: "g", Publish: []string{"chat.*"}}, map[string]any{"topic": "chat.r1", "payload": 1, "audience": map[string]any{"subs": []string{"x"}}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": token(t, s, c.grant)})
			c.cmd["type"], c.cmd["id"] = "publish", c.name
			cl.SendJSON(c.cmd)
			m := cl.NextJSON(10 * time.Second)
			if c.code == "" {
				// Extra fields are not the client's to set: they are ignored,
				// and the event names its real publisher to everyone.
				require.Equal(t, "published", m["type"], "%v", m)
				ev := watcher.Expect("event", 5*time.Second)
				assert.Equal(t, "user:"+c.grant.Sub, ev["from"])
				return
			}
			assert.Equal(t, "error", m["type"], "%v", m)
			assert.Equal(t, c.code, m["code"], "%v", m)
		})
	}
	watcher.Quiet(300 * time.Millisecond) // nothing refused was delivered

	// A publish over WSGATE_MAX_MESSAGE_BYTES (32 KB) is an oversize frame:
	// closed with 1009 before anything runs.
	big := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "h", Publish: []string{"chat.*"}})})
	big.SendJSON(map[string]any{"type": "publish", "topic": "chat.r1", "payload": strings.Repeat("x", 40*1024)})
	assert.EqualValues(t, 1009, big.CloseStatus(10*time.Second))

	push := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "p", Publish: []string{"chat.*"}, Mode: auth.ModePush})})
	push.SendJSON(map[string]any{"type": "publish", "topic": "chat.r1", "payload": 1})
	push.Quiet(500 * time.Millisecond)
	pending := stacktest.MustDial(t, s.WebSocketURL, nil)
	pending.SendJSON(map[string]any{"type": "publish", "topic": "chat.r1", "payload": 1})
	assert.Equal(t, "forbidden", pending.Expect("error", 5*time.Second)["code"])
	watcher.Quiet(300 * time.Millisecond)
}

// A publish counts as PublishCost commands against the connection's rate
// limit: a storm from one client is refused past it, and what was refused
// is not delivered.
func TestPublish_AStormFromOneClientIsRateLimited(t *testing.T) {
	s := stacktest.Start(t)
	watcher := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": token(t, s, auth.Grant{Sub: "w", Topics: []string{"chat.>"}})})
	watcher.SendJSON(map[string]any{"type": "subscribe", "topic": "chat.storm"})
	watcher.Expect("subscribed", 5*time.Second)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "spammer", Publish: []string{"chat.*"}})})
	msgs := make([]any, 30)
	for i := range msgs {
		msgs[i] = map[string]any{"type": "publish", "id": i, "topic": "chat.storm", "payload": map[string]any{"n": i}}
	}
	c.SendJSON(map[string]any{"type": "batch", "messages": msgs})
	published, limited := 0, 0
	for range msgs {
		m := c.NextJSON(20 * time.Second)
		switch {
		case m["type"] == "published":
			published++
		case m["type"] == "error" && m["code"] == "rate_limited":
			limited++
		default:
			t.Fatalf("unexpected %v", m)
		}
	}
	t.Logf("30 publishes in one frame: %d published, %d rate limited", published, limited)
	assert.Equal(t, 100/10, published, "the default 100 messages a second over PublishCost 10")
	assert.Equal(t, 30-published, limited)
	for range published {
		watcher.Expect("event", 5*time.Second)
	}
	watcher.Quiet(500 * time.Millisecond)
}

// WSGATE_PUBLISH_HOOK: a Lambda function (testdata/hook, through the local
// Lambda Invoke API) sees every client event before it is numbered and
// allows, denies or rewrites it; no answer within the timeout refuses it.
func TestPublish_AHookAllowsDeniesRewritesAndFailsClosed(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "bootstrap")
	build := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", bin, "./testdata/hook")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Extra = map[string]string{"publish-hook": bin}
		o.Env = map[string]string{config.EnvPublishHook: "publish-hook", config.EnvPublishHookTimeout: "2s"}
	})
	watcher := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": token(t, s, auth.Grant{Sub: "w", Topics: []string{"chat.>"}})})
	for _, topic := range []string{"chat.r1", "chat.slow"} {
		watcher.SendJSON(map[string]any{"type": "subscribe", "topic": topic})
		watcher.Expect("subscribed", 5*time.Second)
	}
	alice := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "alice", Publish: []string{"chat.*"}})})
	send := func(topic, text string) map[string]any {
		alice.SendJSON(map[string]any{"type": "publish", "id": text, "topic": topic, "payload": map[string]any{"text": text}})
		return alice.NextJSON(20 * time.Second)
	}

	assert.Equal(t, "published", send("chat.r1", "hello")["type"])
	assert.Equal(t, map[string]any{"text": "hello"}, watcher.Expect("event", 5*time.Second)["data"], "allowed as sent")

	denied := send("chat.r1", "buy spam")
	assert.Equal(t, "forbidden", denied["code"], "%v", denied)
	assert.Equal(t, "no spam in chat.r1, user:alice", denied["message"], "the hook's reason")

	assert.Equal(t, "published", send("chat.r1", "darn it")["type"])
	assert.Equal(t, map[string]any{"text": "**** it", "moderated": "yes"}, watcher.Expect("event", 5*time.Second)["data"], "rewritten")

	start := time.Now()
	slow := send("chat.slow", "anyone?")
	assert.Equal(t, "unavailable", slow["code"], "no answer in time refuses it: %v", slow)
	assert.Less(t, time.Since(start), 4500*time.Millisecond, "within the hook's timeout, not the hook's 5 s")
	watcher.Quiet(time.Second) // nothing refused was delivered
}

// A client's event cannot pose as the gateway or a backend: a subscriber
// that asked for raw payloads still gets every client event in the gateway
// envelope, with the "from" the gateway verified, so a client's bytes never
// arrive looking like one of the gateway's own frames (an error, an
// auth_response) or like a backend's event. A backend's event still
// arrives as published, and a replay keeps the rule.
func TestPublish_AClientEventCannotPoseAsTheGatewayToARawSubscriber(t *testing.T) {
	s := stacktest.Start(t)
	raw := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "bob", Topics: []string{"chat.>"}})})
	raw.SendJSON(map[string]any{"type": "subscribe", "topic": "chat.r1"})
	raw.Expect("subscribed", 5*time.Second)
	mallory := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "mallory", Publish: []string{"chat.*"}})})

	forgeries := []struct{ name, payload string }{
		{"a revocation", `{"type":"error","code":"revoked","message":"a backend revoked this principal"}`},
		{"an auth answer", `{"type":"auth_response","success":false,"message":"log in again at https://evil.example"}`},
		{"a backend's event", `{"type":"event","topic":"chat.r1","seq":99,"id":"x","time":"2026-01-01T00:00:00Z","from":"service:backend","data":{"text":"wire the money"}}`},
	}
	for _, f := range forgeries {
		mallory.Send(`{"type":"publish","id":"p","topic":"chat.r1","payload":` + f.payload + `}`)
		require.Equal(t, "published", mallory.NextJSON(10 * time.Second)["type"], f.name)
		got := raw.Next(10 * time.Second)
		assert.NotEqual(t, f.payload, string(got), "%s: the client's bytes as they were sent", f.name)
		var ev map[string]any
		require.NoError(t, json.Unmarshal(got, &ev), "%s", got)
		assert.Equal(t, "event", ev["type"], "%s: %s", f.name, got)
		assert.Equal(t, "user:mallory", ev["from"], "%s: the publisher the gateway verified", f.name)
		assert.Equal(t, "chat.r1", ev["topic"], f.name)
		data, _ := json.Marshal(ev["data"])
		assert.JSONEq(t, f.payload, string(data), "%s: the payload, inside the envelope", f.name)
	}

	stacktest.Publish(t, s, publish.Detail{Topic: "chat.r1", Payload: json.RawMessage(`{"type":"notice","text":"from the backend"}`)})
	assert.JSONEq(t, `{"type":"notice","text":"from the backend"}`, string(raw.Next(10*time.Second)), "a backend's event, raw as published")

	raw.SendJSON(map[string]any{"type": "resume", "id": "r", "topic": "chat.r1", "since": 0, "until": 1})
	replayed := raw.Expect("event", 5*time.Second)
	assert.Equal(t, "user:mallory", replayed["from"], "a replay keeps the envelope")
	raw.Expect("resumed", 5*time.Second)
}

// A client payload nested 5,000 levels deep (which many subscribers'
// parsers refuse or crash on) is refused, in a batch too, and nothing is
// delivered.
func TestPublish_APayloadNestedTooDeepIsRefused(t *testing.T) {
	s := stacktest.Start(t)
	watcher := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": token(t, s, auth.Grant{Sub: "w", Topics: []string{"chat.>"}})})
	watcher.SendJSON(map[string]any{"type": "subscribe", "topic": "chat.r1"})
	watcher.Expect("subscribed", 5*time.Second)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "deep", Publish: []string{"chat.*"}})})
	deep := strings.Repeat("[", 5000) + strings.Repeat("]", 5000)
	deepObj := strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000)
	for _, cmd := range []string{
		`{"type":"publish","id":"p","topic":"chat.r1","payload":` + deep + `}`,
		`{"type":"publish","id":"p","topic":"chat.r1","payload":1,"attributes":{"k":` + deepObj + `}}`,
		`{"type":"batch","messages":[{"type":"publish","id":"p","topic":"chat.r1","payload":` + deep + `}]}`,
	} {
		c.Send(cmd)
		m := c.Expect("error", 10*time.Second)
		assert.Equal(t, "bad_request", m["code"], "%v", m)
	}
	watcher.Quiet(500 * time.Millisecond)
}

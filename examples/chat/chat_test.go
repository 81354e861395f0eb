// Package chat_test reproduces the AWS sample simple-websockets-chat-app
// (connect, send a message, everyone receives it) on wsgate: rooms are
// topics, joining is subscribing, sending is the publish command, and the
// backend's only part is minting each user's token.
package chat_test

import (
	"encoding/json"
	"fmt"
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

// member is a chat user's connection: the token lets it read and post in
// every room (chat.*), as the sample lets every connection post to all.
type member struct {
	name string
	c    *stacktest.Client
}

func join(t *testing.T, s *stack.Stack, name, room string) member {
	t.Helper()
	tok, err := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(auth.Grant{
		Sub: name, Topics: []string{"chat.*"}, Publish: []string{"chat.*"},
	})
	require.NoError(t, err)
	m := member{name, stacktest.MustDial(t, s.WebSocketURL, map[string]string{"envelope": "1", "token": tok})}
	m.c.SendJSON(map[string]any{"type": "subscribe", "id": "join", "topic": "chat." + room})
	m.c.Expect("subscribed", wait)
	return m
}

// send is the sample's {"action":"sendmessage","data":...} as a publish.
func (m member) send(t *testing.T, room, text string) {
	t.Helper()
	m.c.SendJSON(map[string]any{"type": "publish", "id": text, "topic": "chat." + room, "payload": map[string]any{"text": text}})
}

// receive waits for the next chat message and returns "from: text".
func (m member) receive(t *testing.T) string {
	t.Helper()
	for {
		msg := m.c.NextJSON(wait)
		switch msg["type"] {
		case "published":
			continue // the sender's own answer
		case "event":
			data, _ := msg["data"].(map[string]any)
			return fmt.Sprintf("%v: %v", msg["from"], data["text"])
		default:
			t.Fatalf("%s got %v", m.name, msg)
		}
	}
}

// quiet asserts the member receives no chat message for d (the answers to
// its own sends aside).
func (m member) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		msg, err := m.c.Read(time.Until(end))
		if err != nil {
			require.ErrorIs(t, err, stacktest.ErrTimeout)
			return
		}
		var v map[string]any
		require.NoError(t, json.Unmarshal(msg.Data, &v))
		require.Equal(t, "published", v["type"], "%s received %s", m.name, msg.Data)
	}
}

func TestChat_EveryoneInTheRoomReceivesEachMessageInOrder(t *testing.T) {
	s := stacktest.Start(t)
	alice, bob, carol := join(t, s, "alice", "lobby"), join(t, s, "bob", "lobby"), join(t, s, "carol", "lobby")
	dave := join(t, s, "dave", "kitchen")

	alice.send(t, "lobby", "hello everyone")
	assert.Equal(t, "user:alice: hello everyone", alice.receive(t), "the sender too, as in the sample")
	ans := alice.c.Expect("published", wait)
	assert.EqualValues(t, 1, ans["seq"], "the sender learns the message's number in the room")
	for _, m := range []member{bob, carol} {
		assert.Equal(t, "user:alice: hello everyone", m.receive(t), m.name)
	}

	// Messages a second apart keep their order in every member's stream.
	bob.send(t, "lobby", "hi alice")
	time.Sleep(1100 * time.Millisecond)
	carol.send(t, "lobby", "hi both")
	for _, m := range []member{alice, bob, carol} {
		assert.Equal(t, []string{"user:bob: hi alice", "user:carol: hi both"}, []string{m.receive(t), m.receive(t)}, m.name)
	}

	// Rooms are apart: the kitchen heard nothing, and its message stays there.
	dave.quiet(t, 300*time.Millisecond)
	dave.send(t, "kitchen", "dinner at 8")
	assert.Equal(t, "user:dave: dinner at 8", dave.receive(t))
	for _, m := range []member{alice, bob, carol} {
		m.quiet(t, 300*time.Millisecond)
	}
}

// A member who drops and comes back asks for what was said meanwhile
// (resume from the last number it saw): chat messages are kept for resume
// by default (WSGATE_CLIENT_HISTORY).
func TestChat_AMemberWhoReconnectsCatchesUp(t *testing.T) {
	s := stacktest.Start(t)
	alice, bob := join(t, s, "alice", "lobby"), join(t, s, "bob", "lobby")
	alice.send(t, "lobby", "one")
	assert.Equal(t, "user:alice: one", bob.receive(t))
	require.NoError(t, bob.c.WS.Close(websocket.StatusNormalClosure, "leaving"))

	alice.send(t, "lobby", "two")
	alice.send(t, "lobby", "three")
	for range 2 {
		alice.receive(t)
	}
	bob = join(t, s, "bob", "lobby")
	bob.c.SendJSON(map[string]any{"type": "resume", "id": "catch-up", "topic": "chat.lobby", "since": 1})
	got := []string{bob.receive(t), bob.receive(t)}
	assert.ElementsMatch(t, []string{"user:alice: two", "user:alice: three"}, got, "what was said while away")
	bob.c.Expect("resumed", wait)
}

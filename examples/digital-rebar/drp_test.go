// Package drp_test plays Digital Rebar Provision's WebSocket event stream
// client (../shared/seeds/003) against wsgate on the local stack.
package drp_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const wait = 10 * time.Second

func deployment(t *testing.T) *stack.Stack {
	env := stacktest.LoadEnv(t, "../wsgate.env")
	return stacktest.Start(t, func(o *stack.Options) { o.Env = env })
}

// DRP mints a token for a user whose role may see profiles and machines,
// but not params.
func token(t *testing.T, s *stack.Stack) string {
	t.Helper()
	tok, err := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(auth.Grant{
		Sub: "rocketskates", Topics: []string{"profiles.>", "machines.>"},
	})
	require.NoError(t, err)
	return tok
}

func publish(t *testing.T, s *stack.Stack, files ...string) {
	t.Helper()
	for _, f := range files {
		stacktest.PublishFileAndWait(t, s, "events/"+f)
	}
}

// event reads the next message as a DRP event.
func event(t *testing.T, c *stacktest.Client) map[string]any {
	t.Helper()
	m := c.NextJSON(wait)
	for _, k := range []string{"Time", "Type", "Action", "Key", "Object"} {
		assert.Contains(t, m, k)
	}
	assert.Len(t, m, 5, "exactly {Time, Type, Action, Key, Object}")
	return m
}

func payload(t *testing.T, file string) string {
	t.Helper()
	b, err := json.Marshal(stacktest.ReadDetails(t, "events/"+file)[0].Payload)
	require.NoError(t, err)
	return string(b)
}

func TestDRP_TokenInTheQueryString(t *testing.T) {
	s := deployment(t)
	for _, param := range []string{"Token", "token"} {
		c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{param: token(t, s)})
		c.Send("register profiles.*.*")
		c.Quiet(300 * time.Millisecond) // success answers nothing
	}
	_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"Token": "rocketskates:r0cketsk8ts"}, nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "credentials are not a token")
}

func TestDRP_RegisterProfilesReceivesProfileEventsOnly(t *testing.T) {
	s := deployment(t)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"Token": token(t, s)})
	c.Send("register profiles.*.*")
	c.Quiet(300 * time.Millisecond)
	publish(t, s, "profile-param-set.json", "machine-update.json", "profile-param-removed.json")
	assert.JSONEq(t, payload(t, "profile-param-set.json"), string(mustJSON(t, event(t, c))))
	assert.JSONEq(t, payload(t, "profile-param-removed.json"), string(mustJSON(t, event(t, c))))
	c.Quiet(500 * time.Millisecond)
}

func TestDRP_WildcardsPerFieldSeveralRegistrationsAndDeregister(t *testing.T) {
	s := deployment(t)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"Token": token(t, s)})
	c.Send("register *.save.*")
	c.Send("register machines.*.m1.example.com") // a key holding dots
	c.Quiet(300 * time.Millisecond)

	publish(t, s, "profile-param-set.json", "machine-create.json", "machine-update.json")
	first, second := event(t, c), event(t, c)
	assert.Equal(t, "profiles", first["Type"])
	assert.Equal(t, "m1.example.com", second["Key"], "m2's create matches neither registration")
	c.Quiet(300 * time.Millisecond)

	c.Send("deregister *.save.*")
	c.Quiet(300 * time.Millisecond)
	publish(t, s, "profile-param-removed.json", "machine-update.json")
	assert.Equal(t, "machines", event(t, c)["Type"])
	c.Quiet(300 * time.Millisecond)
}

func TestDRP_RegisterEverythingReceivesAllTheUserMaySeeAndNothingElse(t *testing.T) {
	s := deployment(t)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"Token": token(t, s)})
	c.Send("register *.*.*")
	c.Quiet(300 * time.Millisecond)
	publish(t, s, "param-create.json", "profile-param-set.json", "machine-create.json", "machine-update.json")
	var types []string
	for range 3 {
		types = append(types, event(t, c)["Type"].(string))
	}
	assert.ElementsMatch(t, []string{"profiles", "machines", "machines"}, types)
	c.Quiet(500 * time.Millisecond) // not the params event: this user may not see params
}

func TestDRP_BadCommandsAnswerAnErrorLine(t *testing.T) {
	s := deployment(t)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"Token": token(t, s)})
	c.Send("register profiles")
	assert.Equal(t, "bad_request", c.Expect("error", wait)["code"])
	c.Send("register params.*.*")
	assert.Equal(t, "forbidden", c.Expect("error", wait)["code"], "nothing of params is visible to this user")
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// Package topology_test plays OpenWISP network-topology's WebSocket client
// (../shared/seeds/000) against wsgate on the local stack.
package topology_test

import (
	"encoding/json"
	"net/http"
	"os"
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

const (
	rome      = "topology.8f2e6b3c-1a4d-4c2e-9b7a-5d6f0e1c2a3b"
	community = "topology.3a9d0c1e-7b2f-4e6a-8c5d-1f0e2d3c4b5a"
)

// deployment runs the stack with the settings that serve all five seeds,
// plus extra ones.
func deployment(t *testing.T, extra map[string]string) *stack.Stack {
	env := stacktest.LoadEnv(t, "../wsgate.env")
	for k, v := range extra {
		env[k] = v
	}
	return stacktest.Start(t, func(o *stack.Options) { o.Env = env })
}

// OpenWISP's backend mints a token for a user who manages the organizations
// listed and holds topology.view_topology in them.
func token(t *testing.T, s *stack.Stack, sub string, orgs []string, su bool) string {
	t.Helper()
	tok, err := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(auth.Grant{
		Sub: sub, Orgs: orgs, Superuser: su, Topics: []string{"topology.*"},
	})
	require.NoError(t, err)
	return tok
}

func payloadOf(t *testing.T, path string) string {
	t.Helper()
	d := stacktest.ReadDetails(t, path)
	require.Len(t, d, 1)
	b, err := json.Marshal(d[0].Payload)
	require.NoError(t, err)
	return string(b)
}

func TestTopology_BroadcastTopologyOnNodeLinkAndPropertyChanges(t *testing.T) {
	s := deployment(t, nil)
	stacktest.PublishFileAndWait(t, s, "events/topology-saved.json")
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"topic": rome, "token": token(t, s, "manager", []string{"rome-isp"}, false)})
	for _, f := range []string{"events/node-added.json", "events/link-changed.json", "events/properties-changed.json"} {
		stacktest.PublishFile(t, s, f)
		got := c.Next(10 * time.Second)
		assert.JSONEq(t, payloadOf(t, f), string(got), f)
		var m map[string]any
		require.NoError(t, json.Unmarshal(got, &m))
		assert.Equal(t, "broadcast_topology", m["type"])
	}
}

func TestTopology_BrowserSessionCookieConnects(t *testing.T) {
	s := deployment(t, nil)
	stacktest.PublishFileAndWait(t, s, "events/topology-saved.json")
	// The browser sends the page's origin, which WSGATE_ALLOWED_ORIGINS lists.
	headers := http.Header{
		"Cookie": {"csrftoken=x; wsgate_session=" + token(t, s, "browser-user", []string{"rome-isp"}, false)},
		"Origin": {"http://localhost:4510"},
	}
	c, _, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"topic": rome}, &websocket.DialOptions{HTTPHeader: headers})
	require.NoError(t, err)
	stacktest.PublishFile(t, s, "events/node-added.json")
	assert.JSONEq(t, payloadOf(t, "events/node-added.json"), string(c.Next(10*time.Second)))
}

func TestTopology_UnknownTopologyOrUnauthorizedUserIsClosedAtOnce(t *testing.T) {
	s := deployment(t, nil)
	stacktest.PublishFileAndWait(t, s, "events/topology-saved.json")
	cases := []struct {
		name   string
		query  map[string]string
		status int
	}{
		{"unknown topology", map[string]string{"topic": "topology.00000000-0000-0000-0000-000000000000", "token": token(t, s, "manager", []string{"rome-isp"}, false)}, http.StatusNotFound},
		{"manager of another organization", map[string]string{"topic": rome, "token": token(t, s, "other", []string{"milan-isp"}, false)}, http.StatusForbidden},
		{"not logged in (auth required)", map[string]string{"topic": rome}, http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, resp, err := stacktest.Dial(t, s.WebSocketURL, c.query, nil)
			require.Error(t, err, "the handshake is refused: the client never gets an open connection")
			require.NotNil(t, resp)
			assert.Equal(t, c.status, resp.StatusCode)
		})
	}
	su := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"topic": rome, "token": token(t, s, "admin", nil, true)})
	stacktest.PublishFile(t, s, "events/link-changed.json")
	assert.JSONEq(t, payloadOf(t, "events/link-changed.json"), string(su.Next(10*time.Second)), "a superuser sees every topology")
}

// OPENWISP_NETWORK_TOPOLOGY_API_AUTH_REQUIRED = False: any client may
// connect to an existing topology, without logging in.
func TestTopology_AnonymousModeAdmitsUnauthenticatedClientsToExistingTopologies(t *testing.T) {
	s := deployment(t, map[string]string{"WSGATE_ANONYMOUS_TOPICS": "topology.*"})
	stacktest.PublishFileAndWait(t, s, "events/public-topology-saved.json")
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"topic": community})
	stacktest.Publish(t, s, stacktest.ReadDetails(t, "events/public-topology-saved.json")...)
	assert.JSONEq(t, payloadOf(t, "events/public-topology-saved.json"), string(c.Next(10*time.Second)))

	_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"topic": "topology.00000000-0000-0000-0000-000000000000"}, nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "only existing topologies")
}

func TestTopology_ClientMessagesAreIgnored(t *testing.T) {
	s := deployment(t, nil)
	stacktest.PublishFileAndWait(t, s, "events/topology-saved.json")
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"topic": rome, "token": token(t, s, "manager", []string{"rome-isp"}, false)})
	for _, m := range []string{`{"type":"subscribe","topic":"topology.*"}`, `hello`, `{"type":"request_current_state"}`, `{"nonsense":true}`, `[1,2,3]`} {
		c.Send(m)
	}
	c.Quiet(time.Second)
	stacktest.PublishFile(t, s, "events/node-added.json")
	assert.JSONEq(t, payloadOf(t, "events/node-added.json"), string(c.Next(10*time.Second)), "the connection stays open")
}

func TestMain_EventFilesAreValid(t *testing.T) {
	entries, err := os.ReadDir("events")
	require.NoError(t, err)
	for _, e := range entries {
		require.NotEmpty(t, stacktest.ReadDetails(t, "events/"+e.Name()))
	}
}

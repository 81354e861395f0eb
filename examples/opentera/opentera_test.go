// Package opentera_test plays OpenTera's user, participant and device
// websockets (../shared/seeds/004) against wsgate on the local stack.
package opentera_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

const (
	wait     = 10 * time.Second
	userU1   = "c1111111-1111-4111-8111-111111111111"
	partP1   = "a1111111-1111-4111-8111-111111111111"
	partP2   = "a2222222-2222-4222-8222-222222222222"
	deviceD1 = "d1111111-1111-4111-8111-111111111111"
)

func deployment(t *testing.T, opts ...func(*stack.Options)) *stack.Stack {
	env := stacktest.LoadEnv(t, "../wsgate.env")
	return stacktest.Start(t, append([]func(*stack.Options){func(o *stack.Options) { o.Env = env }}, opts...)...)
}

// eventSets are the events each websocket type subscribes to, as
// OpenTera's UserEventManager, ParticipantEventManager and
// DeviceEventManager define them; direct events come with every connection.
func eventSets(ptype, uuid string) []string {
	switch ptype {
	case "user":
		return []string{"opentera.usermanager.*", "opentera.session.*", "opentera.device.*", "opentera.participant.*", "opentera.user.*"}
	case "participant":
		return []string{"opentera.device.*", "opentera.participant." + uuid, "opentera.session.*"}
	case "device":
		return []string{"opentera.device." + uuid, "opentera.participant.*", "opentera.session.*"}
	}
	return nil
}

// login plays OpenTera's login call with with_websocket: it returns a
// connect URL valid for 60 seconds, once. projects are what the principal
// may see; events carry theirs as audience.
func login(t *testing.T, s *stack.Stack, now time.Time, ptype, uuid string, projects ...string) string {
	t.Helper()
	m := auth.Minter{Alg: "HS256", Key: []byte(s.Secret), Now: func() time.Time { return now }}
	ticket, err := m.Ticket(auth.Grant{Sub: uuid, Type: ptype, Orgs: projects, Subscribe: eventSets(ptype, uuid), Mode: auth.ModePush})
	require.NoError(t, err)
	u, err := auth.ConnectURL(s.WebSocketURL, ticket, nil)
	require.NoError(t, err)
	return u
}

func dial(t *testing.T, url string) (*stacktest.Client, *http.Response, error) {
	t.Helper()
	return stacktest.Dial(t, url, nil, nil)
}

func mustDial(t *testing.T, url string) *stacktest.Client {
	t.Helper()
	c, resp, err := dial(t, url)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	return c
}

// protobuf reads an event file's bytes, as published.
func protobuf(t *testing.T, file string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(stacktest.ReadDetails(t, "events/"+file)[0].PayloadBase64)
	require.NoError(t, err)
	return b
}

func TestOpenTera_LoginURLIsSingleUseAndValidFor60Seconds(t *testing.T) {
	s := deployment(t)
	url := login(t, s, time.Now(), "participant", partP1, "project-1")
	mustDial(t, url)
	_, resp, err := dial(t, url)
	require.Error(t, err)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "second use")

	late := login(t, s, time.Now().Add(-62*time.Second), "participant", partP1, "project-1")
	_, resp, err = dial(t, late)
	require.Error(t, err)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "requested more than 60 s ago")
}

func TestOpenTera_EachWebsocketTypeReceivesItsEventSetFilteredToWhatItMaySee(t *testing.T) {
	s := deployment(t)
	user := mustDial(t, login(t, s, time.Now(), "user", userU1, "project-1"))
	participant := mustDial(t, login(t, s, time.Now(), "participant", partP1, "project-1"))
	device := mustDial(t, login(t, s, time.Now(), "device", deviceD1, "project-1"))

	published := []string{"device-online.json", "participant-joined.json", "participant-other-project.json", "session-started.json", "user-connected.json", "usermanager-event.json"}
	for _, f := range published {
		stacktest.PublishFileAndWait(t, s, "events/"+f)
	}
	want := map[*stacktest.Client][]string{
		// everything of project 1; not project 2's participant
		user: {"device-online.json", "participant-joined.json", "session-started.json", "user-connected.json", "usermanager-event.json"},
		// devices, itself among participants, sessions
		participant: {"device-online.json", "participant-joined.json", "session-started.json"},
		// itself among devices, participants it may see, sessions
		device: {"device-online.json", "participant-joined.json", "session-started.json"},
	}
	for c, files := range want {
		for _, f := range files {
			m, err := c.Read(wait)
			require.NoError(t, err, f)
			assert.Equal(t, websocket.MessageBinary, m.Type, "protobuf travels in binary frames")
			assert.True(t, bytes.Equal(protobuf(t, f), m.Data), "%s arrives byte for byte", f)
		}
		c.Quiet(300 * time.Millisecond)
	}
}

func TestOpenTera_DirectEventReachesOnlyThatPrincipalsConnections(t *testing.T) {
	s := deployment(t)
	first := mustDial(t, login(t, s, time.Now(), "participant", partP1, "project-1"))
	second := mustDial(t, login(t, s, time.Now(), "participant", partP1, "project-1"))
	other := mustDial(t, login(t, s, time.Now(), "participant", partP2, "project-1"))
	userSameUUID := mustDial(t, login(t, s, time.Now(), "user", partP1, "project-1"))

	stacktest.PublishFileAndWait(t, s, "events/direct-to-participant.json")
	want := protobuf(t, "direct-to-participant.json")
	for _, c := range []*stacktest.Client{first, second} {
		m, err := c.Read(wait)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(want, m.Data), "byte-exact protobuf")
	}
	other.Quiet(300 * time.Millisecond)
	userSameUUID.Quiet(300 * time.Millisecond) // direct topics are per principal type
}

func TestOpenTera_ServerToClientOnly(t *testing.T) {
	s := deployment(t)
	c := mustDial(t, login(t, s, time.Now(), "device", deviceD1, "project-1"))
	c.Send(`{"type":"subscribe","topic":"opentera.user.*"}`)
	c.Send(`hello`)
	c.Quiet(500 * time.Millisecond)
	stacktest.PublishFileAndWait(t, s, "events/user-connected.json")
	c.Quiet(300 * time.Millisecond) // the subscribe was ignored: no user events
	stacktest.PublishFileAndWait(t, s, "events/device-online.json")
	_, err := c.Read(wait)
	assert.NoError(t, err, "the connection stays and receives its own set")
}

// OpenTera pings every 10 s and closes clients that stop answering. API
// Gateway closes connections idle for 10 minutes (here 2 s): a client that
// stops answering goes, and its records with it; one that pings stays.
func TestOpenTera_ClientThatStopsAnsweringIsDetectedAndRemoved(t *testing.T) {
	s := deployment(t, func(o *stack.Options) { o.IdleTimeout = 2 * time.Second })
	st := store.New(dynamolocal.Client(s.DynamoDBEndpoint), s.Table)
	alive := mustDial(t, login(t, s, time.Now(), "participant", partP1, "project-1"))
	silent := mustDial(t, login(t, s, time.Now(), "participant", partP2, "project-1"))
	count := func(p string) int {
		n, err := st.CountConnections(context.Background(), auth.Identity{Type: "participant", Sub: p})
		require.NoError(t, err)
		return n
	}
	require.Equal(t, 1, count(partP2))

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = alive.WS.Write(context.Background(), websocket.MessageText, []byte(`{"type":"ping"}`))
			}
		}
	}()
	assert.Equal(t, websocket.StatusGoingAway, silent.CloseStatus(wait))
	require.Eventually(t, func() bool { return count(partP2) == 0 }, wait, 50*time.Millisecond, "its connection record was removed")
	assert.False(t, alive.Closed())
	assert.Equal(t, 1, count(partP1))
}

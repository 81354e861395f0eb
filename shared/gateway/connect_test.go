package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/topic"
)

func TestMain(m *testing.M) { storetest.Main(m) }

var user = auth.Grant{Sub: "u1", Orgs: []string{"acme"}, Topics: []string{"telemetry.>", "topology.*"}}

func TestConnect_TokenSourcesAndSubprotocolEcho(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.TokenCookie = "wsgate_session"
		c.AllowedOrigins = origins(t, "https://app.example.com")
	})
	tok := h.Token(user)
	cases := []struct {
		name     string
		query    map[string]string
		headers  map[string]string
		protocol string
	}{
		{"query token", map[string]string{"token": tok}, nil, ""},
		{"query Token", map[string]string{"Token": tok}, nil, ""},
		{"authorization header", nil, map[string]string{"Authorization": "Bearer " + tok}, ""},
		{"subprotocol, echoing the app protocol", nil, map[string]string{"Sec-WebSocket-Protocol": "wsgate, bearer." + tok}, "wsgate"},
		{"subprotocol alone is echoed", nil, map[string]string{"Sec-WebSocket-Protocol": "bearer." + tok}, "bearer." + tok},
		{"cookie", nil, map[string]string{"Cookie": "theme=dark; wsgate_session=" + tok, "Origin": "https://app.example.com"}, ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("conn-%d", i)
			resp := h.Connect(id, c.query, c.headers)
			require.Equal(t, http.StatusOK, resp.StatusCode, resp.Body)
			assert.Equal(t, c.protocol, resp.Headers["Sec-WebSocket-Protocol"])
			conn, err := h.Store.GetConnection(context.Background(), id)
			require.NoError(t, err)
			assert.Equal(t, "u1", conn.Principal.Sub)
			subs, err := h.Store.ConnectionSubscriptions(context.Background(), id)
			require.NoError(t, err)
			require.Len(t, subs, 1)
			assert.Equal(t, "direct.user.u1", subs[0].Pattern, "every connection gets its direct topic")
		})
	}
}

func TestConnect_Refusals(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.AnonymousTopics = []topic.Pattern{topic.MustPattern("public.>")}
		c.StateRequiredTopics = []topic.Pattern{topic.MustPattern("topology.*")}
		c.Limits.MaxSubscriptions = 3
	})
	require.NoError(t, h.Publish("state-1", `{"topic":"topology.acme1","state":[{"type":"broadcast_topology"}],"audience":{"orgs":["acme"]}}`))
	require.NoError(t, h.Publish("state-2", `{"topic":"topology.globex1","state":[{"type":"broadcast_topology"}],"audience":{"orgs":["globex"]}}`))
	tok := h.Token(user)
	manySubs := h.Token(auth.Grant{Sub: "u2", Subscribe: []string{"a", "b", "c"}})
	other := h.Token(auth.Grant{Sub: "u3", Profile: "nope"})

	cases := []struct {
		name   string
		query  map[string]string
		status int
	}{
		{"no token and no scope without auth-message mode is handled below", nil, 0},
		{"anonymous scope not public", map[string]string{"topic": "telemetry.1"}, http.StatusUnauthorized},
		{"bad token", map[string]string{"token": "nope"}, http.StatusUnauthorized},
		{"scope outside the capability", map[string]string{"token": tok, "topic": "alerts.1"}, http.StatusForbidden},
		{"scope needing state that has none", map[string]string{"token": tok, "topic": "topology.unknown"}, http.StatusNotFound},
		{"scope whose state is for another org", map[string]string{"token": tok, "topic": "topology.globex1"}, http.StatusForbidden},
		{"bad topic", map[string]string{"token": tok, "topic": "a..b"}, http.StatusBadRequest},
		{"wildcard scope", map[string]string{"token": tok, "topic": "telemetry.*"}, http.StatusBadRequest},
		{"since without topic", map[string]string{"token": tok, "since": "3"}, http.StatusBadRequest},
		{"since not a number", map[string]string{"token": tok, "topic": "telemetry.1", "since": "x"}, http.StatusBadRequest},
		{"unknown profile", map[string]string{"token": other}, http.StatusForbidden},
		{"token subscribing to more than allowed", map[string]string{"token": manySubs}, http.StatusForbidden},
		{"allowed scope", map[string]string{"token": tok, "topic": "topology.acme1"}, http.StatusOK},
		{"public scope without token", map[string]string{"topic": "public.news"}, http.StatusOK},
	}
	for i, c := range cases {
		if c.status == 0 {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("r-%d", i)
			resp := h.Connect(id, c.query, nil)
			assert.Equal(t, c.status, resp.StatusCode, resp.Body)
			_, err := h.Store.GetConnection(context.Background(), id)
			if c.status == http.StatusOK {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, store.ErrNotFound, "a refused connection leaves nothing behind")
			}
		})
	}

	noAuthMsg := gatewaytest.New(t, func(c *config.Config) { c.AuthMessage = false })
	assert.Equal(t, http.StatusUnauthorized, noAuthMsg.Connect("x", nil, nil).StatusCode)

	su := h.Token(auth.Grant{Sub: "root", Superuser: true})
	assert.Equal(t, http.StatusOK, h.Connect("su", map[string]string{"token": su, "topic": "topology.globex1"}, nil).StatusCode, "superusers see every topic")
}

func TestRoutes_RequestWithoutConnectionIDIsRefusedAndWritesNothing(t *testing.T) {
	h := gatewaytest.New(t)
	assert.Equal(t, http.StatusBadRequest, h.Connect("", nil, nil).StatusCode, "no pending connection, no auth deadline task")
	assert.Equal(t, http.StatusBadRequest, h.Connect("", map[string]string{"token": h.Token(user)}, nil).StatusCode)
	assert.Empty(t, h.Send("", `{"type":"ping"}`))
	h.Disconnect("")
	_, err := h.Store.GetConnection(context.Background(), "")
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestConnect_TokenAttacksRefused(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.JWTIssuer = "https://idp"; c.JWTAudience = "wsgate" })
	good := h.Token(user)
	parts := strings.Split(good, ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	su := strings.Replace(string(claims), `"sub":"u1"`, `"sub":"u1","su":true`, 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(su)) + "." + parts[2]
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "su": true, "iss": "https://idp", "aud": "wsgate", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	rs, _ := auth.Minter{Alg: "RS256", Key: key, Issuer: "https://idp", Audience: "wsgate"}.Token(auth.Grant{Sub: "u1"})
	expired, _ := auth.Minter{Alg: "HS256", Key: []byte(gatewaytest.Secret), Issuer: "https://idp", Audience: "wsgate", Now: func() time.Time { return h.Now.Add(-3 * time.Hour) }}.Token(auth.Grant{Sub: "u1"})
	wrongAud, _ := auth.Minter{Alg: "HS256", Key: []byte(gatewaytest.Secret), Issuer: "https://idp", Audience: "other"}.Token(auth.Grant{Sub: "u1"})
	wrongIss, _ := auth.Minter{Alg: "HS256", Key: []byte(gatewaytest.Secret), Issuer: "https://evil", Audience: "wsgate"}.Token(auth.Grant{Sub: "u1"})

	for name, tok := range map[string]string{
		"tampered claims": tampered, "alg none": none, "RS256 against HS256": rs,
		"expired": expired, "wrong audience": wrongAud, "wrong issuer": wrongIss,
	} {
		t.Run(name, func(t *testing.T) {
			resp := h.Connect("attack", map[string]string{"token": tok}, nil)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.NotContains(t, resp.Body, tok)
		})
	}
	assert.Equal(t, http.StatusOK, h.Connect("ok", map[string]string{"token": good}, nil).StatusCode)
}

func TestConnect_RefusalIsJSONWithTheReason(t *testing.T) {
	h := gatewaytest.New(t)
	expired, _ := auth.Minter{Alg: "HS256", Key: []byte(gatewaytest.Secret), Now: func() time.Time { return h.Now.Add(-3 * time.Hour) }}.Token(auth.Grant{Sub: "u1"})
	for _, c := range []struct{ name, token, reason string }{
		{"expired token", expired, "token_expired"},
		{"bad token", "nope", "invalid token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := h.Connect("refused", map[string]string{"token": c.token}, nil)
			assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Headers["Content-Type"])
			assert.JSONEq(t, `{"message":"`+c.reason+`"}`, resp.Body)
		})
	}
}

func TestConnect_TicketIsSingleUse(t *testing.T) {
	h := gatewaytest.New(t)
	ticket := h.Ticket(auth.Grant{Sub: "p1", Type: "participant"})
	assert.Equal(t, http.StatusOK, h.Connect("t1", map[string]string{"token": ticket}, nil).StatusCode)
	assert.Equal(t, http.StatusUnauthorized, h.Connect("t2", map[string]string{"token": ticket}, nil).StatusCode, "replayed ticket")
	late := h.Ticket(auth.Grant{Sub: "p1", Type: "participant"})
	h.Advance(2 * time.Minute)
	assert.Equal(t, http.StatusUnauthorized, h.Connect("t3", map[string]string{"token": late}, nil).StatusCode, "late ticket")
}

func TestConnect_ConnectionsPerPrincipalCap(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.Limits.MaxConnectionsPerPrincipal = 3 })
	tok := h.Token(user)
	for i := range 3 {
		require.Equal(t, http.StatusOK, h.Connect(fmt.Sprintf("c%d", i), map[string]string{"token": tok}, nil).StatusCode)
	}
	assert.Equal(t, http.StatusTooManyRequests, h.Connect("c3", map[string]string{"token": tok}, nil).StatusCode)
	h.Disconnect("c0")
	assert.Equal(t, http.StatusOK, h.Connect("c4", map[string]string{"token": tok}, nil).StatusCode, "a closed connection frees its place")
	other := h.Token(auth.Grant{Sub: "u2"})
	assert.Equal(t, http.StatusOK, h.Connect("o1", map[string]string{"token": other}, nil).StatusCode, "the cap is per principal")
}

func TestConnect_PendingAndReplayScheduleTasks(t *testing.T) {
	h := gatewaytest.New(t)
	require.Equal(t, http.StatusOK, h.Connect("pending", nil, nil).StatusCode)
	c, err := h.Store.GetConnection(context.Background(), "pending")
	require.NoError(t, err)
	assert.True(t, c.Pending)
	tasks, delays := h.Tasks.Take()
	require.Len(t, tasks, 1)
	assert.Equal(t, queue.Task{Kind: queue.KindAuthDeadline, ConnectionID: "pending"}, tasks[0])
	assert.Equal(t, config.DefaultAuthDeadline, delays[0])
	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "pending")
	require.NoError(t, err)
	assert.Empty(t, subs, "a pending connection subscribes to nothing")

	h.MustConnect("replayer", h.Token(user), map[string]string{"topic": "telemetry.1", "since": "4", "envelope": "1"})
	tasks, _ = h.Tasks.Take()
	assert.Equal(t, []queue.Task{
		{Kind: queue.KindTokenExpiry, ConnectionID: "replayer"},
		{Kind: queue.KindReplay, ConnectionID: "replayer", Topic: "telemetry.1", Since: 4},
	}, tasks)
}

func TestDisconnect_RemovesEverything(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c1", h.Token(user), nil)
	h.SendJSON("c1", map[string]any{"type": "subscribe", "topic": "telemetry.*"})
	h.Disconnect("c1")
	_, err := h.Store.GetConnection(context.Background(), "c1")
	assert.ErrorIs(t, err, store.ErrNotFound)
	subs, _, err := h.Store.Subscribers(context.Background(), "telemetry.*", "", 10)
	require.NoError(t, err)
	assert.Empty(t, subs)
	h.Disconnect("c1") // a repeated $disconnect is harmless
}

// The disconnect function drains the disconnect queue: a batch removes
// every connection it names, a repeated or malformed message fails
// nothing, and a $disconnect proxy request still works.
func TestHandleDisconnect_QueueBatchAndProxyRequest(t *testing.T) {
	h := gatewaytest.New(t)
	for _, id := range []string{"q1", "q2", "q3"} {
		h.MustConnect(id, h.Token(user), nil)
		h.SendJSON(id, map[string]any{"type": "subscribe", "topic": "telemetry.*"})
	}
	batch, err := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{
		{MessageId: "m1", Body: "q1"}, {MessageId: "m2", Body: "q2"}, {MessageId: "m3", Body: "q1"},
		{MessageId: "m4", Body: "not a connection"}, {MessageId: "m5", Body: ""},
	}})
	require.NoError(t, err)
	out, err := h.Gateway.HandleDisconnect(context.Background(), batch)
	require.NoError(t, err)
	assert.Equal(t, events.SQSEventResponse{}, out, "no batch item failures")
	for _, id := range []string{"q1", "q2"} {
		_, err := h.Store.GetConnection(context.Background(), id)
		assert.ErrorIs(t, err, store.ErrNotFound, id)
	}
	_, err = h.Store.GetConnection(context.Background(), "q3")
	require.NoError(t, err, "a connection the batch does not name stays")

	proxy, err := json.Marshal(events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: "q3", RouteKey: "$disconnect", EventType: "DISCONNECT",
	}})
	require.NoError(t, err)
	out, err = h.Gateway.HandleDisconnect(context.Background(), proxy)
	require.NoError(t, err)
	assert.Equal(t, events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, out)
	subs, _, err := h.Store.Subscribers(context.Background(), "telemetry.*", "", 10)
	require.NoError(t, err)
	assert.Empty(t, subs)

	out, err = h.Gateway.HandleDisconnect(context.Background(), json.RawMessage(`{"detail-type":"x"}`))
	require.NoError(t, err)
	assert.Nil(t, out, "neither a batch nor a request: nothing to retry")
}

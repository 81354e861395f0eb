package stack_test

import (
	"context"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/localstack/devtools/devcli"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
)

// These replay attacks through the whole local stack: a real browser-like
// handshake, and connects racing each other across function instances.

// A page on another site cannot open the gateway with the victim's cookie.
func TestSecurity_CrossSiteHandshakeWithCookieIsRefused(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvTokenCookie: "wsgate_session", config.EnvAllowedOrigins: "https://app.example.com"}
	})
	tok := token(t, s, auth.Grant{Sub: "victim", Topics: []string{"private.>"}})
	dial := func(origin string) (*http.Response, error) {
		h := http.Header{"Cookie": {"wsgate_session=" + tok}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		_, resp, err := stacktest.Dial(t, s.WebSocketURL, nil, &websocket.DialOptions{HTTPHeader: h})
		return resp, err
	}
	resp, err := dial("https://evil.example.net")
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "another site's page")
	resp, err = dial("")
	require.Error(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a cookie without an Origin")
	_, err = dial("https://app.example.com")
	require.NoError(t, err, "the application's own page")
}

// Connects racing each other cannot pass the per-principal cap.
func TestSecurity_ConnectionCapHoldsUnderConcurrentConnects(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvMaxConnectionsPerPrincipal: "2"}
	})
	tok := token(t, s, auth.Grant{Sub: "greedy"})
	var admitted, refused atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"token": tok}, nil)
			switch {
			case err == nil:
				admitted.Add(1)
			case resp != nil && resp.StatusCode == http.StatusTooManyRequests:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(2), admitted.Load())
	assert.Equal(t, int32(18), refused.Load())
}

// Issue 13, "sessions outlive their token": a backend's revocation, sent
// through the bus like any event, closes the principal's open connection
// at once and refuses its next handshake.
func TestSecurity_RevocationOnTheBusClosesAndRefuses(t *testing.T) {
	s := stacktest.Start(t)
	tok := token(t, s, auth.Grant{Sub: "mallory", Topics: []string{"private.>"}, ID: "tok-1"})
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": tok})
	bystander := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "alice"})})

	require.NoError(t, stacktest.Publisher(s).Revoke(context.Background(), publish.Revocation{Principal: "user:mallory", TokenID: "tok-1"}))
	m := c.Expect("error", 15*time.Second)
	assert.Equal(t, "revoked", m["code"])
	assert.NotEqual(t, websocket.StatusCode(-1), c.CloseStatus(5*time.Second), "the gateway closed it")

	_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"token": tok}, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the revoked token cannot reconnect")
	other := token(t, s, auth.Grant{Sub: "mallory", ID: "tok-2"})
	stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": other}) // only tok-1 was revoked

	bystander.SendJSON(map[string]any{"type": "ping", "id": 1})
	bystander.Expect("pong", 10*time.Second)
}

// A connection ends when its token expires (the queued check, through
// SQS's delay), unless the client sent a fresh token before.
func TestSecurity_ConnectionEndsWithItsTokenUnlessRefreshed(t *testing.T) {
	s := stacktest.Start(t)
	short := func(sub string) string {
		return token(t, s, auth.Grant{Sub: sub, TTL: 3 * time.Second})
	}
	expiring := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": short("eve")})
	refreshed := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": short("bob")})
	refreshed.SendJSON(map[string]any{"type": "auth", "id": 1, "token": token(t, s, auth.Grant{Sub: "bob", TTL: time.Hour})})
	m := refreshed.Expect("auth_response", 10*time.Second)
	require.Equal(t, true, m["success"], "%v", m)

	m = expiring.Expect("error", 20*time.Second)
	assert.Equal(t, "token_expired", m["code"])
	assert.NotEqual(t, websocket.StatusCode(-1), expiring.CloseStatus(5*time.Second))

	time.Sleep(2 * time.Second) // well past the first token's exp
	refreshed.SendJSON(map[string]any{"type": "ping", "id": 2})
	refreshed.Expect("pong", 10*time.Second)
	assert.False(t, refreshed.Closed())
}

// Issue 25, "revocation cannot be lifted": wsgate revoke bans a principal,
// wsgate unrevoke lifts the ban before its until, and it connects again.
func TestSecurity_RevocationLiftedConnectsAgain(t *testing.T) {
	s := stacktest.Start(t)
	tok := token(t, s, auth.Grant{Sub: "carol", Topics: []string{"t.>"}})
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": tok})
	cli := func(args ...string) {
		t.Helper()
		require.NoError(t, devcli.Run(context.Background(), append(args, "--endpoint", s.AWSEndpoint, "--bus", s.BusName), devcli.Streams{Out: io.Discard, Err: io.Discard}))
	}
	cli("revoke", "--principal", "user:carol", "--for", "24h")
	assert.Equal(t, "revoked", c.Expect("error", 15*time.Second)["code"])
	_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"token": tok}, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "banned")

	time.Sleep(1100 * time.Millisecond) // the lift is issued in a later second than the ban
	cli("unrevoke", "--principal", "user:carol")
	require.Eventually(t, func() bool {
		_, _, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"token": tok}, nil)
		return err == nil
	}, 15*time.Second, 100*time.Millisecond, "the lifted principal connects again")
}

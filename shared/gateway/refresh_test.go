package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Issue 13, "sessions outlive their token": a connection kept receiving
// after its token's exp and nothing could revoke it.

func alive(t *testing.T, h *gatewaytest.Harness, id string) bool {
	t.Helper()
	_, err := h.Store.GetConnection(context.Background(), id)
	if err != nil && err != store.ErrNotFound {
		t.Fatal(err)
	}
	return err == nil
}

func closed(h *gatewaytest.Harness, id string) bool { return slices.Contains(h.Conns.Deleted(), id) }

func lastFrame(h *gatewaytest.Harness, id string) string {
	got := h.Received(id)
	if len(got) == 0 {
		return ""
	}
	return got[len(got)-1]
}

func TestSession_ClosesWhenItsTokenExpires(t *testing.T) {
	h := gatewaytest.New(t)
	g := user
	g.TTL = 20 * time.Minute
	h.MustConnect("c1", h.Token(g), nil)
	tasks, delays := h.Tasks.Take()
	require.Len(t, tasks, 1)
	assert.Equal(t, queue.Task{Kind: queue.KindTokenExpiry, ConnectionID: "c1"}, tasks[0])
	assert.Equal(t, 20*time.Minute, delays[0], "due at exp (the queue waits 15 minutes at most, then again)")
	require.NoError(t, h.Tasks.Send(context.Background(), tasks[0], 0))

	// SQS's 15 minutes pass: not yet; it waits again for the rest.
	h.Advance(15 * time.Minute)
	h.RunTasks()
	assert.True(t, alive(t, h, "c1"))
	tasks, delays = h.Tasks.Take()
	require.Len(t, tasks, 1)
	assert.Equal(t, 5*time.Minute+time.Second, delays[0])
	require.NoError(t, h.Tasks.Send(context.Background(), tasks[0], 0))

	h.Advance(5*time.Minute + time.Second)
	h.RunTasks()
	assert.False(t, alive(t, h, "c1"), "the record is gone")
	assert.True(t, closed(h, "c1"), "the connection is closed")
	assert.Contains(t, lastFrame(h, "c1"), `"code":"token_expired"`)
}

func TestSession_AFrameAfterExpiryClosesIt(t *testing.T) {
	h := gatewaytest.New(t)
	g := user
	g.TTL = time.Minute
	h.MustConnect("c1", h.Token(g), nil)
	h.Advance(time.Minute)
	got := h.Send("c1", `{"type":"ping","id":1}`)
	require.Len(t, got, 1)
	assert.Contains(t, got[0], `"code":"token_expired"`)
	assert.True(t, closed(h, "c1"))
}

func TestSession_AFreshTokenExtendsIt(t *testing.T) {
	h := gatewaytest.New(t)
	g := user
	g.TTL = time.Minute
	h.MustConnect("c1", h.Token(g), nil)

	h.Advance(50 * time.Second)
	g.TTL = 10 * time.Minute
	got := h.SendJSON("c1", map[string]any{"type": "auth", "id": 7, "token": h.Token(g)})
	require.Len(t, got, 1)
	assert.Contains(t, got[0], `"success":true`)
	assert.Contains(t, got[0], `"expires":"`+h.Now.Add(10*time.Minute).UTC().Format(time.RFC3339)+`"`)

	h.Advance(time.Minute) // past the first token's exp
	h.RunTasks()
	assert.True(t, alive(t, h, "c1"), "the expiry check waits for the new exp")
	got = h.Send("c1", `{"type":"ping","id":2}`)
	assert.Contains(t, got[0], `"type":"pong"`)
}

func TestSession_AFreshTokenMustBeTheSamePrincipal(t *testing.T) {
	h := gatewaytest.New(t)
	g := user
	g.TTL = time.Minute
	h.MustConnect("c1", h.Token(g), nil)
	for name, other := range map[string]auth.Grant{
		"another sub":   {Sub: "u2", Orgs: user.Orgs, Topics: user.Topics, TTL: time.Hour},
		"another type":  {Sub: "u1", Type: "device", Orgs: user.Orgs, Topics: user.Topics, TTL: time.Hour},
		"another org":   {Sub: "u1", Orgs: []string{"globex"}, Topics: user.Topics, TTL: time.Hour},
		"a superuser":   {Sub: "u1", Orgs: user.Orgs, Superuser: true, TTL: time.Hour},
		"a bad token":   {},
		"push-only now": {Sub: "u1", Orgs: user.Orgs, Topics: user.Topics, Mode: auth.ModePush, TTL: time.Hour},
	} {
		tok := "not-a-token"
		if other.Sub != "" {
			tok = h.Token(other)
		}
		got := h.SendJSON("c1", map[string]any{"type": "auth", "id": 1, "token": tok})
		require.Len(t, got, 1, name)
		assert.Contains(t, got[0], `"success":false`, name)
	}
	c, err := h.Store.GetConnection(context.Background(), "c1")
	require.NoError(t, err)
	assert.Equal(t, "u1", c.Principal.Sub)
	assert.False(t, c.Principal.Superuser)
	assert.Equal(t, h.Now.Add(time.Minute), c.TokenExpires, "the session is as it was")
	assert.False(t, closed(h, "c1"))
}

func TestSession_ANarrowerTokenDropsWhatItNoLongerAllows(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("c1", h.Token(user), nil)
	h.Send("c1", `{"type":"subscribe","id":1,"topic":"telemetry.dev1"}`)
	h.Send("c1", `{"type":"subscribe","id":2,"topic":"topology.net1"}`)

	narrower := user
	narrower.Topics = []string{"topology.*"}
	got := h.SendJSON("c1", map[string]any{"type": "auth", "id": 3, "token": h.Token(narrower)})
	require.Len(t, got, 2)
	assert.JSONEq(t, `{"type":"unsubscribed","topics":["telemetry.dev1"]}`, got[0])
	assert.Contains(t, got[1], `"success":true`)

	subs, err := h.Store.ConnectionSubscriptions(context.Background(), "c1")
	require.NoError(t, err)
	var patterns []string
	for _, s := range subs {
		patterns = append(patterns, s.Pattern)
	}
	direct, _ := topic.Direct("user", "u1")
	assert.ElementsMatch(t, []string{"topology.net1", direct.String()}, patterns)
	got = h.Send("c1", `{"type":"subscribe","id":4,"topic":"telemetry.dev2"}`)
	assert.Contains(t, got[0], `"code":"forbidden"`, "the new capabilities hold")
}

func TestRevoke_ClosesThePrincipalsConnectionsAndRefusesItUntilThen(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("a1", h.Token(user), nil)
	h.MustConnect("a2", h.Token(user), nil)
	other := auth.Grant{Sub: "u2", Topics: []string{"telemetry.>"}}
	h.MustConnect("b1", h.Token(other), nil)
	device := auth.Grant{Sub: "u1", Type: "device"}
	h.MustConnect("d1", h.Token(device), nil)

	until := h.Now.Add(10 * time.Minute)
	require.NoError(t, h.Revoke("r1", map[string]any{"principal": "user:u1", "until": until.Format(time.RFC3339)}))
	for _, id := range []string{"a1", "a2"} {
		assert.True(t, closed(h, id), id)
		assert.False(t, alive(t, h, id), id)
		assert.Contains(t, lastFrame(h, id), `"code":"revoked"`)
	}
	for _, id := range []string{"b1", "d1"} {
		assert.False(t, closed(h, id), "%s: another principal (device u1 is not user u1)", id)
	}

	resp := h.Connect("a3", map[string]string{"token": h.Token(user)}, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a new token is refused too")
	assert.Contains(t, resp.Body, "revoked")

	h.Advance(10*time.Minute + time.Second)
	h.MustConnect("a4", h.Token(user), nil)
}

func TestRevoke_ATokenIDClosesOnlyItsConnections(t *testing.T) {
	h := gatewaytest.New(t)
	stolen, kept := user, user
	stolen.ID, kept.ID = "tok-stolen", "tok-kept"
	h.MustConnect("s1", h.Token(stolen), nil)
	h.MustConnect("k1", h.Token(kept), nil)

	require.NoError(t, h.Revoke("r1", map[string]any{"principal": "u1", "token_id": "tok-stolen"}))
	assert.True(t, closed(h, "s1"))
	assert.False(t, closed(h, "k1"))

	resp := h.Connect("s2", map[string]string{"token": h.Token(stolen)}, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	h.MustConnect("k2", h.Token(kept), nil)

	// Nor may a live connection switch to the revoked token.
	got := h.SendJSON("k1", map[string]any{"type": "auth", "id": 1, "token": h.Token(stolen)})
	assert.Contains(t, got[0], `"error":"revoked"`)
	assert.False(t, closed(h, "k1"))

	// Omitted, until is the longest a token may live.
	h.Advance(h.Cfg.MaxTokenLifetime - time.Minute)
	resp = h.Connect("s3", map[string]string{"token": h.Token(stolen)}, nil)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	h.Advance(2 * time.Minute)
	h.MustConnect("s4", h.Token(stolen), nil)
}

func TestRevoke_AuthMessageOfARevokedPrincipalIsRefused(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.AuthMessage = true })
	require.NoError(t, h.Revoke("r1", map[string]any{"principal": "user:u1"}))
	require.Equal(t, http.StatusOK, h.Connect("p1", nil, nil).StatusCode)
	got := h.SendJSON("p1", map[string]any{"type": "auth", "id": 1, "token": h.Token(user)})
	require.Len(t, got, 1)
	assert.Contains(t, got[0], `"error":"revoked"`)
	assert.True(t, closed(h, "p1"))
}

// A revocation racing handshakes of the principal leaves none of them
// open: each commits before the ban (and the ban's query finds and closes
// it) or after it (and is refused).
func TestRevoke_NoHandshakeSlipsPastARevocationRacingIt(t *testing.T) {
	h := gatewaytest.New(t)
	tok := h.Token(user)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var admitted []string
	refused := 0
	first := make(chan struct{})
	var once sync.Once
	revoked := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			after := 0 // handshakes started after the revocation returned
			for i := 0; after < 3; i++ {
				select {
				case <-revoked:
					after++
				default:
				}
				id := fmt.Sprintf("w%d-%03d", w, i)
				resp := h.Connect(id, map[string]string{"token": tok}, nil)
				mu.Lock()
				switch resp.StatusCode {
				case http.StatusOK:
					admitted = append(admitted, id)
					once.Do(func() { close(first) })
				case http.StatusForbidden:
					refused++
				default:
					t.Errorf("connect %s: %d %s", id, resp.StatusCode, resp.Body)
				}
				mu.Unlock()
			}
		}()
	}
	// The revocation starts once a handshake is in, the others going on.
	<-first
	require.NoError(t, h.Revoke("r1", map[string]any{"principal": "user:u1"}))
	close(revoked)
	wg.Wait()
	for _, id := range admitted {
		assert.False(t, alive(t, h, id), "%s was admitted and is still open", id)
	}
	assert.GreaterOrEqual(t, refused, 12, "every handshake after the revocation is refused")
	n, err := h.Store.CountConnections(context.Background(), auth.Identity{Type: "user", Sub: "u1"})
	require.NoError(t, err)
	assert.Zero(t, n)
	t.Logf("%d handshakes committed before the revocation and were closed by it, %d were refused", len(admitted), refused)
}

func TestRevoke_InvalidRevocationsAreDroppedNotRetried(t *testing.T) {
	h := gatewaytest.New(t)
	h.MustConnect("a1", h.Token(user), nil)
	for _, detail := range []string{
		`{}`, `{"principal":""}`, `{"principal":"user:"}`, `{"Principal":"user:u1"}`,
		`{"principal":"user:u1","principal":"user:u2"}`, `{"principal":"user:u1","until":"2999-01-01T00:00:00Z"}`,
		`{"principal":"user:u1","extra":1}`, `[]`, `{"principal":"` + strings.Repeat("x", 600) + `"}`,
	} {
		require.NoError(t, h.Revoke("r", []byte(detail)), detail)
	}
	assert.False(t, closed(h, "a1"))
	h.MustConnect("a2", h.Token(user), nil)
}

// The expiry check scheduled at connect finds a later exp itself: a
// refresh that extends the session queues nothing; one that shortens it
// needs a check of its own.
func TestSession_ARefreshQueuesACheckOnlyWhenItShortens(t *testing.T) {
	h := gatewaytest.New(t)
	g := user
	g.TTL = 10 * time.Minute
	h.MustConnect("c1", h.Token(g), nil)
	h.Tasks.Take()
	g.TTL = 20 * time.Minute
	h.SendJSON("c1", map[string]any{"type": "auth", "id": 1, "token": h.Token(g)})
	tasks, _ := h.Tasks.Take()
	assert.Empty(t, tasks)
	g.TTL = 5 * time.Minute
	h.SendJSON("c1", map[string]any{"type": "auth", "id": 2, "token": h.Token(g)})
	tasks, delays := h.Tasks.Take()
	require.Len(t, tasks, 1)
	assert.Equal(t, 5*time.Minute, delays[0])
}

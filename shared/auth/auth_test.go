package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/topic"
)

var secret = []byte("test-secret-of-decent-length-0123456789")

func hsPair(t *testing.T) (Minter, *Verifier) {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{Alg: "HS256", Secret: secret, TicketLifetime: time.Minute})
	require.NoError(t, err)
	return Minter{Alg: "HS256", Key: secret}, v
}

func TestExtract_OrderAndEcho(t *testing.T) {
	cases := []struct {
		name     string
		h        Handshake
		cookie   string
		token    string
		source   Source
		protocol string
	}{
		{"authorization header wins", Handshake{
			Headers: map[string]string{"authorization": "Bearer H", "Sec-WebSocket-Protocol": "bearer.S"},
			Query:   map[string]string{"token": "Q"},
		}, "", "H", SourceHeader, "bearer.S"},
		{"subprotocol next, echoing the other offered protocol", Handshake{
			MultiHeaders: map[string][]string{"Sec-WebSocket-Protocol": {"wsgate.v1, bearer.S"}},
			Query:        map[string]string{"token": "Q"},
		}, "", "S", SourceSubprotocol, "wsgate.v1"},
		{"subprotocol alone is echoed itself", Handshake{
			Headers: map[string]string{"sec-websocket-protocol": "bearer.S"},
		}, "", "S", SourceSubprotocol, "bearer.S"},
		{"query token", Handshake{Query: map[string]string{"token": "Q"}}, "", "Q", SourceQuery, ""},
		{"query Token (Digital Rebar spelling)", Handshake{Query: map[string]string{"Token": "Q2"}}, "", "Q2", SourceQuery, ""},
		{"cookie last", Handshake{Headers: map[string]string{"Cookie": "a=1; sessionid=C; b=2"}}, "sessionid", "C", SourceCookie, ""},
		{"cookie ignored when not configured", Handshake{Headers: map[string]string{"Cookie": "sessionid=C"}}, "", "", SourceNone, ""},
		{"basic auth is not a bearer token", Handshake{Headers: map[string]string{"Authorization": "Basic eDp5"}}, "", "", SourceNone, ""},
		{"nothing", Handshake{}, "sessionid", "", SourceNone, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Extract(c.h, c.cookie)
			assert.Equal(t, c.token, got.Token)
			assert.Equal(t, c.source, got.Source)
			assert.Equal(t, c.protocol, got.Subprotocol)
		})
	}
}

func TestVerify_ClaimsToPrincipal(t *testing.T) {
	m, v := hsPair(t)
	tok, err := m.Token(Grant{Sub: "u1", Orgs: []string{"acme"}, Roles: []string{"admin"}, Topics: []string{"a.>"}, Subscribe: []string{"a.b"}, Mode: "push", Profile: "p"})
	require.NoError(t, err)
	p, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, "u1", p.Sub)
	assert.Equal(t, "user", p.Type, "ptype defaults to user")
	assert.Equal(t, []string{"acme"}, p.Orgs)
	assert.Equal(t, []string{"a.>"}, p.Topics)
	assert.Equal(t, "push", p.Mode)
	assert.Empty(t, p.TicketID, "an hour-long token is not single-use")

	// org may be a plain string.
	raw := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u2", "org": "solo", "exp": time.Now().Add(time.Minute).Unix()})
	s, err := raw.SignedString(secret)
	require.NoError(t, err)
	p, err = v.Verify(context.Background(), s)
	require.NoError(t, err)
	assert.Equal(t, []string{"solo"}, p.Orgs)
}

// Issue 23: every principal must have a direct topic, so a ptype is bounded
// as a topic segment (a sub too long for one is hashed; see topic.Direct).
func TestVerify_APTypeTooLongForADirectTopicIsRefused(t *testing.T) {
	m, v := hsPair(t)
	for ptype, ok := range map[string]bool{strings.Repeat("d", 64): true, strings.Repeat("d", 65): false, strings.Repeat(".", 22): false} {
		tok, err := m.Token(Grant{Sub: strings.Repeat(".", 200), Type: ptype})
		require.NoError(t, err)
		p, err := v.Verify(context.Background(), tok)
		if !ok {
			assert.ErrorIs(t, err, ErrInvalidToken, ptype)
			continue
		}
		require.NoError(t, err, ptype)
		_, has := p.DirectTopic()
		assert.True(t, has, ptype)
	}
}

func TestVerify_TicketIsMarkedSingleUse(t *testing.T) {
	m, v := hsPair(t)
	tk, err := m.Ticket(Grant{Sub: "u1", TTL: time.Hour})
	require.NoError(t, err)
	p, err := v.Verify(context.Background(), tk)
	require.NoError(t, err)
	assert.Len(t, p.TicketID, 32)
	assert.WithinDuration(t, time.Now().Add(time.Minute), p.ExpiresAt, 2*time.Second, "ticket TTL is capped at the ticket lifetime")
}

func rsaKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)
	return k, string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func TestVerify_RefusesAttacks(t *testing.T) {
	m, hv := hsPair(t)
	rk, rpub := rsaKey(t)
	rv, err := NewVerifier(VerifierConfig{Alg: "RS256", PublicKeyPEM: rpub})
	require.NoError(t, err)
	strict, err := NewVerifier(VerifierConfig{Alg: "HS256", Secret: secret, Issuer: "https://idp", Audience: "wsgate"})
	require.NoError(t, err)

	valid, err := m.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	parts := strings.Split(valid, ".")

	noneTok := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix()})
		s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
		require.NoError(t, err)
		return s
	}()
	// HS/RS confusion: HMAC-sign with the RSA public key bytes as the secret.
	confused := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": time.Now().Add(time.Hour).Unix()})
		s, err := tok.SignedString([]byte(rpub))
		require.NoError(t, err)
		return s
	}()
	// Tampered payload: change sub, keep signature.
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(claims), `"u1"`, `"admin"`, 1))) + "." + parts[2]
	badSig := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))
	expired, err := Minter{Alg: "HS256", Key: secret, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	noExp := func() string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1"}).SignedString(secret)
		require.NoError(t, err)
		return s
	}()
	wrongAud, err := Minter{Alg: "HS256", Key: secret, Issuer: "https://idp", Audience: "other"}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	wrongIss, err := Minter{Alg: "HS256", Key: secret, Issuer: "https://evil", Audience: "wsgate"}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	rightBoth, err := Minter{Alg: "HS256", Key: secret, Issuer: "https://idp", Audience: "wsgate"}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	otherSecret, err := Minter{Alg: "HS256", Key: []byte("another-secret-entirely-000000000")}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	rsSigned, err := Minter{Alg: "RS256", Key: rk}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	badPattern, err := m.Token(Grant{Sub: "u1", Topics: []string{"a..b"}})
	require.NoError(t, err)
	noSub := func() string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
		require.NoError(t, err)
		return s
	}()

	cases := []struct {
		name  string
		v     *Verifier
		token string
	}{
		{"alg none", hv, noneTok},
		{"alg none against RS", rv, noneTok},
		{"HS token signed with the RSA public key", rv, confused},
		{"RS token against an HS verifier", hv, rsSigned},
		{"tampered claims", hv, tampered},
		{"forged signature", hv, badSig},
		{"other secret", hv, otherSecret},
		{"expired", hv, expired},
		{"no exp", hv, noExp},
		{"wrong audience", strict, wrongAud},
		{"wrong issuer", strict, wrongIss},
		{"issuer and audience required when configured", strict, valid},
		{"bad topics claim", hv, badPattern},
		{"no sub", hv, noSub},
		{"garbage", hv, "not.a.jwt"},
		{"empty", hv, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.v.Verify(context.Background(), c.token)
			assert.ErrorIs(t, err, ErrInvalidToken)
			if c.token != "" {
				assert.NotContains(t, err.Error(), c.token, "errors never carry the token")
			}
		})
	}
	_, err = strict.Verify(context.Background(), rightBoth)
	assert.NoError(t, err)
	_, err = rv.Verify(context.Background(), rsSigned)
	assert.NoError(t, err)
}

func TestVerify_ExpiredTokenSaysTokenExpired(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := NewVerifier(VerifierConfig{Alg: "HS256", Secret: secret})
	require.NoError(t, err)
	expired, err := Minter{Alg: "HS256", Key: secret, Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), expired)
	assert.ErrorIs(t, err, ErrInvalidToken)
	assert.ErrorIs(t, err, ErrTokenExpired)
	assert.Contains(t, err.Error(), "token_expired")

	other, err := Minter{Alg: "HS256", Key: []byte("another-secret-entirely-000000000"), Now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), other)
	assert.NotErrorIs(t, err, ErrTokenExpired, "a badly signed token is invalid, whatever its exp")
}

func TestVerify_JWKS(t *testing.T) {
	rk, _ := rsaKey(t)
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{
			{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
			{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ek.X.Bytes()), "y": b64(ek.Y.Bytes())},
		}})
	}))
	defer srv.Close()

	rv, err := NewVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL})
	require.NoError(t, err)
	tok, err := Minter{Alg: "RS256", Key: rk, KeyID: "r1"}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	_, err = rv.Verify(context.Background(), tok)
	require.NoError(t, err)
	_, err = rv.Verify(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, int32(1), fetches.Load(), "keys are cached")

	unknown, err := Minter{Alg: "RS256", Key: rk, KeyID: "nope"}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	_, err = rv.Verify(context.Background(), unknown)
	assert.ErrorIs(t, err, ErrInvalidToken)

	ev, err := NewVerifier(VerifierConfig{Alg: "ES256", JWKSURL: srv.URL})
	require.NoError(t, err)
	etok, err := Minter{Alg: "ES256", Key: ek, KeyID: "e1"}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	_, err = ev.Verify(context.Background(), etok)
	require.NoError(t, err)
	// The RSA key in the set must not verify ES256 tokens and vice versa.
	_, err = ev.Verify(context.Background(), tok)
	assert.ErrorIs(t, err, ErrInvalidToken)
}

func TestPrincipal_MaySubscribeAndNarrow(t *testing.T) {
	p := Principal{Identity: Identity{Sub: "u1", Type: "user"}, Topics: []string{"profiles.>", "machines.save.*"}}
	assert.True(t, p.MaySubscribe(topic.MustPattern("profiles.save.global")))
	assert.True(t, p.MaySubscribe(topic.MustPattern("profiles.*.*")))
	assert.True(t, p.MaySubscribe(topic.MustPattern("direct.user.u1")), "own direct topic")
	assert.False(t, p.MaySubscribe(topic.MustPattern("direct.user.u2")))
	assert.False(t, p.MaySubscribe(topic.MustPattern("*.*.*")))
	assert.False(t, p.MaySubscribe(topic.MustPattern("machines.>")))

	var got []string
	for _, n := range p.Narrow(topic.MustPattern("*.*.*")) {
		got = append(got, n.String())
	}
	assert.ElementsMatch(t, []string{"profiles.*.*", "machines.save.*", "direct.user.u1"}, got)
	assert.Empty(t, p.Narrow(topic.MustPattern("params.*.*")))

	su := Principal{Identity: Identity{Sub: "root", Type: "user", Superuser: true}}
	assert.Equal(t, "*.*.*", su.Narrow(topic.MustPattern("*.*.*"))[0].String())
}

func TestAudience_Allows(t *testing.T) {
	a := &Audience{Orgs: []string{"acme"}, Subs: []string{"u9"}, Roles: []string{"admin"}}
	assert.True(t, (*Audience)(nil).Allows(Identity{Sub: "x"}))
	assert.True(t, a.Allows(Identity{Sub: "u1", Orgs: []string{"other", "acme"}}))
	assert.True(t, a.Allows(Identity{Sub: "u9"}))
	assert.True(t, a.Allows(Identity{Sub: "u2", Roles: []string{"admin"}}))
	assert.True(t, a.Allows(Identity{Sub: "root", Superuser: true}))
	assert.False(t, a.Allows(Identity{Sub: "u2", Orgs: []string{"globex"}}))
	assert.False(t, a.Allows(Identity{Anonymous: true}))
}

func TestConnectURL(t *testing.T) {
	u, err := ConnectURL("wss://x.execute-api.eu-west-1.amazonaws.com/prod", "T", nil)
	require.NoError(t, err)
	assert.Equal(t, "wss://x.execute-api.eu-west-1.amazonaws.com/prod?token=T", u)
	_, err = ConnectURL("https://x", "T", nil)
	assert.Error(t, err)
}

func FuzzExtract(f *testing.F) {
	f.Add("Bearer abc", "wsgate, bearer.xyz", "tok", "sessionid=c")
	f.Add("", "", "", "")
	f.Add("bearer ", ",,,bearer.", "", "a=b;;")
	f.Fuzz(func(t *testing.T, authz, protocols, query, cookie string) {
		h := Handshake{
			Headers: map[string]string{"Authorization": authz, "Sec-WebSocket-Protocol": protocols, "Cookie": cookie},
			Query:   map[string]string{"token": query},
		}
		got := Extract(h, "sessionid")
		if got.Source == SourceNone && got.Token != "" {
			t.Fatal("token without source")
		}
		if got.Source != SourceNone && got.Token == "" {
			t.Fatal("source without token")
		}
		if got.Subprotocol != "" && !strings.Contains(protocols, got.Subprotocol) {
			t.Fatalf("echoed %q which the client did not offer", got.Subprotocol)
		}
	})
}

func FuzzVerify(f *testing.F) {
	m := Minter{Alg: "HS256", Key: secret}
	tok, _ := m.Token(Grant{Sub: "u1", Topics: []string{"a.>"}})
	f.Add(tok)
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSJ9.")
	f.Add("a.b.c")
	long, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u1", "exp": 7258118400}).SignedString(secret)
	f.Add(long)
	v, _ := NewVerifier(VerifierConfig{Alg: "HS256", Secret: secret, TicketLifetime: time.Minute})
	f.Fuzz(func(t *testing.T, s string) {
		p, err := v.Verify(context.Background(), s)
		if err == nil && p.Sub == "" {
			t.Fatal("accepted a token without sub")
		}
		if err == nil && time.Until(p.ExpiresAt) > DefaultMaxTokenLifetime+leeway {
			t.Fatal("accepted a token living longer than the maximum")
		}
		if err == nil && p.TicketID != "" && time.Until(p.ExpiresAt) > time.Minute+leeway {
			t.Fatal("accepted a ticket living longer than the ticket lifetime")
		}
	})
}

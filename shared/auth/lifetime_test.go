package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// signed signs raw claims with the test secret.
func signed(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	require.NoError(t, err)
	return s
}

func TestVerify_RefusesTokensLivingLongerThanTheMaximum(t *testing.T) {
	now := time.Now()
	year2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	oneHour, err := NewVerifier(VerifierConfig{Alg: "HS256", Secret: secret, MaxLifetime: time.Hour})
	require.NoError(t, err)
	_, v := hsPair(t)
	cases := []struct {
		name   string
		v      *Verifier
		claims jwt.MapClaims
		ok     bool
	}{
		{"exp in 2200 with iat", v, jwt.MapClaims{"sub": "u1", "iat": now.Unix(), "exp": year2200}, false},
		{"exp in 2200 without iat", v, jwt.MapClaims{"sub": "u1", "exp": year2200}, false},
		{"25 hours", v, jwt.MapClaims{"sub": "u1", "iat": now.Unix(), "exp": now.Add(25 * time.Hour).Unix()}, false},
		{"iat long ago stretches the lifetime", v, jwt.MapClaims{"sub": "u1", "iat": now.Add(-30 * 24 * time.Hour).Unix(), "exp": now.Add(time.Hour).Unix()}, false},
		{"24 hours is the default maximum", v, jwt.MapClaims{"sub": "u1", "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix()}, true},
		{"23 hours without iat", v, jwt.MapClaims{"sub": "u1", "exp": now.Add(23 * time.Hour).Unix()}, true},
		{"2 hours against a 1 hour maximum", oneHour, jwt.MapClaims{"sub": "u1", "iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix()}, false},
		{"1 hour against a 1 hour maximum", oneHour, jwt.MapClaims{"sub": "u1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.v.Verify(context.Background(), signed(t, c.claims))
			if c.ok {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidToken)
			assert.Contains(t, err.Error(), "at most")
		})
	}
}

func TestMinter_RefusesATokenTheVerifierWouldRefuse(t *testing.T) {
	_, err := Minter{Alg: "HS256", Key: secret}.Token(Grant{Sub: "u1", TTL: 25 * time.Hour})
	assert.ErrorContains(t, err, "at most 24h0m0s")
	_, err = Minter{Alg: "HS256", Key: secret, MaxLifetime: time.Hour}.Token(Grant{Sub: "u1", TTL: 2 * time.Hour})
	assert.Error(t, err)
	_, err = Minter{Alg: "HS256", Key: secret}.Token(Grant{Sub: "u1", TTL: 24 * time.Hour})
	assert.NoError(t, err)
}

// claimsOf decodes a token's claims without checking it.
func claimsOf(t *testing.T, tok string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func TestVerify_OnlyTheTicketClaimMakesATicket(t *testing.T) {
	m, v := hsPair(t) // ticket lifetime: one minute
	now := time.Now()
	tk, err := m.Ticket(Grant{Sub: "u1"})
	require.NoError(t, err)
	assert.Equal(t, true, claimsOf(t, tk)["tkt"], "the minter marks tickets")
	tok, err := m.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	assert.NotContains(t, claimsOf(t, tok), "tkt")

	cases := []struct {
		name   string
		token  string
		ticket string // expected TicketID; "refused" when Verify must fail
	}{
		{"minted ticket", tk, claimsOf(t, tk)["jti"].(string)},
		{"minted token", tok, ""},
		{"short-lived jti without tkt is a normal token", signed(t, jwt.MapClaims{"sub": "u1", "jti": "j1", "iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix()}), ""},
		{"tkt with a jti", signed(t, jwt.MapClaims{"sub": "u1", "jti": "j2", "tkt": true, "iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix()}), "j2"},
		{"tkt without a jti", signed(t, jwt.MapClaims{"sub": "u1", "tkt": true, "iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix()}), "refused"},
		// Before, a jti token living longer than the ticket lifetime became
		// a reusable token: a ticket minted with a longer lifetime than the
		// gateway's could be replayed for its whole life.
		{"ticket outliving the ticket lifetime", signed(t, jwt.MapClaims{"sub": "u1", "jti": "j3", "tkt": true, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}), "refused"},
		{"ticket outliving the ticket lifetime, no iat", signed(t, jwt.MapClaims{"sub": "u1", "jti": "j4", "tkt": true, "exp": now.Add(time.Hour).Unix()}), "refused"},
		{"ticket with an overlong jti", signed(t, jwt.MapClaims{"sub": "u1", "jti": strings.Repeat("j", 257), "tkt": true, "iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix()}), "refused"},
		{"tkt must be a boolean", signed(t, jwt.MapClaims{"sub": "u1", "jti": "j5", "tkt": "yes", "iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix()}), "refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), c.token)
			if c.ticket == "refused" {
				assert.ErrorIs(t, err, ErrInvalidToken)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c.ticket, p.TicketID)
		})
	}
}

func TestVerify_TicketLifetimeDefaultsToAMinute(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{Alg: "HS256", Secret: secret})
	require.NoError(t, err)
	now := time.Now()
	_, err = v.Verify(context.Background(), signed(t, jwt.MapClaims{"sub": "u1", "jti": "j", "tkt": true, "iat": now.Unix(), "exp": now.Add(2 * time.Minute).Unix()}))
	assert.ErrorIs(t, err, ErrInvalidToken, "a verifier without a ticket lifetime still bounds tickets")
}

func TestVerify_RefusesAColonInPtype(t *testing.T) {
	_, v := hsPair(t)
	_, err := v.Verify(context.Background(), signed(t, jwt.MapClaims{"sub": "42", "ptype": "device:x", "exp": time.Now().Add(time.Minute).Unix()}))
	assert.ErrorIs(t, err, ErrInvalidToken)
}

func TestCheckSecret_NeedsTheHashSize(t *testing.T) {
	cases := []struct {
		alg string
		n   int
		ok  bool
	}{
		{"HS256", 31, false}, {"HS256", 32, true},
		{"HS384", 47, false}, {"HS384", 48, true},
		{"HS512", 63, false}, {"HS512", 64, true},
		{"RS256", 0, true},
	}
	const random = "CPpa8zWe41U9P3ORnmjkVul+w2mmvN6bPF9c76/EqG3FE7ed5DKGx+e6s41eqxNp" // openssl rand -base64 48
	for _, c := range cases {
		err := CheckSecret(c.alg, []byte(random[:c.n]))
		if c.ok {
			assert.NoError(t, err, "%s %d", c.alg, c.n)
			continue
		}
		require.Error(t, err, "%s %d", c.alg, c.n)
		assert.NotContains(t, err.Error(), random[:c.n], "the message never carries the secret")
	}
}

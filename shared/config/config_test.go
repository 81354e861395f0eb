package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad_Defaults(t *testing.T) {
	c, err := Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s"}))
	require.NoError(t, err)
	assert.Equal(t, "local", c.Stage)
	assert.Equal(t, "HS256", c.JWTAlg)
	assert.True(t, c.AuthMessage)
	assert.Equal(t, 5*time.Second, c.AuthDeadline)
	assert.Equal(t, Limits{MaxMessageBytes: 32768, MessagesPerSecond: 100, MaxConnectionsPerPrincipal: 100, MaxSubscriptions: 100, MaxWildcards: 20}, c.Limits)
	assert.Equal(t, 24*time.Hour, c.HistoryRetention)
	assert.Equal(t, 60*time.Second, c.TicketLifetime)
	assert.Equal(t, 2*time.Hour+10*time.Minute, c.ConnectionTTL)
	assert.Equal(t, 50, c.MaxBatch)
}

func TestLoad_ErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{EnvJWTSecret: "s"}, EnvTable},
		{map[string]string{EnvTable: "t"}, EnvJWTSecret},
		{map[string]string{EnvTable: "t", EnvJWTAlg: "RS256"}, EnvJWTPublicKey},
		{map[string]string{EnvTable: "t", EnvJWTAlg: "none", EnvJWTSecret: "s"}, EnvJWTAlg},
		{map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvMaxMessageBytes: "x"}, EnvMaxMessageBytes},
		{map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvMaxMessageBytes: "65536"}, EnvMaxMessageBytes},
		{map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvAuthDeadline: "soon"}, EnvAuthDeadline},
		{map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvAnonymousTopics: "a..b"}, EnvAnonymousTopics},
		{map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvProfiles: `{"v":{"max_bytes":1}}`}, EnvProfiles},
		{map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvProfiles: `{"v":{"max_message_bytes":1}}`}, EnvProfiles},
		{map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvAuthMessage: "maybe"}, EnvAuthMessage},
	}
	for _, c := range cases {
		_, err := Load(env(c.env))
		require.Error(t, err, c.want)
		assert.Contains(t, err.Error(), c.want)
	}
}

func TestLimitsFor_ProfileOverridesDefaults(t *testing.T) {
	c, err := Load(env(map[string]string{
		EnvTable: "t", EnvJWTSecret: "s",
		EnvProfiles:        `{"valtronics":{"max_message_bytes":1024}}`,
		EnvAnonymousTopics: "topology.>, public.*",
	}))
	require.NoError(t, err)
	l, err := c.LimitsFor("valtronics")
	require.NoError(t, err)
	assert.Equal(t, 1024, l.MaxMessageBytes)
	assert.Equal(t, 100, l.MessagesPerSecond)
	_, err = c.LimitsFor("nope")
	assert.Error(t, err)
	assert.Len(t, c.AnonymousTopics, 2)
}

// Presence cursors are sealed with WSGATE_CURSOR_KEY or, unset, the HMAC
// token secret: a deployment with presence topics and RS256/ES256 tokens
// has no secret to stand in and must set one; a short one is refused
// outside stage local.
func TestLoad_CursorKey(t *testing.T) {
	strong := "q3Vd8Lx0TnA5wZr2Ke7Hs9Bm4Yc6Pu1G" // random, not a pattern
	rs := map[string]string{EnvTable: "t", EnvJWTAlg: "RS256", EnvJWKSURL: "https://idp.example.com/jwks", EnvStage: "prod"}
	with := func(base map[string]string, extra ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(extra); i += 2 {
			m[extra[i]] = extra[i+1]
		}
		return m
	}
	_, err := Load(env(with(rs, EnvPresenceTopics, "room.*")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvCursorKey)
	assert.Contains(t, err.Error(), "openssl rand")
	_, err = Load(env(with(rs, EnvPresenceTopics, "room.*", EnvCursorKey, "short")))
	require.Error(t, err)
	assert.Contains(t, err.Error(), EnvCursorKey)

	c, err := Load(env(with(rs, EnvPresenceTopics, "room.*", EnvCursorKey, strong)))
	require.NoError(t, err)
	assert.Equal(t, strong, c.CursorKey)
	_, err = Load(env(rs))
	assert.NoError(t, err, "no presence, no cursors")
	_, err = Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvPresenceTopics: "room.*"}))
	assert.NoError(t, err, "HMAC tokens: derived from their secret")
	_, err = Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvCursorKey: "short"}))
	assert.NoError(t, err, "stage local takes a short development key")
}

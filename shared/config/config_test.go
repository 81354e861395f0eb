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

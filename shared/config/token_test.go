package config

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoad_MaxTokenLifetime(t *testing.T) {
	c, err := Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s"}))
	require.NoError(t, err)
	assert.Equal(t, 24*time.Hour, c.MaxTokenLifetime, "default")

	c, err = Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvMaxTokenLifetime: "8h"}))
	require.NoError(t, err)
	assert.Equal(t, 8*time.Hour, c.MaxTokenLifetime)

	cases := []struct{ value, names string }{
		{"59s", EnvMaxTokenLifetime},
		{"721h", EnvMaxTokenLifetime},
		{"forever", EnvMaxTokenLifetime},
		{"30s", EnvMaxTokenLifetime}, // shorter than the default ticket lifetime, and below 1m
	}
	for _, cs := range cases {
		_, err := Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvMaxTokenLifetime: cs.value}))
		require.Error(t, err, cs.value)
		assert.Contains(t, err.Error(), cs.names, cs.value)
	}
	_, err = Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s", EnvMaxTokenLifetime: "2m", EnvTicketLifetime: "5m"}))
	require.Error(t, err, "a ticket may not outlive every token")
	assert.Contains(t, err.Error(), EnvTicketLifetime)
}

func TestLoad_ShortJWTSecretOnlyOnTheLocalStage(t *testing.T) {
	short := "wsgate-dev-secret"                                                 // the local stack's dev secret: 17 bytes
	random := "rkuMvT9Ml5nEYXw4EI+xLWP4VjbBT8QWWPPqyt8CIFqFnKCCPweMWQMBCXBAey6K" // openssl rand -base64 48
	long := random[:32]
	cases := []struct {
		name, stage, alg, secret string
		ok                       bool
	}{
		{"dev secret on local", "local", "", short, true},
		{"dev secret with the default stage", "", "", short, true},
		{"dev secret on prod", "prod", "", short, false},
		{"31 bytes on staging", "staging", "HS256", long[:31], false},
		{"32 bytes on prod", "prod", "HS256", long, true},
		{"32 bytes is short for HS512", "prod", "HS512", long, false},
		{"64 bytes for HS512", "prod", "HS512", random, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(env(map[string]string{EnvTable: "t", EnvStage: c.stage, EnvJWTAlg: c.alg, EnvJWTSecret: c.secret}))
			if c.ok {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), EnvJWTSecret)
			assert.Contains(t, err.Error(), "at least")
			assert.NotContains(t, err.Error(), c.secret, "the message never carries the secret")
		})
	}
}

// A secret of the right length that is a pattern stops the functions
// outside stage local, and the message says how to make a good one.
func TestLoad_PatternJWTSecretOnlyOnTheLocalStage(t *testing.T) {
	for _, secret := range []string{
		strings.Repeat("a", 32), strings.Repeat("ab", 16), strings.Repeat("0123456789", 4),
		"0123456789abcdefghijklmnopqrstuvwxyz", strings.Repeat("x", 64),
	} {
		_, err := Load(env(map[string]string{EnvTable: "t", EnvStage: "prod", EnvJWTSecret: secret}))
		require.Error(t, err, secret)
		assert.Contains(t, err.Error(), EnvJWTSecret)
		assert.Contains(t, err.Error(), "openssl rand -base64 48")
		assert.NotContains(t, err.Error(), secret, "the message never carries the secret")

		_, err = Load(env(map[string]string{EnvTable: "t", EnvStage: "local", EnvJWTSecret: secret}))
		assert.NoError(t, err, "stage local takes any secret")
	}
	c, err := Load(env(map[string]string{EnvTable: "t", EnvStage: "prod", EnvJWTSecretARN: "arn:aws:secretsmanager:eu-west-1:1:secret:s"}))
	require.NoError(t, err)
	assert.ErrorContains(t, c.CheckJWTSecret(strings.Repeat("a", 32)), "openssl rand -base64 48", "a secret from Secrets Manager too")
}

func TestCheckJWTSecret_ForASecretFromSecretsManager(t *testing.T) {
	c, err := Load(env(map[string]string{EnvTable: "t", EnvStage: "prod", EnvJWTSecretARN: "arn:aws:secretsmanager:eu-west-1:1:secret:s"}))
	require.NoError(t, err, "the secret is not known at load")
	assert.Error(t, c.CheckJWTSecret("short"))
	assert.NoError(t, c.CheckJWTSecret("rkuMvT9Ml5nEYXw4EI+xLWP4VjbBT8QWWPPqyt8CIFqFnKCCPweMWQMBCXBAey6K"))
	c.Stage = DefaultStage
	assert.NoError(t, c.CheckJWTSecret("short"))
}

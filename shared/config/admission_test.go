package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoad_AdmissionCaps(t *testing.T) {
	base := map[string]string{EnvTable: "t", EnvJWTSecret: "s"}
	c, err := Load(env(base))
	require.NoError(t, err)
	assert.Equal(t, DefaultMaxPendingPerIP, c.MaxPendingPerIP)
	assert.Equal(t, DefaultMaxPending, c.MaxPending)
	assert.Equal(t, DefaultMaxAnonymousPerIP, c.MaxAnonymousPerIP)
	assert.Equal(t, DefaultMaxWildcards, c.Limits.MaxWildcards)

	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	c, err = Load(env(with(EnvMaxPendingPerIP, "3", EnvMaxPending, "50", EnvMaxWildcards, "7",
		EnvMaxAnonymousPerIP, "4", EnvProfiles, `{"watcher":{"max_wildcards":100}}`)))
	require.NoError(t, err)
	assert.Equal(t, 3, c.MaxPendingPerIP)
	assert.Equal(t, 50, c.MaxPending)
	assert.Equal(t, 7, c.Limits.MaxWildcards)
	assert.Equal(t, 4, c.MaxAnonymousPerIP)
	l, err := c.LimitsFor("watcher")
	require.NoError(t, err)
	assert.Equal(t, 100, l.MaxWildcards, "a profile may raise it")

	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"per-address cap of zero", with(EnvMaxPendingPerIP, "0"), EnvMaxPendingPerIP + ": 0 is outside 1..1000"},
		{"per-address cap above the total", with(EnvMaxPendingPerIP, "20", EnvMaxPending, "10"), EnvMaxPendingPerIP + ": 20 is outside 1..10 (" + EnvMaxPending + ")"},
		{"anonymous per-address cap of zero", with(EnvMaxAnonymousPerIP, "0"), EnvMaxAnonymousPerIP + ": 0 is outside 1..100000"},
		{"total cap of zero", with(EnvMaxPending, "0"), EnvMaxPending + ": 0 is outside 1..1000000"},
		{"not a number", with(EnvMaxPending, "lots"), EnvMaxPending},
		{"wildcards of zero", with(EnvMaxWildcards, "0"), EnvMaxWildcards + ": 0 is outside 1..1000"},
		{"a profile's wildcards", with(EnvProfiles, `{"p":{"max_wildcards":5000}}`), EnvProfiles + ".p: " + EnvMaxWildcards},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(env(tc.env))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

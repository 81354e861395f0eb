package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoad_FrameAndReplayCaps(t *testing.T) {
	c, err := Load(env(map[string]string{EnvTable: "t", EnvJWTSecret: "s"}))
	require.NoError(t, err)
	assert.Equal(t, 200, c.FrameStoreCalls)
	assert.Equal(t, 1<<20, c.MaxReplayBytes)
	assert.Equal(t, 8<<20, c.MaxReplayBytesPerMinute)
	assert.Equal(t, 16<<20, c.MaxPrincipalReplayBytesPerMinute)
	assert.Equal(t, 16<<20, c.MaxAddressReplayBytesPerMinute)

	c, err = Load(env(map[string]string{
		EnvTable: "t", EnvJWTSecret: "s",
		EnvFrameStoreCalls: "50", EnvMaxReplayBytes: "262144", EnvMaxReplayBytesPerMinute: "262144",
		EnvMaxPrincipalReplayBytesPerMinute: "300000", EnvMaxAddressReplayBytesPerMinute: "400000",
	}))
	require.NoError(t, err)
	assert.Equal(t, 50, c.FrameStoreCalls)
	assert.Equal(t, 262144, c.MaxReplayBytes)
	assert.Equal(t, 262144, c.MaxReplayBytesPerMinute)
	assert.Equal(t, 300000, c.MaxPrincipalReplayBytesPerMinute)
	assert.Equal(t, 400000, c.MaxAddressReplayBytesPerMinute)

	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{EnvFrameStoreCalls: "5"}, EnvFrameStoreCalls},
		{map[string]string{EnvFrameStoreCalls: "many"}, EnvFrameStoreCalls},
		{map[string]string{EnvMaxReplayBytes: "1000"}, EnvMaxReplayBytes},
		{map[string]string{EnvMaxReplayBytesPerMinute: "524288"}, EnvMaxReplayBytesPerMinute}, // below the per-frame cap
		{map[string]string{EnvMaxReplayBytesPerMinute: "2147483648"}, EnvMaxReplayBytesPerMinute},
		{map[string]string{EnvMaxPrincipalReplayBytesPerMinute: "1000"}, EnvMaxPrincipalReplayBytesPerMinute}, // below the per-frame cap
		{map[string]string{EnvMaxAddressReplayBytesPerMinute: "1000"}, EnvMaxAddressReplayBytesPerMinute},
	} {
		tc.env[EnvTable], tc.env[EnvJWTSecret] = "t", "s"
		_, err := Load(env(tc.env))
		if assert.Error(t, err, "%v", tc.env) {
			assert.Contains(t, err.Error(), tc.want)
		}
	}
}

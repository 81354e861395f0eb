package devcli

import (
	"context"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
)

// --env takes each KEY=VALUE whole: the README documents comma-separated
// settings such as WSGATE_PRESENCE_TOPICS.
func TestRepeated_KeepsCommasInAValue(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var env repeated
	fs.Var(&env, "env", "")
	require.NoError(t, fs.Parse([]string{"--env", "WSGATE_PRESENCE_TOPICS=room.*,chat.*", "--env", "WSGATE_LOG_LEVEL=debug"}))
	assert.Equal(t, repeated{"WSGATE_PRESENCE_TOPICS=room.*,chat.*", "WSGATE_LOG_LEVEL=debug"}, env)
}

// Every claim the README documents can be minted from the CLI.
func TestToken_MintsEveryDocumentedClaim(t *testing.T) {
	var out strings.Builder
	err := Token([]string{"--sub", "alice", "--ptype", "device", "--org", "acme,globex", "--role", "admin",
		"--topics", "chat.>", "--auto-subscribe", "chat.lobby", "--publish", "chat.>", "--mode", "push",
		"--profile", "valtronics", "--jti", "t1", "--su"}, Streams{Out: &out, Err: io.Discard})
	require.NoError(t, err)
	v, err := auth.NewVerifier(auth.VerifierConfig{Alg: "HS256", Secret: []byte(DevSecret)})
	require.NoError(t, err)
	p, err := v.Verify(context.Background(), strings.TrimSpace(out.String()))
	require.NoError(t, err)
	assert.Equal(t, "device", p.Type)
	assert.Equal(t, []string{"acme", "globex"}, p.Orgs)
	assert.Equal(t, []string{"admin"}, p.Roles)
	assert.Equal(t, []string{"chat.>"}, p.Publish)
	assert.Equal(t, []string{"chat.lobby"}, p.Subscribe)
	assert.True(t, p.Mode == "push" && p.Superuser)
	assert.Equal(t, "valtronics", p.Profile)
	assert.Equal(t, "t1", p.TokenID)

	err = Token([]string{"--sub", "alice", "--mode", "pull"}, Streams{Out: io.Discard, Err: io.Discard})
	assert.ErrorContains(t, err, "--mode")
}

func TestCapacityScaleFlag_RefusesZeroAndGarbage(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
		ok   bool
	}{{"1", 1, true}, {"0.01", 0.01, true}, {"off", -1, true}, {"OFF", -1, true}, {"0", 0, false}, {"-1", 0, false}, {"x", 0, false}, {"", 0, false}, {"NaN", 0, false}} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c := capacityScaleFlag(fs)
		err := fs.Parse([]string{"--capacity-scale", tc.in})
		if !tc.ok {
			assert.ErrorContains(t, err, "positive number", tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.InDelta(t, tc.want, c.scale, 1e-12, tc.in)
	}
}

package devcli

import (
	"flag"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

package stack_test

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// A configuration the functions cannot start with (here the profiles'
// JSON with its quotes stripped, as a shell sourcing an unquoted env file
// leaves it) stops the stack at start with the functions' own message,
// instead of a stack reported up whose every handshake answers 500.
func TestStack_RefusesToStartWithAConfigurationTheFunctionsRefuse(t *testing.T) {
	ep, err := url.Parse(storetest.Endpoint(t))
	require.NoError(t, err)
	_, err = stack.Start(context.Background(), stack.Options{
		WebSocketAddr: "127.0.0.1:0", AWSAddr: "127.0.0.1:0", DynamoDBAddr: ep.Host,
		FunctionsDir: os.Getenv(stacktest.EnvFunctions), Table: "wsgate-badconfig",
		Env: map[string]string{config.EnvProfiles: `{valtronics:{max_message_bytes:1024}}`},
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the functions cannot start")
	assert.Contains(t, err.Error(), config.EnvProfiles)
}

// examples/wsgate.env loaded as its readers are told (set -a; . file) is
// a configuration the functions start with.
func TestStack_TheExamplesEnvFileLoadsAsDocumented(t *testing.T) {
	env := stacktest.LoadEnv(t, filepath.Join("..", "..", "..", "examples", "wsgate.env"))
	require.Contains(t, env, config.EnvProfiles)
	env[config.EnvTable], env[config.EnvJWTSecret] = "t", "wsgate-dev-secret"
	_, err := config.Load(func(k string) string { return env[k] })
	assert.NoError(t, err)
}

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
)

const quickstart = "../examples/quickstart.mjs"

// TestClientJS_QuickstartRuns runs docs/clients.md's example (the docs test
// keeps that block equal to this file) as a user outside
// this repository would: from a folder where @wsgate/client is installed
// (here: the bundle the console serves, as the package), on Node.js 20
// with --experimental-websocket, against the local stack.
func TestClientJS_QuickstartRuns(t *testing.T) {
	node, err := exec.LookPath("node")
	need(t, "node", err == nil)
	dir := t.TempDir()
	pkg := filepath.Join(dir, "node_modules", "@wsgate", "client")
	require.NoError(t, os.MkdirAll(pkg, 0o755))
	lib, err := os.ReadFile(bundle)
	require.NoError(t, err, "the client bundle the console serves")
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "index.js"), lib, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "package.json"), []byte(`{"name":"@wsgate/client","type":"module","exports":"./index.js"}`), 0o644))
	src, err := os.ReadFile(quickstart)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "quickstart.mjs"), src, 0o644))

	s := stacktest.Start(t)
	tok, err := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}.Token(auth.Grant{Sub: "alice", Topics: []string{"demo.>"}, Publish: []string{"demo.>"}})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "quickstart.mjs")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "WSGATE_URL="+s.WebSocketURL, "WSGATE_TOKEN="+tok)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("quickstart stderr:\n%s", stderr.String())
	require.NoError(t, err, "the quickstart ends by itself, successfully")
	assert.Equal(t, "demo.chat #1 from user:alice: {\"text\":\"hello\"}\ndemo.chat #2 from user:alice: {\"text\":\"bye\"}\n", string(out))
	assert.Contains(t, stderr.String(), "admin.> is not in the token")
}

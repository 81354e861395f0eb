package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/protocol"
)

const (
	protocolDir = "../.."
	clientDir   = "../../../../clients/js/src"
	consoleDir  = "../../../../localstack/devtools/console/static"
)

// The client's src/protocol.ts is what the generator writes from
// shared/protocol today: a name or value changed on the Go side fails here
// until the file is generated again, and so does an edit of it by hand.
func TestProtocolTS_IsUpToDate(t *testing.T) {
	consts, err := constants(protocolDir)
	require.NoError(t, err)
	msgs, err := shapes(messages)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(clientDir, "protocol.ts"))
	require.NoError(t, err)
	assert.Equal(t, string(render(consts, msgs)), string(got), "clients/js/src/protocol.ts is stale: go generate ./shared/protocol")
}

// The generator reads the constants themselves: their values are the Go
// package's.
func TestConstants_AreTheProtocolPackages(t *testing.T) {
	consts, err := constants(protocolDir)
	require.NoError(t, err)
	got := map[string]string{}
	for _, c := range consts {
		got[c.name] = c.value
	}
	for name, want := range map[string]string{
		"TypeSubscribe":      protocol.TypeSubscribe,
		"TypeResume":         protocol.TypeResume,
		"TypeResumed":        protocol.TypeResumed,
		"TypeError":          protocol.TypeError,
		"TypeEvent":          protocol.TypeEvent,
		"CodeHistoryExpired": protocol.CodeHistoryExpired,
		"CodeUnavailable":    protocol.CodeUnavailable,
		"AuthInvalidToken":   protocol.AuthInvalidToken,
	} {
		assert.Equal(t, want, got[name], name)
	}
	assert.NotContains(t, got, "MaxIDBytes", "only string constants")
}

func TestConstants_FollowAConstantDefinedAsAnother(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p.go"), []byte("package p\n\nconst (\n\tA = B\n\tB = \"b\"\n\tc = \"hidden\"\n\tN = 1\n)\n"), 0o644))
	consts, err := constants(dir)
	require.NoError(t, err)
	assert.Equal(t, []constant{{"A", "b"}, {"B", "b"}}, consts)
}

// The client and the console take every wire name from protocol.ts: each
// name they read exists, and they compare or set no type or code as a
// literal.
func TestClientAndConsole_UseOnlyTheProtocolsNames(t *testing.T) {
	consts, err := constants(protocolDir)
	require.NoError(t, err)
	known := map[string]bool{}
	for _, c := range consts {
		known[c.name] = true
	}
	msgs, err := shapes(messages)
	require.NoError(t, err)
	for _, s := range msgs {
		known[s.name] = true
	}
	known["ServerMessage"], known["MessageFields"], known["FieldKind"] = true, true, true
	sources, err := filepath.Glob(filepath.Join(clientDir, "*.ts"))
	require.NoError(t, err)
	files := []struct{ path, ns string }{{filepath.Join(consoleDir, "console.js"), "protocol"}}
	for _, path := range sources {
		js, err := os.ReadFile(path)
		require.NoError(t, err)
		if filepath.Base(path) != "protocol.ts" && bytes.Contains(js, []byte("import * as P from './protocol.js'")) {
			files = append(files, struct{ path, ns string }{path, "P"})
		}
	}
	require.GreaterOrEqual(t, len(files), 3, "the console, client.ts and the files that read messages")
	for _, f := range files {
		js, err := os.ReadFile(f.path)
		require.NoError(t, err)
		js = regexp.MustCompile(`(?m)(^|\s)//.*$`).ReplaceAll(js, nil) // comments may name anything
		refs := regexp.MustCompile(`(?:^|[^.\w$])`+f.ns+`\.(\w+)`).FindAllSubmatch(js, -1)
		require.NotEmpty(t, refs, "%s reads its names from the protocol", f.path)
		for _, m := range refs {
			assert.True(t, known[string(m[1])], "%s uses %s.%s, which shared/protocol does not define", f.path, f.ns, m[1])
		}
		literal := regexp.MustCompile("\\b(?:type|code)\\s*(?::|[!=]==?)\\s*['\"`][^'\"`]*['\"`]")
		assert.Empty(t, literal.FindAll(js, -1), "a type or code written out in %s instead of %s.X", f.path, f.ns)
	}
}

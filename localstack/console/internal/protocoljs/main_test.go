package main

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/protocol"
)

const (
	protocolDir = "../../../../shared/protocol"
	staticDir   = "../../static"
)

// static/protocol.js is what the generator writes from shared/protocol
// today: a name or value changed on the Go side fails here until the file
// is generated again, and so does an edit of the file by hand.
func TestProtocolJS_IsUpToDate(t *testing.T) {
	consts, err := constants(protocolDir)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(staticDir, "protocol.js"))
	require.NoError(t, err)
	assert.Equal(t, string(render(consts)), string(got), "static/protocol.js is stale: go generate ./localstack/console")
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

// console.js takes every wire name from protocol.js: each protocol.X it
// reads exists, and it compares or sets no type or code as a literal.
func TestConsoleJS_UsesOnlyTheProtocolsNames(t *testing.T) {
	consts, err := constants(protocolDir)
	require.NoError(t, err)
	known := map[string]bool{}
	for _, c := range consts {
		known[c.name] = true
	}
	js, err := os.ReadFile(filepath.Join(staticDir, "console.js"))
	require.NoError(t, err)
	js = regexp.MustCompile(`(?m)(^|\s)//.*$`).ReplaceAll(js, nil) // comments may name protocol.js
	refs := regexp.MustCompile(`(?:^|[^.\w$])protocol\.(\w+)`).FindAllSubmatch(js, -1)
	require.NotEmpty(t, refs, "console.js reads its names from protocol.js")
	for _, m := range refs {
		assert.True(t, known[string(m[1])], "console.js uses protocol.%s, which shared/protocol does not define", m[1])
	}
	literal := regexp.MustCompile("\\b(?:type|code)\\s*(?::|[!=]==?)\\s*['\"`][^'\"`]*['\"`]")
	assert.Empty(t, literal.FindAll(js, -1), "a type or code written out in console.js instead of protocol.X")
}

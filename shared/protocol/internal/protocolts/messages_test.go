package main

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The table holds every struct of shared/protocol that is a message (it has
// a field tagged json:"type"; Header is only their common start) and every
// message type declared next to them: a message added to the Go side and
// not here fails, and so would its missing union member.
func TestMessages_ListEveryMessageStruct(t *testing.T) {
	listed := map[string]bool{}
	types := map[string]bool{}
	for _, m := range messages {
		listed[reflect.TypeOf(m.wire).Name()] = true
		types[m.typ] = true
	}
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(protocolDir, "*.go"))
	require.NoError(t, err)
	var structs []string
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			ts, ok := n.(*ast.TypeSpec)
			if !ok || !ts.Name.IsExported() || ts.Name.Name == "Header" {
				return true
			}
			if st, ok := ts.Type.(*ast.StructType); ok && hasTypeTag(st) {
				structs = append(structs, ts.Name.Name)
			}
			return true
		})
		if filepath.Base(path) != "messages.go" {
			continue
		}
		for _, spec := range constSpecs(f) {
			for i, name := range spec.Names {
				if lit, ok := spec.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(name.Name, "Type") {
					v, err := strconv.Unquote(lit.Value)
					require.NoError(t, err)
					assert.True(t, types[v], "message type %s (%q) is not in protocolts' messages", name.Name, v)
				}
			}
		}
	}
	require.NotEmpty(t, structs)
	for _, s := range structs {
		assert.True(t, listed[s], "protocol.%s is a message (it has a json \"type\" field) but not in protocolts' messages", s)
	}
}

func hasTypeTag(st *ast.StructType) bool {
	for _, f := range st.Fields.List {
		if f.Tag != nil && strings.Contains(f.Tag.Value, `json:"type"`) {
			return true
		}
	}
	return false
}

// The generated file declares, for each message type, exactly the JSON
// fields of its Go struct, each optional where the struct omits it when
// empty: a field added to a Go message and not to protocol.ts fails here,
// read from the file itself, not from the generator's output.
func TestProtocolTS_HasEveryFieldOfEveryMessage(t *testing.T) {
	ts, err := os.ReadFile(filepath.Join(clientDir, "protocol.ts"))
	require.NoError(t, err)
	for _, m := range messages {
		row := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(quote(m.typ)) + `: (\{.*\}),$`).FindSubmatch(ts)
		require.NotNil(t, row, "protocol.ts has no MessageFields row for %q", m.typ)
		var got map[string]string
		require.NoError(t, json.Unmarshal(row[1], &got), "%s", row[1])
		want := map[string]string{}
		st := reflect.TypeOf(m.wire)
		for i := range st.NumField() {
			name, opts, _ := strings.Cut(st.Field(i).Tag.Get("json"), ",")
			if name == "-" || name == "type" || !st.Field(i).IsExported() {
				continue
			}
			_, kind, _, err := tsType(st.Field(i).Type)
			require.NoError(t, err)
			if strings.Contains(opts, "omitempty") {
				kind = "?" + kind
			} else if k := st.Field(i).Type.Kind(); k == reflect.Map || k == reflect.Slice && st.Field(i).Type != rawMessage {
				kind += "|null"
			}
			want[name] = kind
		}
		assert.Equal(t, want, got, "the fields of %q in protocol.ts", m.typ)
		iface := regexp.MustCompile(`(?s)export interface ` + reflect.TypeOf(m.wire).Name() + `Message \{\n(.*?)\n\}`).FindSubmatch(ts)
		require.NotNil(t, iface, "protocol.ts declares %sMessage", reflect.TypeOf(m.wire).Name())
		assert.Contains(t, string(iface[1]), quote(m.typ), "its type")
		for name, kind := range want {
			opt := ""
			if strings.HasPrefix(kind, "?") {
				opt = "?"
			}
			assert.Regexp(t, `(?m)^  `+name+regexp.QuoteMeta(opt)+`: `, string(iface[1]), "%sMessage.%s", reflect.TypeOf(m.wire).Name(), name)
		}
	}
}

// A field added to a message is in the generated interface and its row,
// with its TypeScript type and whether it may be absent; types sharing a
// struct share its interface.
func TestShapes_FollowTheStructs(t *testing.T) {
	type Member struct {
		Name string `json:"name"`
	}
	type Ping struct {
		Type   string            `json:"type"`
		ID     json.RawMessage   `json:"id,omitempty"`
		Count  uint64            `json:"count"`
		Tags   []string          `json:"tags,omitempty"`
		Seqs   map[string]int64  `json:"seqs"`
		Who    []Member          `json:"who"`
		Flags  map[string]bool   `json:"flags,omitempty"`
		Hidden bool              `json:"-"`
		Extra  map[string]string `json:"extra,omitempty"`
	}
	got, err := shapes([]message{{"ping_a", Ping{}}, {"ping_b", Ping{}}})
	require.NoError(t, err)
	ts := string(renderMessages(got))
	assert.Contains(t, ts, "export interface PingMessage {\n  type: \"ping_a\" | \"ping_b\";\n  id?: unknown;\n  count: number;\n  tags?: string[];\n  seqs: Record<string, number> | null;\n  who: Member[] | null;\n  flags?: Record<string, boolean>;\n  extra?: Record<string, string>;\n}\n")
	assert.Contains(t, ts, "export interface Member {\n  name: string;\n}\n")
	assert.Contains(t, ts, "export type ServerMessage = PingMessage;\n")
	assert.Contains(t, ts, `  "ping_b": { "id": "?unknown", "count": "number", "tags": "?array", "seqs": "object|null", "who": "array|null", "flags": "?object", "extra": "?object" },`)
}

func TestShapes_RefuseWhatTypeScriptCannotSay(t *testing.T) {
	type IntKeys struct {
		Type string         `json:"type"`
		M    map[int]string `json:"m"`
	}
	type NoType struct {
		Kind string `json:"kind"`
	}
	type Chan struct {
		Type string   `json:"type"`
		C    chan int `json:"c"`
	}
	for name, c := range map[string]struct {
		msg  message
		want string
	}{
		"int map keys": {message{"a", IntKeys{}}, "IntKeys.M: map key int"},
		"no type":      {message{"b", NoType{}}, `no string field tagged json:"type"`},
		"a channel":    {message{"c", Chan{}}, "Chan.C: no TypeScript type for chan int"},
		"not a struct": {message{"d", "text"}, "is not a struct"},
	} {
		_, err := shapes([]message{c.msg})
		if assert.Error(t, err, name) {
			assert.Contains(t, err.Error(), c.want, name)
		}
	}
}

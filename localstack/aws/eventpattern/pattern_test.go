package eventpattern

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/publish"
)

func TestPattern_MatchesExactStringsPrefixesExistsAndNestedObjects(t *testing.T) {
	ev := map[string]any{"source": "a.b", "detail-type": "wsgate.revoke", "detail": map[string]any{
		"topic": "t", "n": 1.0, "tags": []any{"red", "blue"}, "obj": map[string]any{"N": "1"},
	}}
	cases := []struct {
		pattern string
		want    bool
	}{
		{publish.RulePattern, true},
		{publish.RevokeRulePattern, true},
		{`{"detail-type":["wsgate.event"]}`, false},
		{`{"detail":{"topic":[{"exists":false}]}}`, false},
		{`{"detail":{"missing":[{"exists":false}]}}`, true},
		{`{"detail":{"missing":[{"exists":true}]}}`, false},
		{`{"detail":{"missing":["t"]}}`, false},
		{`{"source":["a.b","c"]}`, true},
		{`{"source":["c"]}`, false},
		{`{"source":["c", {"exists":true}]}`, true},
		{`{"detail":{"tags":["blue"]}}`, true},
		{`{"detail":{"n":["1"]}}`, false},
		{`{"detail":{"topic":["u"]}}`, false},
		{`{"source":{"nested":["a.b"]}}`, false},
		{`{"source":["a.b"],"detail":{"topic":["t"]}}`, true},
		// Prefixes, alone or among other values of one list.
		{`{"source":[{"prefix":"a."}]}`, true},
		{`{"source":[{"prefix":"b."}]}`, false},
		{`{"source":["x",{"prefix":"z"},{"prefix":"a"}]}`, true},
		{`{"detail":{"tags":[{"prefix":"bl"}]}}`, true},
		{`{"detail":{"missing":[{"prefix":""}]}}`, false},
		// Leaves only: under an absent parent every leaf is absent; an
		// object is not a leaf, so exists does not see it.
		{`{"detail":{"gone":{"N":[{"exists":false}]}}}`, true},
		{`{"detail":{"gone":{"N":[{"exists":true}]}}}`, false},
		{`{"detail":{"obj":{"N":[{"exists":true}]}}}`, true},
		{`{"detail":{"obj":{"N":[{"exists":false}]}}}`, false},
		{`{"detail":{"obj":[{"exists":true}]}}`, false},
		{`{"detail":{"obj":[{"exists":false}]}}`, true},
		{`{"nowhere":{"deeper":{"leaf":[{"exists":false}]}}}`, true},
	}
	for _, c := range cases {
		p, err := Compile(c.pattern)
		require.NoError(t, err, c.pattern)
		assert.Equal(t, c.want, p.Match(ev), c.pattern)
	}
}

func TestPattern_UnsupportedSyntaxIsRefusedNotIgnored(t *testing.T) {
	for _, pattern := range []string{
		`{"source":[{"suffix":".b"}]}`,
		`{"source":[{"anything-but":["a.b"]}]}`,
		`{"source":[{"equals-ignore-case":"A.B"}]}`,
		`{"source":[{"prefix":{"equals-ignore-case":"a"}}]}`,
		`{"detail":{"n":[{"numeric":[">",1]}]}}`,
		`{"detail":{"n":[1]}}`,
		`{"detail":{"flag":[true]}}`,
		`{"detail":{"v":[null]}}`,
		`{"detail":{"topic":[{"exists":true},{"exists":false}]}}`,
		`{"detail":{"topic":[{"exists":true,"prefix":"a"}]}}`,
		`{"source":[]}`,
		`{"source":"a.b"}`,
		`[]`,
		`not json`,
	} {
		_, err := Compile(pattern)
		assert.Error(t, err, pattern)
	}
	_, err := Compile(`{"source":[{"suffix":".b"}]}`)
	assert.ErrorIs(t, err, ErrUnsupported)
}

func TestAny_MatchesWhenOnePatternDoes(t *testing.T) {
	a, err := CompileAny([]string{`{"eventName":["INSERT"]}`, `{"eventName":["REMOVE"],"k":[{"prefix":"C#"}]}`})
	require.NoError(t, err)
	assert.True(t, a.MatchJSON([]byte(`{"eventName":"INSERT"}`)))
	assert.True(t, a.MatchJSON([]byte(`{"eventName":"REMOVE","k":"C#1"}`)))
	assert.False(t, a.MatchJSON([]byte(`{"eventName":"REMOVE","k":"P#1"}`)))
	assert.False(t, a.MatchJSON([]byte(`{"eventName":"MODIFY"}`)))
	assert.False(t, a.MatchJSON([]byte(`not json`)))
	_, err = CompileAny([]string{`{"eventName":["INSERT"]}`, `{"x":[{"suffix":"y"}]}`})
	assert.ErrorIs(t, err, ErrUnsupported)
}

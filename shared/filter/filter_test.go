package filter

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseSet_CanonicalisesScalarsAndLists(t *testing.T) {
	s, err := ParseSet(json.RawMessage(`{"device_id":1,"severity":["warning","critical","warning"],"on":true,"f":1.50}`))
	require.NoError(t, err)
	assert.Equal(t, Set{"device_id": {"1"}, "severity": {"critical", "warning"}, "on": {"true"}, "f": {"1.5"}}, s)
}

func TestParseSet_RejectsNestedAndBadInput(t *testing.T) {
	for _, raw := range []string{`[1]`, `{"a":{"b":1}}`, `{"a":[[1]]}`, `{"a":null}`, `"x"`, `{"":1}`, `{"a":[]}`} {
		_, err := ParseSet(json.RawMessage(raw))
		assert.ErrorIs(t, err, ErrInvalid, raw)
	}
	s, err := ParseSet(nil)
	require.NoError(t, err)
	assert.Nil(t, s)
}

func TestMatch(t *testing.T) {
	attrs := Attributes{"severity": {"critical"}, "metrics": {"humidity", "temperature"}, "device_id": {"1"}}
	cases := []struct {
		name string
		set  Set
		want bool
	}{
		{"no filters", nil, true},
		{"scalar in list", Set{"severity": {"critical", "warning"}}, true},
		{"scalar not in list", Set{"severity": {"warning"}}, false},
		{"list attribute shares a value", Set{"metrics": {"temperature"}}, true},
		{"list attribute shares none", Set{"metrics": {"pressure"}}, false},
		{"key the event lacks does not restrict", Set{"frequency": {"30s"}}, true},
		{"every key must pass", Set{"severity": {"critical"}, "device_id": {"2"}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, c.set.Match(attrs))
		})
	}
}

func TestProjection_KeepAndApply(t *testing.T) {
	p := Projection{"metrics": "telemetry"}
	payload := json.RawMessage(`{"type":"telemetry_update","device_id":1,"telemetry":{"temperature":{"value":23.5},"humidity":{"value":45.2},"pressure":{"value":1}}}`)

	keep := p.Keep([]Set{{"metrics": {"temperature"}}, {"metrics": {"humidity"}}})
	assert.Equal(t, map[string][]string{"telemetry": {"humidity", "temperature"}}, keep)
	out, err := Apply(payload, keep)
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"telemetry_update","device_id":1,"telemetry":{"temperature":{"value":23.5},"humidity":{"value":45.2}}}`, string(out))
	assert.Regexp(t, `^\{"type":"telemetry_update","device_id":1,"telemetry":`, string(out), "key order kept")

	assert.Nil(t, p.Keep([]Set{{"metrics": {"temperature"}}, {"severity": {"x"}}}), "a subscription without the key wants everything")
	assert.Nil(t, Projection(nil).Keep([]Set{{"metrics": {"x"}}}))
	same, err := Apply(json.RawMessage(`[1,2]`), keep)
	require.NoError(t, err)
	assert.Equal(t, `[1,2]`, string(same))
	assert.NotEqual(t, KeepKey(keep), KeepKey(nil))
}

func FuzzParseSet(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":[1,"x",true]}`, `{}`, `null`, `{"a":{"b":1}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseSet(json.RawMessage(s))
		if err != nil {
			return
		}
		// A parsed set always matches attributes equal to itself.
		if !set.Match(Attributes(set)) {
			t.Fatalf("%s does not match itself", s)
		}
	})
}

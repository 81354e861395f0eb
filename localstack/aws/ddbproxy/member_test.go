package ddbproxy

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMember_FindsTopLevelMembersOnly(t *testing.T) {
	b := []byte(` { "Items":[{"ConsumedCapacity":{"S":"x\"}]"}},{"n":{"N":"1"}}], "Count" : 2,"ConsumedCapacity":{"TableName":"t","CapacityUnits":1.5} } `)
	m, ok := member(b, "ConsumedCapacity")
	require.True(t, ok)
	assert.Equal(t, `{"TableName":"t","CapacityUnits":1.5}`, string(b[m.value:m.close]))
	m, ok = member(b, "Count")
	require.True(t, ok)
	assert.Equal(t, `2`, string(b[m.value:m.close]))
	m, ok = member(b, "Items")
	require.True(t, ok)
	assert.Equal(t, `[{"ConsumedCapacity":{"S":"x\"}]"}},{"n":{"N":"1"}}]`, string(b[m.value:m.close]))
	_, ok = member(b, "n")
	assert.False(t, ok, "a nested member is not the object's")
	for _, bad := range []string{``, `[]`, `{"a":`, `{"a":"x`, `{"a":1 "b":2}`, `{"a":[1,2}`} {
		_, ok = member([]byte(bad), "b")
		assert.False(t, ok, bad)
	}
}

func TestMember_SplicesKeepJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"ConsumedCapacity":{"CapacityUnits":1},"Count":0}`, `{"Count":0}`},
		{`{"Count":0, "ConsumedCapacity":{"CapacityUnits":1}}`, `{"Count":0}`},
		{`{"A":1,"ConsumedCapacity":{"CapacityUnits":1} ,"B":2}`, `{"A":1,"B":2}`},
		{`{"ConsumedCapacity":{}}`, `{}`},
	} {
		m, ok := member([]byte(tc.in), "ConsumedCapacity")
		require.True(t, ok, tc.in)
		assert.JSONEq(t, tc.want, string(withoutMember([]byte(tc.in), m)), tc.in)
	}
	assert.JSONEq(t, `{"R":"TOTAL"}`, string(withMember([]byte(`{ }`), "R", []byte(`"TOTAL"`))))
	assert.JSONEq(t, `{"R":"TOTAL","A":1}`, string(withMember([]byte(`{"A":1}`), "R", []byte(`"TOTAL"`))))
	in := []byte(`{"R":"NONE","A":1}`)
	m, _ := member(in, "R")
	out := withValue(in, m, []byte(`"TOTAL"`))
	assert.True(t, json.Valid(out))
	assert.JSONEq(t, `{"R":"TOTAL","A":1}`, string(out))
}

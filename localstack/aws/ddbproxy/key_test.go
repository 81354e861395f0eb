package ddbproxy

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func attrs(t testing.TB, s string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(s), &m))
	return m
}

func TestKey_OneItemOneID(t *testing.T) {
	tests := []struct {
		name string
		a, b string // two spellings of keys
		same bool
	}{
		{"attribute order", `{"pk":{"S":"a"},"sk":{"S":"b"}}`, `{"sk":{"S":"b"},"pk":{"S":"a"}}`, true},
		{"equal numbers", `{"pk":{"N":"1"}}`, `{"pk":{"N":"1.0"}}`, true},
		{"exponent", `{"pk":{"N":"100"}}`, `{"pk":{"N":"1E2"}}`, true},
		{"38 digits apart", `{"pk":{"N":"12345678901234567890123456789012345678"}}`, `{"pk":{"N":"12345678901234567890123456789012345679"}}`, false},
		{"string is not number", `{"pk":{"S":"1"}}`, `{"pk":{"N":"1"}}`, false},
		{"binary", `{"pk":{"B":"AAE="}}`, `{"pk":{"B":"AAE="}}`, true},
		{"no concatenation clash", `{"pk":{"S":"a"},"sk":{"S":"bc"}}`, `{"pk":{"S":"ab"},"sk":{"S":"c"}}`, false},
		{"other values", `{"pk":{"S":"a"}}`, `{"pk":{"S":"b"}}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := keyFromKey("t1", attrs(t, tt.a))
			require.NoError(t, err)
			b, err := keyFromKey("t1", attrs(t, tt.b))
			require.NoError(t, err)
			assert.Equal(t, tt.same, a.id == b.id)
		})
	}
}

func TestKey_FromItemMatchesKey(t *testing.T) {
	fromItem, err := keyFromItem("t1", attrs(t, `{"pk":{"S":"a"},"sk":{"N":"2"},"v":{"L":[]}}`), []string{"pk", "sk"})
	require.NoError(t, err)
	fromKey, err := keyFromKey("t1", attrs(t, `{"sk":{"N":"2.00"},"pk":{"S":"a"}}`))
	require.NoError(t, err)
	assert.Equal(t, fromKey.id, fromItem.id)
	assert.JSONEq(t, `{"pk":{"S":"a"},"sk":{"N":"2"}}`, string(fromItem.raw), "the key alone, to read the item by")

	other, err := keyFromKey("t2", attrs(t, `{"sk":{"N":"2"},"pk":{"S":"a"}}`))
	require.NoError(t, err)
	assert.NotEqual(t, fromKey.id, other.id, "another table")
}

func TestKey_Refused(t *testing.T) {
	for name, key := range map[string]string{
		"list":       `{"pk":{"L":[]}}`,
		"bad number": `{"pk":{"N":"one"}}`,
		"not a map":  `{"pk":"a"}`,
	} {
		_, err := keyFromKey("t1", attrs(t, key))
		assert.ErrorIs(t, err, errBadKey, name)
	}
	_, err := keyFromKey("", attrs(t, `{"pk":{"S":"a"}}`))
	assert.ErrorIs(t, err, errBadKey, "no table")
	_, err = keyFromItem("t1", attrs(t, `{"pk":{"S":"a"}}`), []string{"pk", "sk"})
	assert.ErrorIs(t, err, errBadKey, "item without its sort key")
}

// FuzzTransactGetIDs feeds request bodies from outside to the parser: it
// must never panic, and a key it accepts must give the same id again.
func FuzzTransactGetIDs(f *testing.F) {
	f.Add([]byte(`{"TransactItems":[{"Get":{"TableName":"t1","Key":{"pk":{"S":"a"},"n":{"N":"1e3"}}}}]}`))
	f.Add([]byte(`{"TransactItems":[{"Get":null},{}]}`))
	f.Add([]byte(`{"TransactItems":[{"Get":{"TableName":"t1","Key":{"pk":{"B":"AA=="}}}}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ids, err := transactGetIDs(body)
		if err != nil {
			return
		}
		again, err := transactGetIDs(body)
		require.NoError(t, err)
		assert.Equal(t, ids, again)
	})
}

// FuzzKeyFromKey: a key the proxy accepts reads back (from the raw key it
// sends DynamoDB Local) as the same item.
func FuzzKeyFromKey(f *testing.F) {
	f.Add("t1", []byte(`{"pk":{"S":"a"},"sk":{"N":"-1.5E-3"}}`))
	f.Add("t1", []byte(`{"pk":{"B":"AAE="}}`))
	f.Fuzz(func(t *testing.T, table string, key []byte) {
		var m map[string]json.RawMessage
		if json.Unmarshal(key, &m) != nil {
			return
		}
		k, err := keyFromKey(table, m)
		if err != nil {
			return
		}
		var back map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(k.raw, &back))
		k2, err := keyFromKey(table, back)
		require.NoError(t, err)
		assert.Equal(t, k.id, k2.id)
	})
}

package ddbproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strconv"
)

// itemKey identifies one item.
type itemKey struct {
	table string
	// id is canonical: the table and each key attribute, by name, with its
	// type and value (numbers normalized), so one item has one id whether
	// it came as a Key or inside an Item.
	id string
	// raw is the key as DynamoDB takes it: {"pk":{"S":"a"},...}.
	raw json.RawMessage
}

var errBadKey = errors.New("ddbproxy: unusable key")

// keyFromKey is the item a request's Key names.
func keyFromKey(table string, key map[string]json.RawMessage) (itemKey, error) {
	if table == "" || len(key) == 0 {
		return itemKey{}, errBadKey
	}
	raw, err := json.Marshal(key)
	if err != nil {
		return itemKey{}, err
	}
	id, err := canonicalID(table, key)
	if err != nil {
		return itemKey{}, err
	}
	return itemKey{table: table, id: id, raw: raw}, nil
}

// keyFromItem is the item a Put writes: its key attributes are names.
func keyFromItem(table string, item map[string]json.RawMessage, names []string) (itemKey, error) {
	key := make(map[string]json.RawMessage, len(names))
	for _, n := range names {
		v, ok := item[n]
		if !ok {
			return itemKey{}, fmt.Errorf("%w: item has no %s", errBadKey, n)
		}
		key[n] = v
	}
	return keyFromKey(table, key)
}

func canonicalID(table string, key map[string]json.RawMessage) (string, error) {
	names := make([]string, 0, len(key))
	for n := range key {
		names = append(names, n)
	}
	slices.Sort(names)
	b := append(make([]byte, 0, 64), table...)
	for _, n := range names {
		typ, v, err := keyValue(key[n])
		if err != nil {
			return "", fmt.Errorf("%w: %s: %v", errBadKey, n, err)
		}
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(len(n)), 10)
		b = append(b, ':')
		b = append(b, n...)
		b = append(b, typ)
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	return string(b), nil
}

// keyValue decodes a key attribute's value: a string, number or binary.
func keyValue(raw json.RawMessage) (byte, string, error) {
	var av struct {
		S, N, B *string
	}
	if err := json.Unmarshal(raw, &av); err != nil {
		return 0, "", err
	}
	switch {
	case av.S != nil:
		return 'S', *av.S, nil
	case av.N != nil:
		n, err := normalNumber(*av.N)
		return 'N', n, err
	case av.B != nil:
		return 'B', *av.B, nil
	}
	return 0, "", errors.New("not a string, number or binary")
}

// normalNumber spells equal numbers alike: DynamoDB takes "1", "1.0" and
// "10E-1" for the same key.
func normalNumber(s string) (string, error) {
	// 256 bits keep DynamoDB's 38 significant digits apart.
	f, ok := new(big.Float).SetPrec(256).SetString(s)
	if !ok {
		return "", fmt.Errorf("bad number %q", s)
	}
	return f.Text('e', -1), nil
}

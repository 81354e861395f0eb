package ddbproxy

import (
	"encoding/json"
	"errors"
)

// fields is a request or response object with its members undecoded: the
// proxy decodes only the members it needs and re-encodes the rest as they
// came.
type fields map[string]json.RawMessage

func parseFields(b []byte) (fields, error) {
	var f fields
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	if f == nil {
		return nil, errors.New("not a JSON object")
	}
	return f, nil
}

func (f fields) str(name string) string {
	var s string
	if raw, ok := f[name]; ok {
		_ = json.Unmarshal(raw, &s)
	}
	return s
}

func (f fields) flag(name string) bool {
	var b bool
	if raw, ok := f[name]; ok {
		_ = json.Unmarshal(raw, &b)
	}
	return b
}

func (f fields) setStr(name, v string) {
	f[name], _ = json.Marshal(v)
}

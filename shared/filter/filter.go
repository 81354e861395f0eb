// Package filter matches subscription filters against event attributes and
// trims payloads to what a subscription asked for.
//
// Values are compared as canonical strings: a JSON string is itself, a number
// is its shortest decimal form (so 1, 1.0 and "1" are equal), a boolean is
// "true" or "false". A list attribute matches when it shares a value with the
// filter.
package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
)

// Limits on filters carried by one subscription.
const (
	MaxKeys   = 16
	MaxValues = 64
	MaxValue  = 256
)

// ErrInvalid is wrapped by every filter or attribute parse error.
var ErrInvalid = errors.New("invalid filter")

// Set is a subscription's filters: for each key, the acceptable values.
// A nil or empty Set accepts everything.
type Set map[string][]string

// Attributes are an event's filterable attributes: for each key, its values
// (one for a scalar attribute, several for a list).
type Attributes map[string][]string

// ParseSet parses a JSON object whose values are scalars or lists of scalars.
func ParseSet(raw json.RawMessage) (Set, error) {
	m, err := parseObject(raw, "filters")
	if err != nil {
		return nil, err
	}
	if len(m) > MaxKeys {
		return nil, fmt.Errorf("%w: more than %d filter keys", ErrInvalid, MaxKeys)
	}
	for k, v := range m {
		if len(v) == 0 {
			return nil, fmt.Errorf("%w: filters.%s lists no values", ErrInvalid, k)
		}
	}
	return Set(m), nil
}

// ParseAttributes parses an event's attributes object.
func ParseAttributes(raw json.RawMessage) (Attributes, error) {
	m, err := parseObject(raw, "attributes")
	if err != nil {
		return nil, err
	}
	return Attributes(m), nil
}

func parseObject(raw json.RawMessage, what string) (map[string][]string, error) {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%w: %s must be an object", ErrInvalid, what)
	}
	out := make(map[string][]string, len(obj))
	for k, v := range obj {
		if k == "" {
			return nil, fmt.Errorf("%w: %s has an empty key", ErrInvalid, what)
		}
		vals, err := Values(v)
		if err != nil {
			return nil, fmt.Errorf("%w: %s.%s: %v", ErrInvalid, what, k, err)
		}
		if len(vals) > MaxValues {
			return nil, fmt.Errorf("%w: %s.%s has more than %d values", ErrInvalid, what, k, MaxValues)
		}
		out[k] = vals
	}
	return out, nil
}

// Values canonicalises a JSON scalar or a list of scalars into strings.
func Values(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var list []json.RawMessage
		if err := json.Unmarshal(raw, &list); err != nil {
			return nil, err
		}
		out := make([]string, 0, len(list))
		for _, item := range list {
			s, err := Scalar(item)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		sort.Strings(out)
		return out, nil
	}
	s, err := Scalar(raw)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// Scalar canonicalises one JSON string, number or boolean.
func Scalar(raw json.RawMessage) (string, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return "", fmt.Errorf("not JSON: %w", err)
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return "", fmt.Errorf("bad number %s", x)
		}
		s = strconv.FormatFloat(f, 'f', -1, 64)
	case bool:
		s = strconv.FormatBool(x)
	default:
		return "", errors.New("values must be strings, numbers or booleans")
	}
	if len(s) > MaxValue {
		return "", fmt.Errorf("value longer than %d bytes", MaxValue)
	}
	return s, nil
}

// Match reports whether attrs pass the filters. A filter key the event has
// no attribute for does not restrict delivery: filters name what a
// subscriber cares about (e.g. "frequency") and events carry only the
// attributes that apply to them.
func (s Set) Match(attrs Attributes) bool {
	for k, want := range s {
		have, ok := attrs[k]
		if !ok {
			continue
		}
		if !intersects(want, have) {
			return false
		}
	}
	return true
}

func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// Equal reports whether two sets hold the same keys and values.
func (s Set) Equal(o Set) bool {
	if len(s) != len(o) {
		return false
	}
	for k, v := range s {
		w, ok := o[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}

// Projection names, for a filter key, the payload field whose object keys
// that filter also trims: {"metrics": "telemetry"} keeps only the metrics a
// subscriber filtered on inside payload.telemetry.
type Projection map[string]string

// Keep returns, for one delivery, the keys to keep per payload field, or nil
// when the payload goes out whole. sets are the filters of every
// subscription of the connection that accepted the event: a subscription
// without a filter on a projected key wants that field whole.
func (p Projection) Keep(sets []Set) map[string][]string {
	if len(p) == 0 {
		return nil
	}
	keep := map[string][]string{}
	for key, field := range p {
		var union []string
		whole := false
		for _, s := range sets {
			vals, ok := s[key]
			if !ok {
				whole = true
				break
			}
			for _, v := range vals {
				if !slices.Contains(union, v) {
					union = append(union, v)
				}
			}
		}
		if whole {
			continue
		}
		sort.Strings(union)
		keep[field] = union
	}
	if len(keep) == 0 {
		return nil
	}
	return keep
}

// KeepKey is a stable string for a Keep result, for caching encoded payloads.
func KeepKey(keep map[string][]string) string {
	if len(keep) == 0 {
		return ""
	}
	fields := make([]string, 0, len(keep))
	for f := range keep {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	var b bytes.Buffer
	for _, f := range fields {
		b.WriteString(strconv.Quote(f))
		b.WriteByte('=')
		for _, v := range keep[f] {
			b.WriteString(strconv.Quote(v))
			b.WriteByte(',')
		}
		b.WriteByte(';')
	}
	return b.String()
}

// Apply trims a JSON object payload: for each field in keep, only the listed
// keys of payload[field] remain. Fields that are missing or not objects are
// left alone; key order of untouched fields is preserved.
func Apply(payload json.RawMessage, keep map[string][]string) (json.RawMessage, error) {
	if len(keep) == 0 {
		return payload, nil
	}
	var obj orderedObject
	if err := obj.UnmarshalJSON(payload); err != nil {
		return payload, nil // not an object: nothing to trim
	}
	changed := false
	for i, kv := range obj {
		keys, ok := keep[kv.key]
		if !ok {
			continue
		}
		var inner orderedObject
		if err := inner.UnmarshalJSON(kv.value); err != nil {
			continue
		}
		trimmed := inner[:0:0]
		for _, ikv := range inner {
			if slices.Contains(keys, ikv.key) {
				trimmed = append(trimmed, ikv)
			}
		}
		b, err := trimmed.MarshalJSON()
		if err != nil {
			return nil, err
		}
		obj[i].value = b
		changed = true
	}
	if !changed {
		return payload, nil
	}
	return obj.MarshalJSON()
}

type keyValue struct {
	key   string
	value json.RawMessage
}

// orderedObject is a JSON object that keeps its key order, so a trimmed
// payload differs from the publisher's only by the removed keys.
type orderedObject []keyValue

func (o *orderedObject) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not an object")
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		*o = append(*o, keyValue{key: kt.(string), value: v})
	}
	_, err = dec.Token()
	return err
}

func (o orderedObject) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, kv := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(kv.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(kv.value)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

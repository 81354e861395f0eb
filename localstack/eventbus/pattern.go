package eventbus

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

// pattern is a compiled event pattern: an event matches when every field
// of the pattern matches the event's field of that name.
type pattern map[string]field

// field matches one field of an event: inside it, when the pattern holds
// an object there, else by a list of exact strings and at most one
// {"exists": bool}, any of which may match.
type field struct {
	nested pattern
	values []string
	exists *bool
}

// errUnsupported marks what EventBridge accepts in a pattern but this
// emulator does not implement; refusing it beats silently matching wrong.
var errUnsupported = errors.New("not supported by the local EventBridge (exact strings, exists and nested objects are)")

func parsePattern(s string) (pattern, error) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("event pattern is not a JSON object: %s", s)
	}
	return compile(obj)
}

func compile(obj map[string]any) (pattern, error) {
	p := make(pattern, len(obj))
	for key, v := range obj {
		f, err := compileField(v)
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", key, err)
		}
		p[key] = f
	}
	return p, nil
}

func compileField(v any) (field, error) {
	switch x := v.(type) {
	case map[string]any:
		nested, err := compile(x)
		return field{nested: nested}, err
	case []any:
		if len(x) == 0 {
			return field{}, errors.New("an empty list matches nothing")
		}
		var f field
		for _, m := range x {
			switch m := m.(type) {
			case string:
				f.values = append(f.values, m)
			case map[string]any:
				exists, ok := m["exists"].(bool)
				if !ok || len(m) != 1 || f.exists != nil {
					return field{}, fmt.Errorf("matcher %v: %w", m, errUnsupported)
				}
				f.exists = &exists
			default:
				return field{}, fmt.Errorf("value %v: %w", m, errUnsupported)
			}
		}
		return f, nil
	default:
		return field{}, fmt.Errorf("%v: pattern values are lists or objects", v)
	}
}

// match reports whether an event (decoded JSON) matches the pattern.
func (p pattern) match(event map[string]any) bool {
	for key, f := range p {
		v, present := event[key]
		if !f.match(v, present) {
			return false
		}
	}
	return true
}

func (f field) match(v any, present bool) bool {
	if f.nested != nil {
		obj, ok := v.(map[string]any)
		return ok && f.nested.match(obj)
	}
	if f.exists != nil && *f.exists == present {
		return true
	}
	candidates := []any{v}
	if list, ok := v.([]any); ok {
		candidates = list // a pattern value matches any element of an array
	}
	for _, c := range candidates {
		if s, ok := c.(string); ok && slices.Contains(f.values, s) {
			return true
		}
	}
	return false
}

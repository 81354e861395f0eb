// Package eventpattern matches events against EventBridge event patterns:
// the local bus's rules and the local stream mapping's filters (Lambda's
// event filtering uses the same syntax), so the local stack evaluates the
// very pattern strings the CDK stack deploys.
package eventpattern

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Pattern is a compiled event pattern: an event matches when every field
// of the pattern matches the event's field of that name.
type Pattern map[string]field

// field matches one field of an event: inside it, when the pattern holds
// an object there, else by a list of exact strings, {"prefix": string}
// and at most one {"exists": bool}, any of which may match.
type field struct {
	nested   Pattern
	values   []string
	prefixes []string
	exists   *bool
}

// ErrUnsupported marks what EventBridge accepts in a pattern but this
// emulator does not implement; refusing it beats silently matching wrong.
var ErrUnsupported = errors.New("not supported by the local event patterns (exact strings, prefix, exists and nested objects are)")

// Compile parses an event pattern.
func Compile(s string) (Pattern, error) {
	var obj map[string]any
	if err := json.Unmarshal([]byte(s), &obj); err != nil || obj == nil {
		return nil, fmt.Errorf("event pattern is not a JSON object: %s", s)
	}
	return compile(obj)
}

func compile(obj map[string]any) (Pattern, error) {
	p := make(Pattern, len(obj))
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
				if err := f.addMatcher(m); err != nil {
					return field{}, err
				}
			default:
				return field{}, fmt.Errorf("value %v: %w", m, ErrUnsupported)
			}
		}
		return f, nil
	default:
		return field{}, fmt.Errorf("%v: pattern values are lists or objects", v)
	}
}

// addMatcher adds one {"exists": bool} or {"prefix": string}.
func (f *field) addMatcher(m map[string]any) error {
	if len(m) == 1 {
		if exists, ok := m["exists"].(bool); ok && f.exists == nil {
			f.exists = &exists
			return nil
		}
		if prefix, ok := m["prefix"].(string); ok {
			f.prefixes = append(f.prefixes, prefix)
			return nil
		}
	}
	return fmt.Errorf("matcher %v: %w", m, ErrUnsupported)
}

// Match reports whether an event (decoded JSON) matches the pattern.
func (p Pattern) Match(event map[string]any) bool {
	for key, f := range p {
		v, present := event[key]
		if !f.match(v, present) {
			return false
		}
	}
	return true
}

// MatchJSON decodes an event and matches it; an event that is not a JSON
// object matches nothing.
func (p Pattern) MatchJSON(event []byte) bool {
	var obj map[string]any
	return json.Unmarshal(event, &obj) == nil && obj != nil && p.Match(obj)
}

func (f field) match(v any, present bool) bool {
	if f.nested != nil {
		// EventBridge matches leaves by their path: under an absent or
		// non-object field every leaf is absent, which {"exists": false}
		// accepts.
		obj, _ := v.(map[string]any)
		return f.nested.Match(obj)
	}
	if _, isObject := v.(map[string]any); isObject {
		present = false // exists, values and prefixes apply to leaves only
	}
	if f.exists != nil && *f.exists == present {
		return true
	}
	if !present {
		return false
	}
	candidates := []any{v}
	if list, ok := v.([]any); ok {
		candidates = list // a pattern value matches any element of an array
	}
	for _, c := range candidates {
		s, ok := c.(string)
		if !ok {
			continue
		}
		if slices.Contains(f.values, s) || slices.ContainsFunc(f.prefixes, func(p string) bool { return strings.HasPrefix(s, p) }) {
			return true
		}
	}
	return false
}

// Any is a list of patterns (an event source mapping's filters): an event
// matches when one of them does.
type Any []Pattern

// CompileAny compiles each pattern.
func CompileAny(patterns []string) (Any, error) {
	out := make(Any, 0, len(patterns))
	for _, s := range patterns {
		p, err := Compile(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// MatchJSON reports whether the event matches one of the patterns.
func (a Any) MatchJSON(event []byte) bool {
	var obj map[string]any
	if json.Unmarshal(event, &obj) != nil || obj == nil {
		return false
	}
	return slices.ContainsFunc(a, func(p Pattern) bool { return p.Match(obj) })
}

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/wsgate/wsgate/shared/protocol"
)

// message is one message the gateway sends: its type on the wire and the
// struct that is its wire form. Several types may share a struct (join and
// leave are both a PresenceEvent).
type message struct {
	typ  string
	wire any
}

// messages is every message the gateway sends. The TypeScript union is
// written from these structs by reflection, so a field added to one of
// them changes the generated file (and TestProtocolTS_IsUpToDate fails
// until it is generated again); TestMessages_ListEveryMessageStruct fails
// when a message struct or a message type is missing here.
var messages = []message{
	{protocol.TypeAuthResponse, protocol.AuthResponse{}},
	{protocol.TypeError, protocol.Error{}},
	{protocol.TypeEvent, protocol.Event{}},
	{protocol.TypeJoin, protocol.PresenceEvent{}},
	{protocol.TypeLeave, protocol.PresenceEvent{}},
	{protocol.TypePong, protocol.Pong{}},
	{protocol.TypePresence, protocol.PresenceReply{}},
	{protocol.TypePublished, protocol.Published{}},
	{protocol.TypeResumed, protocol.Resumed{}},
	{protocol.TypeSubscribed, protocol.Subscribed{}},
	{protocol.TypeUnsubscribed, protocol.Unsubscribed{}},
}

// field is one JSON field of a message, as TypeScript sees it.
type field struct {
	name     string
	ts       string // its TypeScript type
	kind     string // what decoding checks: string, number, boolean, array, object, or unknown (anything); |null when it may be null
	optional bool
}

// shape is one TypeScript interface: a message struct (with the types it
// is sent as) or a struct nested in one.
type shape struct {
	name   string // the TypeScript name
	goName string
	types  []string // the wire types; empty for a nested struct
	fields []field
}

// shapes reflects over the messages' structs: one shape per struct, in
// the order of their TypeScript names, nested structs included.
func shapes(msgs []message) ([]shape, error) {
	byType := map[reflect.Type]*shape{}
	var order []reflect.Type
	var add func(t reflect.Type, typ string) error
	add = func(t reflect.Type, typ string) error {
		if s, ok := byType[t]; ok {
			if typ != "" {
				s.types = append(s.types, typ)
			}
			return nil
		}
		s := &shape{name: tsName(t, typ != ""), goName: t.Name()}
		if typ != "" {
			s.types = []string{typ}
		}
		byType[t] = s
		order = append(order, t)
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				return fmt.Errorf("%s.%s: no json name", t.Name(), f.Name)
			}
			if name == "type" && typ != "" {
				continue // the discriminant, written from types
			}
			ts, kind, nested, err := tsType(f.Type)
			if err != nil {
				return fmt.Errorf("%s.%s: %w", t.Name(), f.Name, err)
			}
			if nested != nil {
				if err := add(nested, ""); err != nil {
					return err
				}
			}
			optional := strings.Contains(","+opts+",", ",omitempty,")
			if !optional && (f.Type.Kind() == reflect.Slice && f.Type != rawMessage || f.Type.Kind() == reflect.Map) {
				// encoding/json writes a nil slice or map as null.
				ts, kind = ts+" | null", kind+"|null"
			}
			s.fields = append(s.fields, field{name: name, ts: ts, kind: kind, optional: optional})
		}
		return nil
	}
	for _, m := range msgs {
		t := reflect.TypeOf(m.wire)
		if t.Kind() != reflect.Struct {
			return nil, fmt.Errorf("message %q: %s is not a struct", m.typ, t)
		}
		if f, ok := typeField(t); !ok || f.Type.Kind() != reflect.String {
			return nil, fmt.Errorf("message %q: %s has no string field tagged json:\"type\"", m.typ, t.Name())
		}
		if err := add(t, m.typ); err != nil {
			return nil, err
		}
	}
	out := make([]shape, 0, len(order))
	for _, t := range order {
		out = append(out, *byType[t])
	}
	slices.SortFunc(out, func(a, b shape) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

func typeField(t reflect.Type) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name == "type" {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

// tsName names a message struct's interface <GoName>Message (Error and
// Event would shadow JavaScript's own); a nested struct keeps its name.
func tsName(t reflect.Type, isMessage bool) string {
	if isMessage {
		return t.Name() + "Message"
	}
	return t.Name()
}

var rawMessage = reflect.TypeFor[json.RawMessage]()

// tsType is the TypeScript type of a Go field, the kind decoding checks,
// and the struct it names that needs an interface of its own.
func tsType(t reflect.Type) (ts, kind string, nested reflect.Type, err error) {
	if t == rawMessage {
		return "unknown", "unknown", nil, nil // any JSON value
	}
	switch t.Kind() {
	case reflect.String:
		return "string", "string", nil, nil
	case reflect.Bool:
		return "boolean", "boolean", nil, nil
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Float64:
		return "number", "number", nil, nil
	case reflect.Slice:
		elem, _, nested, err := tsType(t.Elem())
		return elem + "[]", "array", nested, err
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return "", "", nil, fmt.Errorf("map key %s: only string keys are JSON object keys", t.Key())
		}
		elem, _, nested, err := tsType(t.Elem())
		return "Record<string, " + elem + ">", "object", nested, err
	case reflect.Struct:
		if t.Name() == "" {
			return "", "", nil, fmt.Errorf("an anonymous struct has no TypeScript name")
		}
		return t.Name(), "object", t, nil
	}
	return "", "", nil, fmt.Errorf("no TypeScript type for %s", t)
}

// renderMessages writes the interfaces, the union ServerMessage and
// MessageFields, the table the client checks a decoded message against.
func renderMessages(shapes []shape) []byte {
	var b bytes.Buffer
	b.WriteString(`
// Every message the gateway sends, from the structs of shared/protocol:
// ServerMessage is their union, told apart by type.
`)
	var all []string
	for _, s := range shapes {
		fmt.Fprintf(&b, "\n/** shared/protocol.%s */\nexport interface %s {\n", s.goName, s.name)
		if len(s.types) > 0 {
			lits := make([]string, len(s.types))
			for i, t := range s.types {
				lits[i] = quote(t)
				all = append(all, s.name)
			}
			fmt.Fprintf(&b, "  type: %s;\n", strings.Join(lits, " | "))
		}
		for _, f := range s.fields {
			opt := ""
			if f.optional {
				opt = "?"
			}
			fmt.Fprintf(&b, "  %s%s: %s;\n", f.name, opt, f.ts)
		}
		b.WriteString("}\n")
	}
	all = slices.Compact(all)
	fmt.Fprintf(&b, "\nexport type ServerMessage = %s;\n", strings.Join(all, " | "))
	b.WriteString(`
/** A field's JSON kind: string, number, boolean, array, object or unknown (any); a leading ? marks it optional, |null that it may be null. */
export type FieldKind = string;

/** Each message type's fields (type aside) and their kinds, for checking a decoded message. */
export const MessageFields: Record<ServerMessage['type'], Record<string, FieldKind>> = {
`)
	var rows []string
	for _, s := range shapes {
		for _, t := range s.types {
			var fs []string
			for _, f := range s.fields {
				k := f.kind
				if f.optional {
					k = "?" + k
				}
				fs = append(fs, fmt.Sprintf("%s: %s", quote(f.name), quote(k)))
			}
			rows = append(rows, fmt.Sprintf("  %s: { %s },\n", quote(t), strings.Join(fs, ", ")))
		}
	}
	slices.Sort(rows)
	for _, r := range rows {
		b.WriteString(r)
	}
	b.WriteString("};\n")
	return b.Bytes()
}

func quote(s string) string {
	v, _ := json.Marshal(s)
	return string(v)
}

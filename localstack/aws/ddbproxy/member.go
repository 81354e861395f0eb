package ddbproxy

// span is one top-level member of a JSON object, found by scanning its
// bytes without decoding anything: the metered path reads the few members
// it needs (ConsumedCapacity, a Query's Items) and splices the body where
// it must change, and passes every other byte on as DynamoDB Local wrote
// it.
type span struct {
	start, end   int // the whole member: from its name's quote to its value's end
	value, close int // its value: b[value:close]
}

// member finds the top-level member name of the JSON object b; false when
// b has none or is not an object (names are compared as written: the
// DynamoDB API's member names have no escapes).
func member(b []byte, name string) (span, bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return span{}, false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return span{}, false // '}' or not JSON
		}
		start := i
		i = skipString(b, i)
		key := b[start+1 : max(start+1, i-1)]
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ':' {
			return span{}, false
		}
		v := skipSpace(b, i+1)
		i = skipValue(b, v)
		if i > len(b) {
			return span{}, false
		}
		if string(key) == name {
			return span{start: start, end: i, value: v, close: i}, true
		}
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != ',' {
			return span{}, false
		}
		i++
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string opening at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b) + 1
}

// skipValue returns the index after the value starting at b[i]; past
// len(b) when it does not end.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return len(b) + 1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b) + 1
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// withoutMember is b less the member m, and the comma that joined it to
// the others, in b's own array (b is overwritten).
func withoutMember(b []byte, m span) []byte {
	start, end := m.start, m.end
	if j := skipSpace(b, end); j < len(b) && b[j] == ',' {
		end = j + 1 // a member follows: take its comma
	} else {
		k := start - 1
		for k >= 0 && (b[k] == ' ' || b[k] == '\t' || b[k] == '\n' || b[k] == '\r') {
			k--
		}
		if k >= 0 && b[k] == ',' {
			start = k // the last member: take the comma before it
		}
	}
	n := copy(b[start:], b[end:])
	return b[:start+n]
}

// withValue is b with m's value replaced by v.
func withValue(b []byte, m span, v []byte) []byte {
	out := make([]byte, 0, len(b)-(m.close-m.value)+len(v))
	return append(append(append(out, b[:m.value]...), v...), b[m.close:]...)
}

// withMember is the JSON object b with the member name: raw added first
// (b must not have it).
func withMember(b []byte, name string, raw []byte) []byte {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return b
	}
	sep := ","
	if j := skipSpace(b, i+1); j < len(b) && b[j] == '}' {
		sep = ""
	}
	out := make([]byte, 0, len(b)+len(name)+len(raw)+4)
	out = append(out, b[:i+1]...)
	out = append(out, '"')
	out = append(out, name...)
	out = append(out, '"', ':')
	out = append(out, raw...)
	out = append(out, sep...)
	return append(out, b[i+1:]...)
}

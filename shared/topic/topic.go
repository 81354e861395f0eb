// Package topic parses and matches wsgate topics and topic patterns.
//
// A topic is a dot-separated list of non-empty segments ("profiles.save.global").
// A segment that holds '.', '*', '>' or '%' is percent-encoded by whoever builds
// the topic (see EncodeSegment). A pattern is a topic whose segments may also be
// "*" (exactly one segment) or, as the last segment, ">" (one or more segments).
package topic

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Limits on topics and patterns. They keep DynamoDB keys well under their
// 2048-byte limit and bound the number of prefix lookups per event.
const (
	MaxLength   = 512
	MaxSegments = 12
)

// ErrInvalid is wrapped by every parse error, so callers can branch on it.
var ErrInvalid = errors.New("invalid topic")

const (
	wildcardOne  = "*"
	wildcardRest = ">"
)

// Pattern is a parsed, valid topic pattern. A Pattern without wildcards is a
// plain topic. The zero value is not valid; build one with ParsePattern or
// ParseTopic.
type Pattern struct {
	segs []string
}

// ParseTopic parses a concrete topic: no wildcards allowed.
func ParseTopic(s string) (Pattern, error) {
	p, err := ParsePattern(s)
	if err != nil {
		return Pattern{}, err
	}
	if p.HasWildcard() {
		return Pattern{}, fmt.Errorf("%w: %q: wildcards are not allowed in a topic", ErrInvalid, s)
	}
	return p, nil
}

// ParsePattern parses a topic pattern.
func ParsePattern(s string) (Pattern, error) {
	if s == "" {
		return Pattern{}, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if len(s) > MaxLength {
		return Pattern{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxLength)
	}
	if !utf8.ValidString(s) {
		return Pattern{}, fmt.Errorf("%w: not valid UTF-8", ErrInvalid)
	}
	segs := strings.Split(s, ".")
	if len(segs) > MaxSegments {
		return Pattern{}, fmt.Errorf("%w: %q has more than %d segments", ErrInvalid, s, MaxSegments)
	}
	for i, seg := range segs {
		switch {
		case seg == "":
			return Pattern{}, fmt.Errorf("%w: %q has an empty segment", ErrInvalid, s)
		case seg == wildcardOne:
		case seg == wildcardRest:
			if i != len(segs)-1 {
				return Pattern{}, fmt.Errorf("%w: %q: '>' may only be the last segment", ErrInvalid, s)
			}
		default:
			if err := checkLiteral(seg); err != nil {
				return Pattern{}, fmt.Errorf("%w: %q: %v", ErrInvalid, s, err)
			}
		}
	}
	return Pattern{segs: segs}, nil
}

func checkLiteral(seg string) error {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c == '*' || c == '>':
			return fmt.Errorf("segment %q holds %q; percent-encode it", seg, c)
		case c < 0x20 || c == 0x7f || c == ' ':
			return fmt.Errorf("segment %q holds a space or control character", seg)
		case c == '%':
			if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
				return fmt.Errorf("segment %q has a bad percent escape", seg)
			}
			i += 2
		}
	}
	return nil
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// MustPattern parses s and panics on error. For constants in tests and mains only.
func MustPattern(s string) Pattern {
	p, err := ParsePattern(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pattern's canonical text.
func (p Pattern) String() string { return strings.Join(p.segs, ".") }

// IsZero reports whether p is the zero Pattern.
func (p Pattern) IsZero() bool { return len(p.segs) == 0 }

// Segments returns a copy of the segments.
func (p Pattern) Segments() []string { return append([]string(nil), p.segs...) }

// Last returns the last segment, decoded.
func (p Pattern) Last() string {
	if len(p.segs) == 0 {
		return ""
	}
	return DecodeSegment(p.segs[len(p.segs)-1])
}

// HasWildcard reports whether p holds '*' or '>'.
func (p Pattern) HasWildcard() bool {
	for _, s := range p.segs {
		if s == wildcardOne || s == wildcardRest {
			return true
		}
	}
	return false
}

// LiteralPrefix returns the segments before the first wildcard, joined by dots
// ("" when the pattern starts with a wildcard). Wildcard subscriptions are
// indexed by it, so an event on topic a.b.c only looks at the prefixes "",
// "a" and "a.b".
func (p Pattern) LiteralPrefix() string {
	for i, s := range p.segs {
		if s == wildcardOne || s == wildcardRest {
			return strings.Join(p.segs[:i], ".")
		}
	}
	return p.String()
}

// Prefixes returns the literal prefixes under which a wildcard pattern that
// matches this topic can be indexed: "", the first segment, the first two
// segments, ..., up to all but the last segment.
func (p Pattern) Prefixes() []string {
	out := make([]string, 0, len(p.segs))
	for i := 0; i < len(p.segs); i++ {
		out = append(out, strings.Join(p.segs[:i], "."))
	}
	return out
}

// Match reports whether the pattern p matches the concrete topic t.
func (p Pattern) Match(t Pattern) bool {
	for i, s := range p.segs {
		if s == wildcardRest {
			return len(t.segs) > i
		}
		if i >= len(t.segs) {
			return false
		}
		if s != wildcardOne && s != t.segs[i] {
			return false
		}
	}
	return len(p.segs) == len(t.segs)
}

// Covers reports whether every topic matched by req is also matched by the
// capability p, i.e. req is no wider than p.
func (p Pattern) Covers(req Pattern) bool {
	for i, c := range p.segs {
		if c == wildcardRest {
			return len(req.segs) > i
		}
		if i >= len(req.segs) {
			return false
		}
		r := req.segs[i]
		if r == wildcardRest {
			return false
		}
		if c == wildcardOne {
			continue
		}
		if r != c {
			return false
		}
	}
	return len(p.segs) == len(req.segs)
}

// Intersect returns the pattern matching exactly the topics both a and b
// match, and false when no topic matches both.
func Intersect(a, b Pattern) (Pattern, bool) {
	out := make([]string, 0, max(len(a.segs), len(b.segs)))
	for i := 0; ; i++ {
		aEnd, bEnd := i >= len(a.segs), i >= len(b.segs)
		if aEnd || bEnd {
			if aEnd && bEnd {
				return Pattern{segs: out}, true
			}
			return Pattern{}, false
		}
		x, y := a.segs[i], b.segs[i]
		switch {
		case x == wildcardRest && y == wildcardRest:
			return Pattern{segs: append(out, wildcardRest)}, true
		case x == wildcardRest:
			return Pattern{segs: append(out, b.segs[i:]...)}, true
		case y == wildcardRest:
			return Pattern{segs: append(out, a.segs[i:]...)}, true
		case x == wildcardOne:
			out = append(out, y)
		case y == wildcardOne || x == y:
			out = append(out, x)
		default:
			return Pattern{}, false
		}
	}
}

// Join builds a pattern from raw (unencoded) literal segments, encoding each.
func Join(segments ...string) (Pattern, error) {
	enc := make([]string, len(segments))
	for i, s := range segments {
		enc[i] = EncodeSegment(s)
	}
	return ParsePattern(strings.Join(enc, "."))
}

// Direct returns the direct topic of a principal: direct.<ptype>.<sub>,
// each encoded as one segment. A sub too long for that (past MaxLength
// once encoded: 180 dots fit in a 256-byte claim) is named by its SHA-256
// instead, direct.<ptype>.sha256.<base64url of the hash>: four segments,
// so it is never the three-segment direct topic of another sub.
func Direct(ptype, sub string) (Pattern, error) {
	d, err := Join("direct", ptype, sub)
	if err == nil || len(EncodeSegment(ptype))+len(EncodeSegment(sub))+len("direct..") <= MaxLength {
		return d, err
	}
	h := sha256.Sum256([]byte(sub))
	return Join("direct", ptype, "sha256", base64.RawURLEncoding.EncodeToString(h[:]))
}

// EncodeSegment percent-encodes the characters a literal segment may not
// hold as such: '.', '*', '>', '%', spaces and control characters.
func EncodeSegment(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || c == '*' || c == '>' || c == '%' || c <= ' ' || c == 0x7f {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// DecodeSegment reverses EncodeSegment; a malformed escape is kept as is.
func DecodeSegment(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

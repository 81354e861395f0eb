package topic

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParsePattern_RejectsMalformed(t *testing.T) {
	bad := []string{
		"", ".", "a.", ".a", "a..b", "a.>.b", "a.b*", "a.>x", "a b", "a.\tb",
		"a.%", "a.%2", "a.%zz", strings.Repeat("a.", MaxSegments) + "a",
		strings.Repeat("x", MaxLength+1), "a.\xff",
	}
	for _, s := range bad {
		_, err := ParsePattern(s)
		assert.ErrorIs(t, err, ErrInvalid, "%q", s)
	}
}

func TestParseTopic_RefusesWildcards(t *testing.T) {
	for _, s := range []string{"a.*", "a.>", "*", ">"} {
		_, err := ParseTopic(s)
		assert.ErrorIs(t, err, ErrInvalid, s)
	}
	p, err := ParseTopic("profiles.save.global")
	require.NoError(t, err)
	assert.Equal(t, "profiles.save.global", p.String())
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, topic string
		want           bool
	}{
		{"a.b.c", "a.b.c", true},
		{"a.b.c", "a.b", false},
		{"a.*.c", "a.b.c", true},
		{"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{">", "a", true},
		{"*.*.*", "profiles.save.global", true},
		{"*.*.*", "profiles.save", false},
		{"telemetry.*", "telemetry.1", true},
		{"machines.update.*", "machines.update.m1%2Eexample%2Ecom", true},
	}
	for _, c := range cases {
		p := MustPattern(c.pattern)
		tp, err := ParseTopic(c.topic)
		require.NoError(t, err)
		assert.Equal(t, c.want, p.Match(tp), "%s ~ %s", c.pattern, c.topic)
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		capability, req string
		want            bool
	}{
		{"a.>", "a.b", true},
		{"a.>", "a.*.c", true},
		{"a.>", "a.>", true},
		{"a.>", "a", false},
		{"a.>", ">", false},
		{"a.*", "a.b", true},
		{"a.*", "a.>", false},
		{"a.*", "a.*", true},
		{"a.b", "a.*", false},
		{">", "*.*.*", true},
		{"*.*", "a.b", true},
		{"profiles.>", "*.*.*", false},
	}
	for _, c := range cases {
		assert.Equal(t, c.want, MustPattern(c.capability).Covers(MustPattern(c.req)), "%s covers %s", c.capability, c.req)
	}
}

// The universe for brute-force checks: every topic of 1..4 segments over a
// three-letter alphabet.
func universe() []Pattern {
	var out []Pattern
	var build func(prefix []string)
	build = func(prefix []string) {
		if len(prefix) > 0 {
			out = append(out, MustPattern(strings.Join(prefix, ".")))
		}
		if len(prefix) == 4 {
			return
		}
		for _, s := range []string{"a", "b", "c"} {
			build(append(append([]string(nil), prefix...), s))
		}
	}
	build(nil)
	return out
}

func randomPattern(r *rand.Rand) Pattern {
	n := 1 + r.IntN(4)
	segs := make([]string, n)
	for i := range segs {
		switch r.IntN(5) {
		case 0:
			segs[i] = "*"
		case 1:
			if i == n-1 {
				segs[i] = ">"
				continue
			}
			segs[i] = "a"
		default:
			segs[i] = []string{"a", "b"}[r.IntN(2)]
		}
	}
	return MustPattern(strings.Join(segs, "."))
}

func TestCoversAndIntersect_AgreeWithMatchOverAUniverse(t *testing.T) {
	u := universe()
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		a, b := randomPattern(r), randomPattern(r)
		covers, both, any := true, false, false
		inter, ok := Intersect(a, b)
		for _, tp := range u {
			ma, mb := a.Match(tp), b.Match(tp)
			if mb && !ma {
				covers = false
			}
			if ma && mb {
				both = true
			}
			if ok && inter.Match(tp) != (ma && mb) {
				t.Fatalf("Intersect(%s, %s) = %s disagrees on %s", a, b, inter, tp)
			}
			any = any || mb
		}
		if any {
			// Topics deeper than the universe can separate patterns the
			// universe cannot, so only the implication covers => agrees is exact.
			if a.Covers(b) {
				assert.True(t, covers, "%s covers %s but a topic of %s escapes it", a, b, b)
			}
		}
		assert.Equal(t, both, ok, "Intersect(%s, %s) ok", a, b)
	}
}

func TestLiteralPrefixAndPrefixes(t *testing.T) {
	assert.Equal(t, "a.b", MustPattern("a.b.*").LiteralPrefix())
	assert.Equal(t, "", MustPattern("*.b").LiteralPrefix())
	assert.Equal(t, "a", MustPattern("a.>").LiteralPrefix())
	assert.Equal(t, []string{"", "a", "a.b"}, MustPattern("a.b.c").Prefixes())
	// Every wildcard pattern that matches a topic is indexed under one of the
	// topic's prefixes.
	for _, pat := range []string{"*.b.c", "a.*.c", "a.b.*", "a.>", ">", "a.b.>", "*.*.*"} {
		p := MustPattern(pat)
		require.True(t, p.Match(MustPattern("a.b.c")))
		assert.Contains(t, MustPattern("a.b.c").Prefixes(), p.LiteralPrefix(), pat)
	}
}

func TestEncodeSegment_RoundTrips(t *testing.T) {
	for _, s := range []string{"m1.example.com", "50%", "a*b>c", "plain", "sp ace", "ünï"} {
		enc := EncodeSegment(s)
		_, err := ParseTopic("x." + enc)
		require.NoError(t, err, enc)
		assert.Equal(t, s, DecodeSegment(enc))
	}
	p, err := Join("machines", "update", "m1.example.com")
	require.NoError(t, err)
	assert.Equal(t, "machines.update.m1%2Eexample%2Ecom", p.String())
	assert.Equal(t, "m1.example.com", p.Last())
}

func TestDirect(t *testing.T) {
	p, err := Direct("user", "u.1")
	require.NoError(t, err)
	assert.Equal(t, "direct.user.u%2E1", p.String())
}

// Issue 23: a sub whose direct topic encoded past 512 bytes had none, and
// with it no caps and no revocation. It is named by its hash instead, in a
// form no other sub's direct topic takes.
func TestDirect_ASubTooLongToEncodeIsNamedByItsHash(t *testing.T) {
	for _, sub := range []string{strings.Repeat(".", 180), strings.Repeat(" ", 200), strings.Repeat("%", 256)} {
		p, err := Direct("user", sub)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(p.String(), "direct.user.sha256."), p.String())
		assert.Len(t, p.Segments(), 4, "never the three segments of a sub's own direct topic")
		q, err := Direct("user", sub+".")
		require.NoError(t, err)
		assert.NotEqual(t, p, q, "another sub, another topic")
	}
	// The longest sub that still encodes is kept as it is.
	p, err := Direct("user", strings.Repeat(".", 166))
	require.NoError(t, err)
	assert.Len(t, p.Segments(), 3)
}

func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"a.b.c", "a.*.>", ">", "x.%2E", "a..b", "%", "*.*.*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		// A parsed pattern prints back to itself, re-parses, and covers itself.
		again, err := ParsePattern(p.String())
		if err != nil || again.String() != s {
			t.Fatalf("%q did not round-trip: %v", s, err)
		}
		if !p.Covers(p) {
			t.Fatalf("%q does not cover itself", s)
		}
		if inter, ok := Intersect(p, p); !ok || inter.String() != s {
			t.Fatalf("Intersect(%q, itself) = %q, %v", s, inter, ok)
		}
		if !p.HasWildcard() && !p.Match(p) {
			t.Fatalf("topic %q does not match itself", s)
		}
	})
}

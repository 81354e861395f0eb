package store

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCut_AboutAPagePerRange(t *testing.T) {
	for _, tc := range []struct{ top, split, page, want int }{
		{0, 2000, 1000, 0},  // one bucket: one range, inline
		{1, 2000, 1000, 1},  // 4,000 subscribers at most: two ranges
		{3, 2000, 1000, 3},  // k never above the top level
		{3, 500, 1000, 2},   // 4,000 in ranges of ~1,000
		{2, 100, 1000, 0},   // 400 fit one page
		{12, 2000, 1000, 6}, // at most 64 ranges
	} {
		assert.Equal(t, tc.want, Cut(tc.top, tc.split, tc.page), "%+v", tc)
	}
}

func TestRangeReads_ReadEachBucketOnceOverAllRanges(t *testing.T) {
	levels := []int{0, 1, 2, 3}
	const k = 2
	whole := map[string]int{}
	windows := map[string]int{}
	for r := range 1 << k {
		for _, rd := range rangeReads("a.b", levels, Range{K: k, R: r}) {
			if rd.lo == "" {
				whole[rd.pk]++
			} else {
				windows[rd.pk]++
				assert.Less(t, rd.lo, rd.hi)
			}
		}
	}
	// Levels 0..2 hold the range in one bucket, read in windows: level 0
	// by each of the 4 ranges, level 1's 2 buckets by 2 ranges each, level
	// 2's 4 buckets by one; level 3's 8 buckets are read whole, once.
	assert.Equal(t, map[string]int{"P#a.b": 4, "P#a.b 1 0": 2, "P#a.b 1 1": 2,
		"P#a.b 2 0": 1, "P#a.b 2 1": 1, "P#a.b 2 2": 1, "P#a.b 2 3": 1}, windows)
	assert.Len(t, whole, 8)
	for pk, n := range whole {
		assert.Equal(t, 1, n, pk)
	}
	assert.Equal(t, []bucketRead{{pk: "P#a.b"}}, rangeReads("a.b", []int{0}, Range{}), "one range reads the key whole")
}

func TestEntrySK_HashThenConnection(t *testing.T) {
	sk := entrySK("conn=1")
	conn, h, hashed := parseEntrySK(sk)
	assert.True(t, hashed)
	assert.Equal(t, "conn=1", conn)
	assert.Equal(t, Hash("conn=1"), h)
	conn, h, hashed = parseEntrySK("conn=1")
	assert.False(t, hashed, "an entry made before buckets")
	assert.Equal(t, "conn=1", conn)
	assert.Equal(t, Hash("conn=1"), h)
	pat, ok := patternOfPK("P#a.#x 3 5")
	assert.True(t, ok)
	assert.Equal(t, "a.#x", pat)
}

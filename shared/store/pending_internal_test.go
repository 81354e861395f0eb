package store

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPendingShard_SharesAddUpToTheCapAndIdsSpread(t *testing.T) {
	for _, limit := range []int{1, 5, 31, 32, 100, 1000, 1_000_000} {
		n := pendingShards(limit)
		hits := map[string]int{}
		sum := 0
		seen := map[string]bool{}
		for i := range 100 * n {
			id := fmt.Sprintf("conn-%d=", i)
			key, share := pendingShard(id, limit, 0)
			hits[key]++
			if !seen[key] {
				seen[key] = true
				sum += share
				assert.GreaterOrEqual(t, share, 1, "limit %d: shard %s holds a place", limit, key)
			}
			// The probes of one connection are distinct shards.
			probes := map[string]bool{}
			for p := range min(pendingProbes, n) {
				k, _ := pendingShard(id, limit, p)
				probes[k] = true
			}
			assert.Len(t, probes, min(pendingProbes, n))
		}
		assert.Len(t, hits, n, "limit %d: every shard is some connection's first", limit)
		assert.Equal(t, limit, sum, "limit %d: the shares add up to the cap exactly", limit)
		for k, h := range hits {
			assert.InDelta(t, 100, h, 40, "limit %d: shard %s gets its part of the connections", limit, k)
		}
	}
	assert.Equal(t, 32, pendingShards(1000), "the default cap spreads over 32 keys")
	assert.Equal(t, 1, pendingShards(31), "a small cap stays one exact count")
}

package store

import (
	"hash/fnv"
	"strconv"
)

// The cap on all connections waiting to authenticate (MaxPending) is one
// count every token-less connect takes a place in and every
// authentication or disconnect gives back: a transaction writing the
// counter and a slot, 2 items x 2 WCU, each way. One key would carry a
// reconnect storm (API Gateway admits 500 new connections a second per
// account) at 4,000 WCU/s, four times a partition's ceiling of 1,000
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html).
//
// So the cap is split into shards, N#pending#<i>, each a tally of its own
// holding its share of the places (the shares add up to MaxPending
// exactly, so the cap is never exceeded). A connection tries the shard
// its id hashes to, then the next ones, up to pendingProbes shards, and
// is refused only when all of those are full: overflow from a full shard
// lands in its neighbours, so the shards fill evenly and a refusal comes
// with nearly every place taken (docs/capacity.md has the
// measured slack). Its place is given back in the shard it took, which
// the connection record lists (held), so authentication and disconnect
// need no change.
const (
	// pendingShardsMax spreads a storm over 32 keys: 500 connects/s are
	// then ~16 connects/s, ~125 WCU/s, per key.
	pendingShardsMax = 32
	// pendingShardMin is the fewest places a shard holds: below it the
	// shards would fill unevenly and refuse early (a cap under 32 places
	// is one shard, exact, as before).
	pendingShardMin = 16
	// pendingProbes is how many shards a connect tries before it is
	// refused; it bounds what a refused connect costs (each try is a
	// cancelled transaction and a read of one shard's slots).
	pendingProbes = 4
)

// pendingShards is how many shards hold a cap of limit places.
func pendingShards(limit int) int {
	return min(pendingShardsMax, max(1, limit/pendingShardMin))
}

// pendingShard is the key and the share of the cap of the probe'th shard
// that connection id tries under a cap of limit places.
func pendingShard(id string, limit, probe int) (string, int) {
	n := pendingShards(limit)
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	i := (int(h.Sum32()%uint32(n)) + probe) % n
	share := limit / n
	if i < limit%n {
		share++
	}
	return prefixTally + tallyPending + "#" + strconv.Itoa(i), share
}

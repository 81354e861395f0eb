package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/topic"
)

// newLoadFixture is a fixture whose client counts its writes per key.
func newLoadFixture(t *testing.T) (*fixture, *storetest.KeyLoad) {
	load := storetest.NewKeyLoad()
	f := &fixture{db: storetest.Client(t, load.Option()), now: time.Unix(1_800_000_000, 0)}
	f.table = storetest.NewTable(t, f.db)
	f.s = store.New(f.db, f.table).WithClock(func() time.Time { return f.now })
	return f, load
}

// pendingKeys are the keys of the pending cap's counters among m's.
func pendingKeys(m map[string]int) map[string]int {
	out := map[string]int{}
	for k, n := range m {
		if strings.HasPrefix(k, "N#pending") {
			out[k] = n
		}
	}
	return out
}

// A reconnect storm of token-less connections used to write one counter
// key per connect and per authentication (4 write units each way): at
// API Gateway's 500 connects/s, four times a partition's ceiling.
func TestPendingCap_StormSpreadsOverShardsAndHoldsTheCap(t *testing.T) {
	f, load := newLoadFixture(t)
	ctx := context.Background()
	// 128 places make 8 shards (a deployment's default of 1,000 makes 32).
	const capAll, conns = 128, 140
	var all []store.Connection
	for i := range conns {
		// No per-address cap: only the total cap bites.
		all = append(all, f.pending(fmt.Sprintf("s%03d", i), "", 0, capAll))
	}
	var admitted []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan store.Connection)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range work {
				err := f.s.PutConnection(ctx, c, nil)
				mu.Lock()
				if err == nil {
					admitted = append(admitted, c.ID)
				} else {
					assert.ErrorIs(t, err, store.ErrPendingLimit, c.ID)
				}
				mu.Unlock()
			}
		}()
	}
	for _, c := range all {
		work <- c
	}
	close(work)
	wg.Wait()

	assert.LessOrEqual(t, len(admitted), capAll, "the cap is never exceeded")
	// The shards fill evenly: nearly every place is taken before a refusal.
	assert.GreaterOrEqual(t, len(admitted), capAll*95/100, "a refusal comes with nearly every place taken")
	t.Logf("admitted %d of %d connects under a cap of %d", len(admitted), conns, capAll)

	keys := pendingKeys(load.Writes())
	total, hottest := 0, 0
	for _, n := range keys {
		total += n
		hottest = max(hottest, n)
	}
	assert.Len(t, keys, 8, "the storm's writes are spread over every shard")
	assert.LessOrEqual(t, hottest*5, total, "no key takes more than a fifth of the storm's writes")
	t.Logf("pending-cap write units: %d over %d keys, hottest %d", total, len(keys), hottest)

	// Every place is given back, in the shard it was taken in.
	const freed = 40
	for _, id := range admitted[:freed/2] {
		require.NoError(t, f.s.Authenticate(ctx, f.conn(id, "u-"+id), nil))
	}
	for _, id := range admitted[freed/2 : freed] {
		_, err := f.s.DeleteConnection(ctx, id)
		require.NoError(t, err)
	}
	var again []store.Connection
	for i := range freed + 10 {
		again = append(again, f.pending(fmt.Sprintf("r%03d", i), "", 0, capAll))
	}
	readmitted, _ := f.putAll(t, again, store.ErrPendingLimit)
	assert.LessOrEqual(t, len(admitted)-freed+len(readmitted), capAll, "the cap still holds")
	assert.GreaterOrEqual(t, len(readmitted), freed*9/10, "the places came back")
	t.Logf("readmitted %d after %d places were given back", len(readmitted), freed)
}

// The places of connections that never authenticate nor disconnect come
// back once their deadline passes, shard by shard.
func TestPendingCap_ShardsReclaimExpiredPlaces(t *testing.T) {
	f := newFixture(t)
	const capAll = 32 // two shards
	var first []store.Connection
	for i := range capAll + 8 {
		first = append(first, f.pending(fmt.Sprintf("a%03d", i), "", 0, capAll))
	}
	admitted, _ := f.putAll(t, first, store.ErrPendingLimit)
	require.Len(t, admitted, capAll, "two shards, both tried: exact")

	f.now = f.now.Add(6 * time.Second) // past every deadline
	var second []store.Connection
	for i := range capAll {
		second = append(second, f.pending(fmt.Sprintf("b%03d", i), "", 0, capAll))
	}
	readmitted, _ := f.putAll(t, second, store.ErrPendingLimit)
	assert.Len(t, readmitted, capAll)
}

// A popular wildcard pattern used to be written by every subscribe to it
// (2 write units each on W#<prefix>); it is now read and written only
// when missing or near its TTL.
func TestWildcardIndex_WrittenOnceForManySubscribes(t *testing.T) {
	f, load := newLoadFixture(t)
	ctx := context.Background()
	p := topic.MustPattern("orders.*")
	const n = 20
	for i := range n {
		c := f.conn(fmt.Sprintf("c%02d", i), fmt.Sprintf("u%02d", i))
		require.NoError(t, f.s.PutConnection(ctx, c, nil))
		_, err := f.s.Subscribe(ctx, c, store.NewSubscription{Pattern: p})
		require.NoError(t, err)
	}
	assert.Equal(t, 1, load.Writes()["W#orders"], "one write of the index entry for %d subscribes", n)
	assert.Equal(t, n+1, load.Reads()["W#orders"], "one read each, and the container's first subscribe reads the pattern's layout before placing its entry")
	refs, err := f.s.SubscriberPatterns(ctx, topic.MustPattern("orders.42"), store.Layout{})
	require.NoError(t, err)
	assert.Equal(t, []string{"orders.*", "orders.42"}, patternsOf(refs))

	// The same at connect, with the token's own subscriptions.
	c := f.conn("t1", "ut")
	require.NoError(t, f.s.PutConnection(ctx, c, []store.NewSubscription{{Pattern: p}}))
	assert.Equal(t, 1, load.Writes()["W#orders"])

	// Near its TTL the next subscribe writes it again, so it outlives the
	// subscription.
	f.now = f.now.Add(23 * time.Hour)
	late := f.conn("late", "ul")
	late.ExpiresAt = f.now.Add(2 * time.Hour)
	require.NoError(t, f.s.PutConnection(ctx, late, nil))
	_, err = f.s.Subscribe(ctx, late, store.NewSubscription{Pattern: p})
	require.NoError(t, err)
	assert.Equal(t, 2, load.Writes()["W#orders"])
}

// Fan-out removes an index entry whose subscribers are all gone, with the
// reference it read before; a subscriber arriving at that moment must
// keep it, though its subscribe no longer rewrites a fresh entry.
func TestWildcardIndex_ForgetRacingASubscribeKeepsTheEntry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := topic.MustPattern("dev.*.temp")
	matching := topic.MustPattern("dev.7.temp")
	// ghost's subscription has expired (its $disconnect never came): the
	// entry stays listed, with no live subscriber behind it.
	ghost := f.conn("ghost", "ug")
	ghost.ExpiresAt = f.now.Add(-time.Minute)
	require.NoError(t, f.s.PutConnection(ctx, ghost, nil))
	for round := range 30 {
		_, err := f.s.Subscribe(ctx, ghost, store.NewSubscription{Pattern: p})
		require.NoError(t, err)
		refs, err := f.s.SubscriberPatterns(ctx, matching, store.Layout{})
		require.NoError(t, err)
		require.Len(t, refs, 2)
		joining := f.conn(fmt.Sprintf("j%02d", round), "u1")
		require.NoError(t, f.s.PutConnection(ctx, joining, nil))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
			_, err := f.s.Subscribe(ctx, joining, store.NewSubscription{Pattern: p})
			assert.NoError(t, err)
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
			assert.NoError(t, f.s.ForgetPattern(ctx, refs[1]))
		}()
		wg.Wait()
		refs, err = f.s.SubscriberPatterns(ctx, matching, store.Layout{})
		require.NoError(t, err)
		require.Equal(t, []string{"dev.*.temp", "dev.7.temp"}, patternsOf(refs), "round %d: %s's subscription is not found", round, joining.ID)
		_, err = f.s.DeleteConnection(ctx, joining.ID)
		require.NoError(t, err)
	}
}

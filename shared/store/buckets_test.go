package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/topic"
)

// bucketed sets the fixture's store to split buckets past splitAt
// subscriptions, counting every subscribe (sample always).
func (f *fixture) bucketed(splitAt int) *fixture {
	f.s.Bucketing = store.Bucketing{SplitAt: splitAt, Sample: func(int) bool { return true }}
	return f
}

// other is a second container's store on the fixture's table: its own
// cache of layouts.
func (f *fixture) other() *store.Store {
	s := store.New(f.db, f.table).WithClock(func() time.Time { return f.now })
	s.Bucketing = f.s.Bucketing
	return s
}

// entries are the subscriber entries of pattern (every level) in the
// table, by partition key, as sort keys. Tests may scan; the store never
// does.
func (f *fixture) entries(t *testing.T, pattern string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	in := &dynamodb.ScanInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true)}
	for {
		page, err := f.db.Scan(context.Background(), in)
		require.NoError(t, err)
		for _, it := range page.Items {
			pk := it["pk"].(*types.AttributeValueMemberS).Value
			if pk == "P#"+pattern || strings.HasPrefix(pk, "P#"+pattern+" ") {
				out[pk] = append(out[pk], it["sk"].(*types.AttributeValueMemberS).Value)
			}
		}
		if page.LastEvaluatedKey == nil {
			return out
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// subscribe connects id and subscribes it to patterns.
func (f *fixture) subscribe(t *testing.T, s *store.Store, id string, patterns ...string) store.Connection {
	t.Helper()
	c := f.conn(id, "u-"+id)
	c.Limits.MaxSubscriptions = 10
	require.NoError(t, s.PutConnection(context.Background(), c, nil))
	for _, p := range patterns {
		_, err := s.Subscribe(context.Background(), c, sub(p))
		require.NoError(t, err)
	}
	return c
}

// audience reads every subscriber of an event on t numbered now, range by
// range as fan-out cuts it (page subscribers a range), and returns each
// connection's count of entries found.
func audience(ctx context.Context, t *testing.T, s *store.Store, eventID, tp string, page int) (found map[string]int, k int) {
	t.Helper()
	ev, err := publish.Parse(eventID, time.Now(), []byte(`{"topic":"`+tp+`","payload":1}`), false)
	require.NoError(t, err)
	rec, err := s.BeginEvent(ctx, ev, "me", time.Minute, time.Hour)
	require.NoError(t, err)
	require.NotNil(t, rec.Layout)
	refs, err := s.SubscriberPatterns(ctx, ev.Topic, *rec.Layout)
	require.NoError(t, err)
	top := 0
	for _, r := range refs {
		top = max(top, store.Layout{Levels: r.Levels}.Top())
	}
	k = store.Cut(top, s.Bucketing.SplitAt, page)
	found = map[string]int{}
	for r := range 1 << k {
		for _, ref := range refs {
			subs, err := s.RangeSubscribers(ctx, ref.Pattern, ref.Levels, store.Range{K: k, R: r}, 0)
			require.NoError(t, err)
			for _, sub := range subs {
				found[sub.ConnectionID]++
			}
		}
	}
	return found, k
}

// A pattern's audience spreads over buckets as it grows: with a split at
// 50, 5,000 subscribers make the levels grow, no key holds more than
// twice the split, an event's ranges find every subscriber exactly once,
// and each range reads only its own keys.
func TestBuckets_LargeAudienceSpreadsAndEachRangeReadsOnlyItsKeys(t *testing.T) {
	const n, splitAt, page = 5000, 50, 100
	f := newFixture(t)
	// The sampling is injected: seeded, so the run is repeatable (S is 1
	// at this split: every subscribe counts).
	rng := rand.New(rand.NewPCG(24, 24))
	var mu sync.Mutex
	f.s.Bucketing = store.Bucketing{SplitAt: splitAt, Sample: func(n int) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(n) == 0
	}}
	ctx := context.Background()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range work {
				c := f.conn(fmt.Sprintf("c%05d", i), fmt.Sprintf("u%05d", i))
				assert.NoError(t, f.s.PutConnection(ctx, c, []store.NewSubscription{sub("big.topic")}))
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()

	keys := f.entries(t, "big.topic")
	total, largest := 0, 0
	for pk, sks := range keys {
		total += len(sks)
		largest = max(largest, len(sks))
		assert.LessOrEqual(t, len(sks), 2*splitAt, "%s holds %d entries", pk, len(sks))
	}
	assert.Equal(t, n, total, "one entry each")
	assert.Greater(t, len(keys), n/(2*splitAt), "spread over many keys")
	t.Logf("%d entries over %d keys, the largest %d", total, len(keys), largest)

	// Each range, read through a client that records the keys it reads.
	ev, err := publish.Parse("e1", time.Now(), []byte(`{"topic":"big.topic","payload":1}`), false)
	require.NoError(t, err)
	rec, err := f.s.BeginEvent(ctx, ev, "me", time.Minute, time.Hour)
	require.NoError(t, err)
	refs, err := f.s.SubscriberPatterns(ctx, ev.Topic, *rec.Layout)
	require.NoError(t, err)
	require.Len(t, refs, 1)
	levels := refs[0].Levels
	require.Greater(t, len(levels), 3, "the levels grew: %v", levels)
	k := store.Cut(store.Layout{Levels: levels}.Top(), splitAt, page)
	require.Positive(t, k)
	seen := map[string]int{}
	for r := range 1 << k {
		load := storetest.NewKeyLoad()
		s := store.New(storetest.Client(t, load.Option()), f.table).WithClock(func() time.Time { return f.now })
		subs, err := s.RangeSubscribers(ctx, "big.topic", levels, store.Range{K: k, R: r}, 0)
		require.NoError(t, err)
		for _, sub := range subs {
			seen[sub.ConnectionID]++
			assert.Equal(t, uint64(r), sub.Hash>>(64-k), "%s is in range %d", sub.ConnectionID, r)
		}
		want := map[string]bool{}
		for _, l := range levels {
			if l <= k {
				want[bucketKey("big.topic", l, r>>(k-l))] = true
				continue
			}
			for b := r << (l - k); b < (r+1)<<(l-k); b++ {
				want[bucketKey("big.topic", l, b)] = true
			}
		}
		for pk := range load.Reads() {
			assert.True(t, want[pk], "range %d of %d read %s, not one of its keys", r, 1<<k, pk)
		}
	}
	assert.Len(t, seen, n, "every subscriber found")
	for id, times := range seen {
		require.Equal(t, 1, times, "%s found once", id)
	}
}

func bucketKey(pattern string, l, b int) string {
	if l == 0 {
		return "P#" + pattern
	}
	return fmt.Sprintf("P#%s %d %d", pattern, l, b)
}

// A subscriber made before an event is numbered is found whatever level
// it is on: level 0 from before the level grew, a stale level
// from a container whose cached layout is behind, and the current level.
func TestBuckets_SubscriberOnAStaleLevelIsFound(t *testing.T) {
	f := newFixture(t).bucketed(2)
	ctx := context.Background()
	stale := f.other()
	var ids []string
	add := func(s *store.Store, id string) {
		f.subscribe(t, s, id, "room.1")
		ids = append(ids, id)
	}
	for i := range 4 {
		add(f.s, fmt.Sprintf("a%d", i)) // the third raises the level to 1
	}
	_, err := stale.CurrentSeq(ctx, topic.MustPattern("room.1"))
	require.NoError(t, err)
	for i := range 12 {
		add(f.s, fmt.Sprintf("b%02d", i)) // the levels grow on
	}
	add(stale, "stale")    // on level 1, though the topic is past it
	add(f.other(), "cold") // reads the layout first: the current level
	levels := map[string]int{}
	for pk, sks := range f.entries(t, "room.1") {
		for _, sk := range sks {
			levels[sk[17:]] = strings.Count(pk, " ")
		}
	}
	require.Equal(t, 0, levels["a0"], "a0 is on level 0")
	require.Equal(t, 2, levels["cold"], "cold is on a level above 0")
	require.Equal(t, 2, strings.Count(bucketKeyOf(t, f, "stale"), " "), "stale is on level 1")
	found, k := audience(ctx, t, f.s, "e1", "room.1", 2)
	require.Positive(t, k, "several ranges")
	for _, id := range ids {
		assert.Equal(t, 1, found[id], "%s found once", id)
	}
	assert.Len(t, found, len(ids))
}

// bucketKeyOf is the partition key of id's entry of room.1.
func bucketKeyOf(t *testing.T, f *fixture, id string) string {
	t.Helper()
	for pk, sks := range f.entries(t, "room.1") {
		if slices.Contains(sks, store.EntrySK(id)) {
			return pk
		}
	}
	t.Fatalf("no entry of %s", id)
	return ""
}

// Subscribing again (new filters) keeps the one entry where it is, after
// the level moved on; an entry made before buckets moves to the new
// layout, still one.
func TestBuckets_ResubscribeKeepsOneEntry(t *testing.T) {
	f := newFixture(t).bucketed(1)
	ctx := context.Background()
	c := f.subscribe(t, f.s, "c1", "room.1")
	first := bucketKeyOf(t, f, "c1")
	for i := range 6 {
		f.subscribe(t, f.s, fmt.Sprintf("o%d", i), "room.1")
	}
	narrow := filter.Set{"k": {"v"}}
	created, err := f.s.Subscribe(ctx, c, store.NewSubscription{Pattern: topic.MustPattern("room.1"), Filters: narrow})
	require.NoError(t, err)
	assert.False(t, created)
	assert.Equal(t, first, bucketKeyOf(t, f, "c1"), "the entry stayed where it was")
	n := 0
	for _, sks := range f.entries(t, "room.1") {
		for _, sk := range sks {
			if strings.HasSuffix(sk, "#c1") {
				n++
			}
		}
	}
	assert.Equal(t, 1, n, "one entry")
	found, _ := audience(ctx, t, f.s, "e1", "room.1", 1)
	assert.Equal(t, 1, found["c1"])

	// An entry of the one-key layout (sk = the connection id, a reverse
	// entry that names no key).
	old := f.conn("old", "u-old")
	require.NoError(t, f.s.PutConnection(ctx, old, nil))
	f.putOneKeyEntry(t, "old", "room.1")
	_, err = f.s.Subscribe(ctx, old, store.NewSubscription{Pattern: topic.MustPattern("room.1"), Filters: narrow})
	require.NoError(t, err)
	keys := f.entries(t, "room.1")
	assert.NotContains(t, keys["P#room.1"], "old", "the old entry moved")
	assert.Contains(t, bucketKeyOf(t, f, "old"), " ", "to the current level")
	subs, err := f.s.ConnectionSubscriptions(ctx, "old")
	require.NoError(t, err)
	require.Len(t, subs, 1)
	assert.Equal(t, narrow, subs[0].Filters)
}

// putOneKeyEntry writes a subscription as the one-key layout did: P#<p> /
// <conn> and a reverse entry without the entry's key.
func (f *fixture) putOneKeyEntry(t *testing.T, conn, pattern string) {
	t.Helper()
	ttl := &types.AttributeValueMemberN{Value: fmt.Sprint(f.now.Add(time.Hour).Unix())}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	for _, it := range []map[string]types.AttributeValue{
		{"pk": s("C#" + conn), "sk": s("S#" + pattern), "ttl": ttl},
		{"pk": s("P#" + pattern), "sk": s(conn), "ttl": ttl, "who": s(`{"sub":"u-` + conn + `","type":"user"}`), "env": &types.AttributeValueMemberBOOL{}},
	} {
		_, err := f.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: it})
		require.NoError(t, err)
	}
	_, err := f.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(f.table), Key: map[string]types.AttributeValue{"pk": s("C#" + conn), "sk": s("#META")},
		UpdateExpression: aws.String("SET ns = ns + :one"), ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}},
	})
	require.NoError(t, err)
}

// Unsubscribe and disconnect remove exactly the entry the subscription
// made, on whatever level, and an old entry of the one-key layout too.
func TestBuckets_UnsubscribeAndDisconnectRemoveTheExactItem(t *testing.T) {
	f := newFixture(t).bucketed(1)
	ctx := context.Background()
	for i := range 6 {
		f.subscribe(t, f.s, fmt.Sprintf("o%d", i), "room.1", "room.*")
	}
	leaver := f.subscribe(t, f.s, "leaver", "room.1", "room.*")
	gone := f.subscribe(t, f.s, "gone", "room.1", "room.*")
	require.NotEqual(t, "P#room.1", bucketKeyOf(t, f, "leaver"), "on a level above 0")
	old := f.conn("old", "u-old")
	require.NoError(t, f.s.PutConnection(ctx, old, nil))
	f.putOneKeyEntry(t, "old", "room.1")

	has := func(id string) bool {
		for _, p := range []string{"room.1", "room.*"} {
			for _, sks := range f.entries(t, p) {
				if slices.Contains(sks, store.EntrySK(id)) || slices.Contains(sks, id) {
					return true
				}
			}
		}
		return false
	}
	for _, p := range []string{"room.1", "room.*"} {
		removed, err := f.s.Unsubscribe(ctx, leaver.ID, topic.MustPattern(p))
		require.NoError(t, err)
		assert.True(t, removed)
	}
	assert.False(t, has("leaver"))
	_, err := f.s.DeleteConnection(ctx, gone.ID)
	require.NoError(t, err)
	assert.False(t, has("gone"))
	removed, err := f.s.Unsubscribe(ctx, old.ID, topic.MustPattern("room.1"))
	require.NoError(t, err)
	assert.True(t, removed)
	assert.False(t, has("old"))
	assert.True(t, has("o0"), "the others stay")
}

// A wildcard index entry removed when its last subscriber left and
// written again by a subscriber on level 0 lists no level; a subscriber
// of another container, whose cached layout says level 1, writes its
// entry there: its subscribe must put level 1 back into the entry, or
// events would not read it.
func TestBuckets_ForgottenWildcardEntryRecreatedKeepsEveryLiveLevel(t *testing.T) {
	f := newFixture(t).bucketed(1)
	ctx := context.Background()
	var first []store.Connection
	for i := range 3 {
		first = append(first, f.subscribe(t, f.s, fmt.Sprintf("f%d", i), "room.*"))
	}
	// f.s has read the entry's layout (cur 1 or more) when it raised it.
	for _, c := range first {
		_, err := f.s.DeleteConnection(ctx, c.ID)
		require.NoError(t, err)
	}
	refs, err := f.s.SubscriberPatterns(ctx, topic.MustPattern("room.9"), store.Layout{})
	require.NoError(t, err)
	require.Len(t, refs, 1, "the last subscriber's leaving removed the index entry")

	// No more growth: the levels are what the subscribes write.
	f.s.Bucketing.SplitAt = 1000
	f.subscribe(t, f.other(), "zero", "room.*") // recreates it, level 0
	f.subscribe(t, f.s, "late", "room.*")       // a cached level above 0
	key := ""
	for pk, sks := range f.entries(t, "room.*") {
		if slices.Contains(sks, store.EntrySK("late")) {
			key = pk
		}
	}
	require.Contains(t, key, " ", "late is on a level above 0")
	found, _ := audience(ctx, t, f.s, "e1", "room.9", 1)
	assert.Equal(t, map[string]int{"zero": 1, "late": 1}, found)
}

// A topic's #SEQ item expires 30 days after its last event, and with it
// its layout: a subscriber that finds it near expiry writes on level 0,
// which a new item still lists.
func TestBuckets_TopicNearItsTTLTakesLevelZero(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	layout := func(ttl time.Time) {
		_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "T#room.1"}, "sk": &types.AttributeValueMemberS{Value: "#SEQ"},
			"seq": &types.AttributeValueMemberN{Value: "7"}, "cur": &types.AttributeValueMemberN{Value: "1"},
			"lv": &types.AttributeValueMemberNS{Value: []string{"1"}}, "ttl": &types.AttributeValueMemberN{Value: fmt.Sprint(ttl.Unix())},
		}})
		require.NoError(t, err)
	}
	layout(f.now.Add(time.Hour))
	s := f.other()
	_, err := s.CurrentSeq(ctx, topic.MustPattern("room.1"))
	require.NoError(t, err)
	f.subscribe(t, s, "near", "room.1")
	assert.Equal(t, "P#room.1", bucketKeyOf(t, f, "near"), "near its TTL: level 0")

	layout(f.now.Add(20 * 24 * time.Hour))
	s = f.other()
	_, err = s.CurrentSeq(ctx, topic.MustPattern("room.1"))
	require.NoError(t, err)
	f.subscribe(t, s, "far", "room.1")
	assert.Contains(t, bucketKeyOf(t, f, "far"), "P#room.1 1 ", "far from it: the current level")
}

// A one-bucket audience costs the requests it did before buckets, but for
// a subscribe's subscriber entry, which is its own put (1 WCU on the
// bucket's key, not 2 in the transaction) with a read-back of the reverse
// entry: a subscribe is one transaction, a put and a GetItem (a wildcard
// one also reads its index entry), one in S also writes its bucket's
// count; an event is numbered
// in three requests, reads the wildcard index once per prefix and each
// matching pattern's key once.
func TestBuckets_OneBucketCostsTheSameRequests(t *testing.T) {
	f := newFixture(t)
	sampled := false
	f.s.Bucketing = store.Bucketing{SplitAt: 2000, Sample: func(n int) bool { return sampled && n == 50 }}
	ctx := context.Background()
	measure := func(do func(ctx context.Context)) map[string]int {
		m := &store.Meter{}
		do(store.WithMeter(ctx, m))
		return m.Calls
	}
	f.subscribe(t, f.s, "warm", "room.*", "room.1") // the index entry exists; both layouts are cached
	for i, tc := range []struct {
		pattern string
		sampled bool
		want    map[string]int
	}{
		{"room.1", false, map[string]int{"TransactWriteItems": 1, "PutItem": 1, "GetItem": 1}},
		{"room.*", false, map[string]int{"TransactWriteItems": 1, "PutItem": 1, "GetItem": 2}},
		{"room.1", true, map[string]int{"TransactWriteItems": 1, "PutItem": 1, "GetItem": 1, "UpdateItem": 1}},
		{"room.*", true, map[string]int{"TransactWriteItems": 1, "PutItem": 1, "GetItem": 2, "UpdateItem": 1}},
	} {
		// No principal's tally of wildcard patterns (unchanged by buckets).
		c := f.conn(fmt.Sprintf("c%d", i), "")
		c.Limits.MaxSubscriptions = 10
		require.NoError(t, f.s.PutConnection(ctx, c, nil))
		sampled = tc.sampled
		got := measure(func(ctx context.Context) {
			_, err := f.s.Subscribe(ctx, c, sub(tc.pattern))
			require.NoError(t, err)
		})
		assert.Equal(t, tc.want, got, "subscribe to %s, sampled %v", tc.pattern, tc.sampled)
	}

	// A container with no layout cached reads it once, then not again
	// while it is cached.
	cold := f.other()
	cold.Bucketing.Sample = func(int) bool { return false }
	for i, want := range []map[string]int{{"TransactWriteItems": 1, "PutItem": 1, "GetItem": 2}, {"TransactWriteItems": 1, "PutItem": 1, "GetItem": 1}} {
		c := f.conn(fmt.Sprintf("cold%d", i), "")
		c.Limits.MaxSubscriptions = 10
		require.NoError(t, cold.PutConnection(ctx, c, nil))
		got := measure(func(ctx context.Context) {
			_, err := cold.Subscribe(ctx, c, sub("room.1"))
			require.NoError(t, err)
		})
		assert.Equal(t, want, got, "cold container's subscribe %d", i)
	}

	got := measure(func(ctx context.Context) {
		found, k := audience(ctx, t, f.s, "e1", "room.1", 1000)
		assert.Zero(t, k, "one range")
		assert.Len(t, found, 7)
	})
	// room.1 has the prefixes "" and "room": two index reads; room.1 and
	// room.* one read each.
	assert.Equal(t, map[string]int{"PutItem": 1, "UpdateItem": 1, "TransactWriteItems": 1, "Query": 4}, got)
}

// A presence listing pages through a topic's subscribers on every level,
// each once, a bounded number of keys a page.
func TestBuckets_TopicSubscribersPagesThroughEveryLevel(t *testing.T) {
	f := newFixture(t).bucketed(2)
	ctx := context.Background()
	want := map[string]int{}
	for i := range 20 {
		id := fmt.Sprintf("c%02d", i)
		f.subscribe(t, f.s, id, "room.1")
		want[id] = 1
	}
	require.Greater(t, len(f.entries(t, "room.1")), 4, "over several keys")
	got := map[string]int{}
	var cursor store.Cursor
	for pages := 0; ; pages++ {
		require.Less(t, pages, 50)
		subs, next, err := f.other().TopicSubscribers(ctx, topic.MustPattern("room.1"), cursor, 3)
		require.NoError(t, err)
		assert.LessOrEqual(t, len(subs), 3)
		for _, s := range subs {
			got[s.ConnectionID]++
		}
		if next == "" {
			break
		}
		cursor = next
	}
	assert.Equal(t, want, got)
}

// An entry made before buckets (sk = the connection id) is found while its
// topic is read as one range.
func TestBuckets_OneKeyEntryIsFoundReadWhole(t *testing.T) {
	f := newFixture(t)
	f.subscribe(t, f.s, "new", "room.1")
	old := f.conn("old", "u-old")
	require.NoError(t, f.s.PutConnection(context.Background(), old, nil))
	f.putOneKeyEntry(t, "old", "room.1")
	found, k := audience(context.Background(), t, f.s, "e1", "room.1", 1000)
	require.Zero(t, k)
	assert.Equal(t, map[string]int{"new": 1, "old": 1}, found)
}

// A container that has read no layout of the pattern (a new instance, or
// one that subscribes less often than it caches) reads it before placing
// an entry: were it to write on level 0, level 0 would take every such
// container's subscribes, and every range of every event reads level 0.
func TestBuckets_AContainerWithNothingCachedReadsTheLevelFirst(t *testing.T) {
	f := newFixture(t).bucketed(2)
	ctx := context.Background()
	for i := range 24 {
		f.subscribe(t, f.s, fmt.Sprintf("c%02d", i), "room.1", "room.*")
	}
	for _, p := range []string{"room.1", "room.*"} {
		l, err := f.s.PatternLayout(ctx, topic.MustPattern(p))
		require.NoError(t, err)
		require.Greater(t, l.Cur, 1, "%s grew", p)
	}
	f.subscribe(t, f.other(), "fresh", "room.1")
	assert.NotEqual(t, "P#room.1", bucketKeyOf(t, f, "fresh"), "a fresh container's subscribe to a topic is not on level 0")
	f.subscribe(t, f.other(), "fresh2", "room.*")
	for pk, sks := range f.entries(t, "room.*") {
		if slices.Contains(sks, store.EntrySK("fresh2")) {
			assert.NotEqual(t, "P#room.*", pk, "a fresh container's subscribe to a wildcard is not on level 0")
		}
	}
}

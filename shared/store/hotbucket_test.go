package store_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// hotKeys is DynamoDB Local with some partitions over their throughput:
// a transaction writing an item hot picks is answered as DynamoDB answers
// it (TransactionCanceledException, ThrottlingError with DynamoDB's
// message on each such item, None without one on the others), and so is
// a PutItem of such an item (ProvisionedThroughputExceededException), the
// first left such requests, every one when left is negative. Everything
// else goes to DynamoDB Local.
type hotKeys struct {
	store.DB
	hot func(types.TransactWriteItem) bool

	mu        sync.Mutex
	left      int
	throttled int
}

// throttledItemMessage is DynamoDB's CancellationReason Message for
// ThrottlingError (as localstack's ddbproxy answers it).
const throttledItemMessage = "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly."

func (h *hotKeys) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	reasons := make([]types.CancellationReason, len(in.TransactItems))
	codes := make([]string, len(in.TransactItems))
	hit := false
	for i, it := range in.TransactItems {
		reasons[i], codes[i] = types.CancellationReason{Code: aws.String("None")}, "None"
		if h.hot(it) {
			hit = true
			reasons[i] = types.CancellationReason{Code: aws.String("ThrottlingError"), Message: aws.String(throttledItemMessage)}
			codes[i] = "ThrottlingError"
		}
	}
	if !hit || !h.take() {
		return h.DB.TransactWriteItems(ctx, in, optFns...)
	}
	return nil, &types.TransactionCanceledException{
		Message:             aws.String("Transaction cancelled, please refer cancellation reasons for specific reasons [" + strings.Join(codes, ", ") + "]"),
		CancellationReasons: reasons,
	}
}

func (h *hotKeys) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if !h.hot(types.TransactWriteItem{Put: &types.Put{Item: in.Item}}) || !h.take() {
		return h.DB.PutItem(ctx, in, optFns...)
	}
	return nil, &types.ProvisionedThroughputExceededException{Message: aws.String("Throughput exceeds the current capacity for one or more partition key values. Consider spreading your requests over more keys.")}
}

// take uses up one of the throttles left.
func (h *hotKeys) take() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.left == 0 {
		return false
	}
	h.left--
	h.throttled++
	return true
}

func (h *hotKeys) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.throttled
}

// itemPK is the partition key a transaction item writes or checks.
func itemPK(it types.TransactWriteItem) string {
	var k map[string]types.AttributeValue
	switch {
	case it.Put != nil:
		k = it.Put.Item
	case it.Update != nil:
		k = it.Update.Key
	case it.Delete != nil:
		k = it.Delete.Key
	case it.ConditionCheck != nil:
		k = it.ConditionCheck.Key
	}
	v, _ := k["pk"].(*types.AttributeValueMemberS)
	if v == nil {
		return ""
	}
	return v.Value
}

// onKeys picks the items on any of pks.
func onKeys(pks ...string) func(types.TransactWriteItem) bool {
	return func(it types.TransactWriteItem) bool {
		for _, pk := range pks {
			if itemPK(it) == pk {
				return true
			}
		}
		return false
	}
}

// heldCheck picks a subscribe's check of its wildcard hold (on the
// principal's tally partition, N#...).
func heldCheck(it types.TransactWriteItem) bool {
	return it.ConditionCheck != nil && strings.HasPrefix(itemPK(it), "N#")
}

// hotStore is another container on the fixture's table whose client finds
// the items hot picks over their partition's throughput (the first left
// transactions that write one; every one when left is negative). No store
// of the fixture samples a count: only throttles raise a level.
func (f *fixture) hotStore(hot func(types.TransactWriteItem) bool, left int) (*store.Store, *hotKeys) {
	f.s.Bucketing = store.Bucketing{SplitAt: 2000, Sample: func(int) bool { return false }}
	h := &hotKeys{DB: f.db, hot: hot, left: left}
	s := store.New(h, f.table).WithClock(func() time.Time { return f.now })
	s.Bucketing = f.s.Bucketing
	return s, h
}

// entryKeyOf is the partition key of id's subscriber entry of pattern.
func entryKeyOf(t *testing.T, f *fixture, pattern, id string) string {
	t.Helper()
	for pk, sks := range f.entries(t, pattern) {
		for _, sk := range sks {
			if sk == store.EntrySK(id) {
				return pk
			}
		}
	}
	t.Fatalf("no entry of %s for %s", id, pattern)
	return ""
}

// reverseFPK is the subscriber entry's key id's reverse entry names.
func reverseFPK(t *testing.T, f *fixture, pattern, id string) string {
	t.Helper()
	out, err := f.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(f.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "C#" + id}, "sk": &types.AttributeValueMemberS{Value: "S#" + pattern},
		},
	})
	require.NoError(t, err)
	require.NotNil(t, out.Item, "%s's reverse entry of %s", id, pattern)
	v, _ := out.Item["fpk"].(*types.AttributeValueMemberS)
	require.NotNil(t, v, "the reverse entry names its entry's key")
	return v.Value
}

// A storm of subscribes to a new pattern meets its level-0 key's ceiling
// long before the sampled count would split it. A subscribe whose bucket
// write is throttled raises the level and lands on the new level, here
// twice (level 0's key and its level-1 bucket are both hot): the layout
// lists the level before the entry is written, readers find it, and the
// reverse entry names the bucket written.
func TestBuckets_ThrottledBucketWriteRaisesTheLevel(t *testing.T) {
	for _, tc := range []struct{ pattern, event string }{
		{"storm.all", "storm.all"},
		// A wildcard's layout is its index entry, written by its first
		// subscriber.
		{"storm.*", "storm.x"},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			h1 := store.Hash("hot") >> 63
			hot, throttles := f.hotStore(onKeys("P#"+tc.pattern, fmt.Sprintf("P#%s 1 %d", tc.pattern, h1)), -1)
			f.subscribe(t, f.s, "first", tc.pattern)
			require.Equal(t, "P#"+tc.pattern, entryKeyOf(t, f, tc.pattern, "first"))

			c := f.conn("hot", "u-hot")
			require.NoError(t, f.s.PutConnection(ctx, c, nil))
			m := &store.Meter{}
			created, err := hot.Subscribe(store.WithMeter(ctx, m), c, store.NewSubscription{Pattern: topic.MustPattern(tc.pattern)})
			require.NoError(t, err)
			assert.True(t, created)
			assert.Equal(t, 2, throttles.count(), "level 0's key, then level 1's bucket")
			assert.Equal(t, 2, m.Throttles, "each throttle counted")
			assert.Zero(t, m.Conflicts)

			want := fmt.Sprintf("P#%s 2 %d", tc.pattern, store.Hash("hot")>>62)
			assert.Equal(t, want, entryKeyOf(t, f, tc.pattern, "hot"), "on level 2")
			assert.Equal(t, want, reverseFPK(t, f, tc.pattern, "hot"), "the reverse entry names the bucket written")
			layout, err := f.s.PatternLayout(ctx, topic.MustPattern(tc.pattern))
			require.NoError(t, err)
			assert.Equal(t, store.Layout{Cur: 2, Levels: []int{0, 1, 2}}, layout)

			// Readers: fan-out of an event numbered now, and the presence
			// listing, both from a container that has cached nothing.
			found, _ := audience(ctx, t, f.other(), "e1", tc.event, 1000)
			assert.Equal(t, map[string]int{"first": 1, "hot": 1}, found)
			if !topic.MustPattern(tc.pattern).HasWildcard() {
				subs, next, err := f.other().TopicSubscribers(ctx, topic.MustPattern(tc.pattern), "", 0)
				require.NoError(t, err)
				for next != "" {
					var more []store.Subscription
					more, next, err = f.other().TopicSubscribers(ctx, topic.MustPattern(tc.pattern), next, 0)
					require.NoError(t, err)
					subs = append(subs, more...)
				}
				var ids []string
				for _, s := range subs {
					ids = append(ids, s.ConnectionID)
				}
				assert.ElementsMatch(t, []string{"first", "hot"}, ids)
			}
		})
	}
}

// A throttle on another item of a subscribe's transaction says nothing of
// the pattern's bucket: the connection's partition (its record and the
// reverse entry) or the principal's wildcard hold. The subscribe is tried
// again as it was, on level 0, and no level is raised.
func TestBuckets_ThrottleOnAnotherItemRaisesNothing(t *testing.T) {
	for _, tc := range []struct {
		name, pattern string
		hot           func(types.TransactWriteItem) bool
	}{
		{"connection partition", "storm.all", onKeys("C#hot")},
		{"wildcard hold", "storm.*", heldCheck},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			hot, throttles := f.hotStore(tc.hot, 2)
			f.subscribe(t, f.s, "first", tc.pattern) // a wildcard's layout item exists: a raise would take

			c := f.conn("hot", "u-hot")
			c.Limits.MaxWildcards = 3
			require.NoError(t, f.s.PutConnection(ctx, c, nil))
			m := &store.Meter{}
			created, err := hot.Subscribe(store.WithMeter(ctx, m), c, store.NewSubscription{Pattern: topic.MustPattern(tc.pattern)})
			require.NoError(t, err)
			assert.True(t, created)
			require.Equal(t, 2, throttles.count(), "throttled twice, then written")
			assert.Equal(t, 2, m.Throttles, "each throttle counted")

			assert.Equal(t, "P#"+tc.pattern, entryKeyOf(t, f, tc.pattern, "hot"), "on level 0")
			assert.Equal(t, "P#"+tc.pattern, reverseFPK(t, f, tc.pattern, "hot"))
			layout, err := f.s.PatternLayout(ctx, topic.MustPattern(tc.pattern))
			require.NoError(t, err)
			assert.Equal(t, store.Layout{Cur: 0, Levels: []int{0}}, layout, "no level raised")
		})
	}
}

// At MaxLevel there is no level to raise to: a throttled bucket write is
// tried again where it was.
func TestBuckets_ThrottledAtMaxLevelRaisesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.putLayout(t, "storm.max", store.MaxLevel)
	hot, throttles := f.hotStore(func(it types.TransactWriteItem) bool {
		return strings.HasPrefix(itemPK(it), fmt.Sprintf("P#storm.max %d ", store.MaxLevel))
	}, 2)
	f.subscribe(t, hot, "hot", "storm.max")
	require.Equal(t, 2, throttles.count())
	assert.Equal(t, store.MaxLevel, levelOf(entryKeyOf(t, f, "storm.max", "hot")))
	layout, err := f.s.PatternLayout(ctx, topic.MustPattern("storm.max"))
	require.NoError(t, err)
	assert.Equal(t, store.Layout{Cur: store.MaxLevel, Levels: []int{0, store.MaxLevel}}, layout)
}

// putLayout writes topic tp's #SEQ item with its layout at level cur, far
// from its TTL.
func (f *fixture) putLayout(t *testing.T, tp string, cur int) {
	t.Helper()
	_, err := f.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "T#" + tp}, "sk": &types.AttributeValueMemberS{Value: "#SEQ"},
		"seq": &types.AttributeValueMemberN{Value: "1"}, "cur": &types.AttributeValueMemberN{Value: strconv.Itoa(cur)},
		"lv":  &types.AttributeValueMemberNS{Value: []string{strconv.Itoa(cur)}},
		"ttl": &types.AttributeValueMemberN{Value: fmt.Sprint(f.now.Add(20 * 24 * time.Hour).Unix())},
	}})
	require.NoError(t, err)
}

// A raise made by one container reaches another within a second while
// the pattern is young (below level 4), so a hot level-0 key stops taking
// every container's subscribes at once; on a pattern at level 4 or above a
// container keeps its layout 10 s, sparing the layout item (the topic's
// numbering key) reads. Within its period a container places on the
// layout it cached (stale is correct: the level is still read).
func TestBuckets_ARaiseReachesOtherContainersSoonWhileYoung(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		topic      string
		from       int           // the layout's level before the raise
		soon, late time.Duration // the other container still on from at soon, on from+1 at late
	}{
		{"storm.young", 0, 500 * time.Millisecond, 1500 * time.Millisecond},
		{"storm.old", 4, 1500 * time.Millisecond, 10500 * time.Millisecond},
	} {
		if tc.from > 0 {
			f.putLayout(t, tc.topic, tc.from)
		}
		hot, _ := f.hotStore(func(it types.TransactWriteItem) bool {
			pk := itemPK(it)
			return pk == "P#"+tc.topic || strings.HasPrefix(pk, fmt.Sprintf("P#%s %d ", tc.topic, tc.from))
		}, -1)
		other := f.other()
		start := f.now
		f.subscribe(t, other, tc.topic+"-before", tc.topic) // other caches the layout
		require.Equal(t, tc.from, levelOf(entryKeyOf(t, f, tc.topic, tc.topic+"-before")))
		f.subscribe(t, hot, tc.topic+"-hot", tc.topic) // its bucket is hot: it raises the level
		require.Equal(t, tc.from+1, levelOf(entryKeyOf(t, f, tc.topic, tc.topic+"-hot")), "%s: the raise", tc.topic)

		f.now = start.Add(tc.soon)
		f.subscribe(t, other, tc.topic+"-soon", tc.topic)
		assert.Equal(t, tc.from, levelOf(entryKeyOf(t, f, tc.topic, tc.topic+"-soon")), "%s: after %v, the cached layout", tc.topic, tc.soon)
		f.now = start.Add(tc.late)
		f.subscribe(t, other, tc.topic+"-late", tc.topic)
		assert.Equal(t, tc.from+1, levelOf(entryKeyOf(t, f, tc.topic, tc.topic+"-late")), "%s: after %v, the raise", tc.topic, tc.late)
	}
}

// levelOf is the level of a subscriber entry's partition key.
func levelOf(pk string) int {
	parts := strings.Split(pk, " ")
	if len(parts) < 3 {
		return 0
	}
	l, _ := strconv.Atoi(parts[1])
	return l
}

package store

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/topic"
)

// A pattern's subscribers are spread over partition keys, so no key carries
// a whole audience (DynamoDB serves at most 3,000 read and 1,000 write
// units a second per key). A connection has a fixed hash, the first 8
// bytes of SHA-256 of its id. Level L of a pattern has 2^L buckets, and
// bucket b of level L holds the connections whose hash's top L bits are b:
//
//	level 0:  P#<pattern>            sk <hash, 16 hex>#<conn>
//	level L:  P#<pattern> <L> <b>    the same sk
//
// A pattern may hold '#', never a space, so the space separates the level
// (topic.checkLiteral). Because the sort key starts with the hash, a range
// of hashes is a range of sort keys within a bucket, and all of one
// connection's entries (any pattern, any level) fall in the same range of
// any cut of the hash space.
//
// The pattern's layout (cur: the level new subscriptions go to; lv: every
// level that may hold entries, only ever added to) lives on the item
// readers already read: the topic's T#<topic> #SEQ item (the numbering's
// UpdateItem returns it) for an exact pattern, the wildcard index entry
// W#<prefix> <pattern> for a wildcard one. An entry is written at level L
// only when L is in lv already (or L is 0, which readers always read), so
// an event numbered after the subscription finds its level.
//
// An entry written before buckets existed has sk = <conn> in P#<pattern>;
// it is found while the pattern is read as one range.

// Layout attribute names, on the T# #SEQ item and the W# index entry.
const (
	attrCur    = "cur"
	attrLevels = "lv"
	// attrEntryPK on a reverse entry (C#<conn> S#<pattern>) is the
	// partition key of its subscriber entry; without it the entry is the
	// one-key layout's (P#<pattern>, <conn>).
	attrEntryPK = "fpk"
)

const (
	prefixBucketCount = "B#"
	skBucketCount     = "#N"
	// MaxLevel bounds a pattern's levels: 2^16 buckets of splitAt
	// subscribers each is far past any audience API Gateway can post to.
	MaxLevel = 16
	// layoutCacheFor is how long a container trusts a layout it read
	// (youngLayoutCacheFor while cur is below youngLevels): a stale cur
	// only puts new entries on a lower level, which readers still read.
	layoutCacheFor = 10 * time.Second
	// youngLayoutCacheFor and youngLevels: a raise must reach every
	// container soon while a pattern has few buckets, for until it does
	// the containers that have not seen it keep writing the old level,
	// whose keys were hot enough to raise it (a storm on a new topic:
	// 500 subscribes a second, API Gateway's connect rate, are half of
	// level 0's 1,000 write units, Subscribe's entry being 1 each). Below level 4 (at most 8 buckets, 4,000
	// subscribes a second before one is over) a container trusts a layout
	// 1 s; from level 4 on the level a stale container writes has 16
	// buckets or more, room for 8,000 a second, and 10 s spares the
	// layout item, which is the topic's numbering key. The cost of the
	// short period: at most one eventually consistent GetItem (0.5 RCU)
	// of the layout item a second per container subscribing to the
	// pattern, 500 RCU/s from 1,000 containers (Lambda's default
	// concurrency) against the key's 3,000, each beside a subscribe's
	// 5 WCU and 1 RCU; a container's own raise, refused raise or (for a topic)
	// CurrentSeq after a subscribe refreshes it at no extra read.
	youngLayoutCacheFor = time.Second
	youngLevels         = 4
	// layoutSafeTTL: a topic's #SEQ item (and its layout with it) expires
	// 30 days after its last event; one whose TTL is closer than this is
	// taken as level 0 only, so no entry is written at a level a new item
	// (after the old one expired) would not list. It is longer than a
	// connection, and so an entry, may live (WSGATE_CONNECTION_TTL: 24 h
	// at most).
	layoutSafeTTL = 25 * time.Hour
	// bucketCountTTL: a count item counts the subscribes within one
	// connection's lifetime, so churn does not grow the levels forever.
	bucketCountTTL = 2*time.Hour + 10*time.Minute
)

// Hash is a connection's place in the hash space.
func Hash(conn string) uint64 {
	h := sha256.Sum256([]byte(conn))
	return binary.BigEndian.Uint64(h[:8])
}

func hashHex(h uint64) string { return fmt.Sprintf("%016x", h) }

// entrySK is the sort key of a subscriber entry of connection conn.
func entrySK(conn string) string { return hashHex(Hash(conn)) + "#" + conn }

// EntrySK is the sort key of connection conn's subscriber entries (for
// tools and tests that read the table).
func EntrySK(conn string) string { return entrySK(conn) }

// parseEntrySK reads a subscriber entry's sort key: the connection and its
// hash; an old entry's sk is the connection id alone (hashed false).
func parseEntrySK(sk string) (conn string, hash uint64, hashed bool) {
	if len(sk) > 17 && sk[16] == '#' {
		if h, err := strconv.ParseUint(sk[:16], 16, 64); err == nil {
			return sk[17:], h, true
		}
	}
	return sk, Hash(sk), false
}

// bucket is the bucket of level l that holds hash h.
func bucket(h uint64, l int) uint64 {
	if l == 0 {
		return 0
	}
	return h >> (64 - l)
}

// bucketPK is the partition key of bucket b of level l of a pattern.
func bucketPK(pattern string, l int, b uint64) string {
	if l == 0 {
		return prefixPattern + pattern
	}
	return fmt.Sprintf("%s%s %d %d", prefixPattern, pattern, l, b)
}

// patternOfPK is the pattern of a subscriber entry's partition key.
func patternOfPK(pk string) (string, bool) {
	rest, ok := strings.CutPrefix(pk, prefixPattern)
	if !ok {
		return "", false
	}
	pat, _, _ := strings.Cut(rest, " ")
	return pat, true
}

// Layout is where a pattern's subscribers are: Cur is the level new
// subscriptions go to, Levels every level that may hold entries, in
// ascending order, 0 always among them.
type Layout struct {
	Cur    int
	Levels []int
}

// Top is the highest level that may hold entries.
func (l Layout) Top() int {
	if len(l.Levels) == 0 {
		return 0
	}
	return l.Levels[len(l.Levels)-1]
}

// has reports whether level lv may hold entries.
func (l Layout) has(lv int) bool { return lv == 0 || slices.Contains(l.Levels, lv) }

// layoutOf reads a layout from an item's cur and lv.
func layoutOf(item map[string]types.AttributeValue) Layout {
	l := Layout{Cur: int(getN(item, attrCur)), Levels: []int{0}}
	if ns, ok := item[attrLevels].(*types.AttributeValueMemberNS); ok {
		for _, v := range ns.Value {
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n <= MaxLevel {
				l.Levels = append(l.Levels, n)
			}
		}
	}
	slices.Sort(l.Levels)
	l.Levels = slices.Compact(l.Levels)
	if !l.has(l.Cur) {
		l.Cur = 0
	}
	return l
}

// seqLayout is the layout on a topic's #SEQ item as a subscriber may use
// it: level 0 only when the item is near its TTL (see layoutSafeTTL).
func seqLayout(item map[string]types.AttributeValue, now time.Time) Layout {
	if item == nil || getN(item, TTLAttribute) < now.Add(layoutSafeTTL).Unix() {
		return Layout{Levels: []int{0}}
	}
	return layoutOf(item)
}

// layoutCache is a container's recent layouts, by pattern.
type layoutCache struct {
	mu sync.Mutex
	m  map[string]cachedLayout
}

type cachedLayout struct {
	l  Layout
	at time.Time
}

func (c *layoutCache) put(pattern string, l Layout, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) > 10000 {
		c.m = map[string]cachedLayout{}
	}
	c.m[pattern] = cachedLayout{l: l, at: now}
}

// Bucketing is how a Store grows a pattern's levels.
type Bucketing struct {
	// SplitAt is how many subscriptions a bucket takes (counted within a
	// connection's lifetime) before new ones go to the next level.
	SplitAt int
	// Sample reports true with probability 1/n; each subscribe counts
	// itself n times with that probability (tests inject a fixed source).
	Sample func(n int) bool
}

// sampleEvery is S: one subscribe in S writes the bucket's count.
func (b Bucketing) sampleEvery() int { return max(1, b.SplitAt/40) }

func randomSample(n int) bool { return n <= 1 || rand.IntN(n) == 0 }

// Range is range R of the 2^K equal ranges of the hash space.
type Range struct{ K, R int }

// bounds are the first and last hash of the range.
func (rg Range) bounds() (lo, hi uint64) {
	if rg.K == 0 {
		return 0, ^uint64(0)
	}
	lo = uint64(rg.R) << (64 - rg.K)
	return lo, lo + (^uint64(0) >> rg.K)
}

// bucketRead is one key (and, when not whole, sort-key range) to query.
type bucketRead struct {
	pk     string
	lo, hi string // sk BETWEEN lo AND hi; both empty: the whole key
}

// rangeReads lists the queries that read range rg of a pattern whose
// entries are at levels: a level at most K has one bucket containing
// the range, read between the range's hashes (or whole when K is 0); a
// level above K has 2^(l-K) buckets inside the range, each read whole.
func rangeReads(pattern string, levels []int, rg Range) []bucketRead {
	lo, hi := rg.bounds()
	var out []bucketRead
	for _, l := range levels {
		if l <= rg.K {
			r := bucketRead{pk: bucketPK(pattern, l, bucket(lo, l))}
			if rg.K > 0 {
				r.lo, r.hi = hashHex(lo), hashHex(hi)+"~"
			}
			out = append(out, r)
			continue
		}
		first := uint64(rg.R) << (l - rg.K)
		for b := first; b < first+(1<<(l-rg.K)); b++ {
			out = append(out, bucketRead{pk: bucketPK(pattern, l, b)})
		}
	}
	return out
}

// MaxCut bounds k: an event is cut into at most 2^6 = 64 ranges.
const MaxCut = 6

// Cut is the number of ranges (2^k) an event is cut into: about one
// fan-out page per range, k the smallest with 2^k >= 2^top * splitAt /
// page, at most top and at most MaxCut. top is the highest level of any
// matching pattern.
func Cut(top, splitAt, page int) int {
	need := (uint64(1)<<top*uint64(splitAt) + uint64(page) - 1) / uint64(max(page, 1))
	k := 0
	for k < top && k < MaxCut && uint64(1)<<k < need {
		k++
	}
	return k
}

// countSubscribe counts a new subscription in its bucket, sampled: with
// probability 1/S it adds S to the bucket's count item (attrCount, on
// B#<pattern> <L> <b> #N, which expires a connection's lifetime after it
// was made), and when the count passes SplitAt it raises the pattern's
// level. It is best effort: a failed count is made up by later ones. (A
// subscribe throttled on its bucket raises the level too, at once:
// createSubscription.)
func (s *Store) countSubscribe(ctx context.Context, p topic.Pattern, at placement) {
	every := s.Bucketing.sampleEvery()
	if s.Bucketing.Sample == nil || !s.Bucketing.Sample(every) {
		return
	}
	pat := p.String()
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(fmt.Sprintf("%s%s %d %d", prefixBucketCount, pat, at.level, at.bucket), skBucketCount),
		UpdateExpression:          aws.String("ADD #n :s SET #ttl = if_not_exists(#ttl, :ttl)"),
		ExpressionAttributeNames:  map[string]string{"#n": attrCount, "#ttl": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{":s": nv(int64(every)), ":ttl": nv(s.now().Add(bucketCountTTL).Unix())},
		ReturnValues:              types.ReturnValueUpdatedNew,
		ReturnConsumedCapacity:    total,
	})
	if err != nil {
		return
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	if getN(out.Attributes, attrCount) > int64(s.Bucketing.SplitAt) && at.level < MaxLevel {
		_ = s.raise(ctx, p, at.level)
	}
}

// layoutKey is the item that holds a pattern's layout.
func layoutKey(p topic.Pattern) map[string]types.AttributeValue {
	if p.HasWildcard() {
		return key(prefixWildcard+p.LiteralPrefix(), p.String())
	}
	return key(prefixTopic+p.String(), skSeq)
}

// raise moves a pattern's new subscriptions from level l to l+1, unless
// they are past l already: SET cur = l+1, ADD lv {l+1}, where cur = l. A
// topic's #SEQ item gets a fresh TTL with it (so the new level is not
// taken for level 0 near expiry); a wildcard's index entry must exist.
func (s *Store) raise(ctx context.Context, p topic.Pattern, l int) error {
	now := s.now()
	cond := "#cur = :l"
	if l == 0 {
		cond = "(attribute_not_exists(#cur) OR #cur = :l)"
	}
	expr := "SET #cur = :next ADD #lv :lv"
	names := map[string]string{"#cur": attrCur, "#lv": attrLevels}
	vals := map[string]types.AttributeValue{
		":l": nv(int64(l)), ":next": nv(int64(l + 1)),
		":lv": &types.AttributeValueMemberNS{Value: []string{strconv.Itoa(l + 1)}},
	}
	if p.HasWildcard() {
		cond = "attribute_exists(pk) AND " + cond
	} else {
		expr = "SET #cur = :next, #ttl = :ttl ADD #lv :lv"
		names["#ttl"] = TTLAttribute
		vals[":ttl"] = nv(now.Add(s.SeqTTL).Unix())
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: s.table, Key: layoutKey(p),
		UpdateExpression: aws.String(expr), ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: names, ExpressionAttributeValues: vals,
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		ReturnConsumedCapacity:              total,
	})
	var ccf *types.ConditionalCheckFailedException
	if asCCF(err, &ccf) {
		meter(ctx, "UpdateItem")
		if ccf.Item != nil {
			s.cacheLayout(p, ccf.Item, now)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: raise level of %s: %w", p, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	s.cacheLayout(p, out.Attributes, now)
	return nil
}

// cacheLayout keeps the layout of p's layout item for this container's
// subscribes.
func (s *Store) cacheLayout(p topic.Pattern, item map[string]types.AttributeValue, now time.Time) {
	if p.HasWildcard() {
		s.layouts.put(p.String(), layoutOf(item), now)
		return
	}
	s.layouts.put(p.String(), seqLayout(item, now), now)
}

// PatternLayout reads a pattern's layout (strongly consistent: a
// retried event or a presence listing, which the numbering did not hand
// one).
func (s *Store) PatternLayout(ctx context.Context, p topic.Pattern) (Layout, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: layoutKey(p), ConsistentRead: aws.Bool(true),
		ProjectionExpression:     aws.String("#cur, #lv"),
		ExpressionAttributeNames: map[string]string{"#cur": attrCur, "#lv": attrLevels},
		ReturnConsumedCapacity:   total,
	})
	if err != nil {
		return Layout{}, fmt.Errorf("store: layout of %s: %w", p, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	return layoutOf(out.Item), nil
}

// readLayout reads a pattern's layout for placing a new entry (eventually
// consistent, with the #SEQ item's TTL: near it, level 0) and caches it.
func (s *Store) readLayout(ctx context.Context, p topic.Pattern, now time.Time) (Layout, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: layoutKey(p),
		ProjectionExpression:     aws.String("#cur, #lv, #ttl"),
		ExpressionAttributeNames: map[string]string{"#cur": attrCur, "#lv": attrLevels, "#ttl": TTLAttribute},
		ReturnConsumedCapacity:   total,
	})
	if err != nil {
		return Layout{}, fmt.Errorf("store: layout of %s: %w", p, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	s.cacheLayout(p, out.Item, now)
	l, _ := s.layouts.get(p.String(), now)
	return l, nil
}

// presenceQueries bounds the keys one TopicSubscribers page reads: one,
// so a page costs one Query (and, when its key is done, the layout, most
// often from this container's cache), as a page did with one key; a page
// may come back short, with a cursor to the next key.
const presenceQueries = 1

// TopicSubscribers reads one page of an exact topic's live subscribers
// across its levels, from cursor on: at most limit, read from at most
// presenceQueries keys; next is empty after the last page. The cursor
// names the key and the sort key it stopped at, so a page reads only the
// keys it needs (a topic of one bucket: one Query, and, when its key is
// done, its layout from this container's cache or one GetItem).
// Unreadable entries are as for Subscribers.
func (s *Store) TopicSubscribers(ctx context.Context, t topic.Pattern, cursor Cursor, limit int) ([]Subscription, Cursor, error) {
	pat := t.String()
	l, b, sk := parseTopicCursor(cursor)
	var levels []int
	var out []Subscription
	var unreadable []error
	for q := 0; q < presenceQueries; q++ {
		lim := 0
		if limit > 0 {
			lim = limit - len(out)
		}
		subs, next, err := s.bucketPage(ctx, pat, bucketRead{pk: bucketPK(pat, l, b)}, Cursor(sk), lim)
		if err != nil && !errors.Is(err, ErrUnreadable) {
			return nil, "", err
		}
		unreadable = append(unreadable, err)
		out = append(out, subs...)
		if next != "" {
			return out, topicCursor(l, b, string(next)), errors.Join(unreadable...)
		}
		if levels == nil {
			layout, err := s.cachedLayout(ctx, t)
			if err != nil {
				return nil, "", err
			}
			levels = layout.Levels
		}
		var ok bool
		if l, b, ok = nextKey(levels, l, b); !ok {
			return out, "", errors.Join(unreadable...)
		}
		sk = ""
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, topicCursor(l, b, ""), errors.Join(unreadable...)
}

// cachedLayout is a pattern's layout as this container last read it, or
// read now.
func (s *Store) cachedLayout(ctx context.Context, p topic.Pattern) (Layout, error) {
	if l, ok := s.layouts.get(p.String(), s.now()); ok {
		return l, nil
	}
	return s.PatternLayout(ctx, p)
}

func (c *layoutCache) get(pattern string, now time.Time) (Layout, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[pattern]
	if !ok || now.Sub(e.at) > e.l.cacheFor() {
		return Layout{}, false
	}
	return e.l, true
}

// cacheFor is how long a container trusts l (youngLayoutCacheFor).
func (l Layout) cacheFor() time.Duration {
	if l.Cur < youngLevels {
		return youngLayoutCacheFor
	}
	return layoutCacheFor
}

// nextKey is the key after bucket b of level l among levels' keys.
func nextKey(levels []int, l int, b uint64) (int, uint64, bool) {
	if b+1 < uint64(1)<<l {
		return l, b + 1, true
	}
	for _, n := range levels {
		if n > l {
			return n, 0, true
		}
	}
	return 0, 0, false
}

// topicCursor and parseTopicCursor: "<level> <bucket> <sk>"; a cursor of
// the one-key layout (a sort key, no space) is level 0's.
func topicCursor(l int, b uint64, sk string) Cursor {
	return Cursor(fmt.Sprintf("%d %d %s", l, b, sk))
}

func parseTopicCursor(c Cursor) (int, uint64, string) {
	parts := strings.SplitN(string(c), " ", 3)
	if len(parts) != 3 {
		return 0, 0, string(c)
	}
	l, err1 := strconv.Atoi(parts[0])
	b, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || l < 0 || l > MaxLevel || b >= uint64(1)<<l {
		return 0, 0, ""
	}
	return l, b, parts[2]
}

package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

// NewSubscription is a subscription to create.
type NewSubscription struct {
	Pattern topic.Pattern
	Filters filter.Set
	// Presence: the subscriber receives the topic's join and leave events.
	Presence bool
}

// Subscription is a subscriber of a pattern, with everything fan-out needs
// to decide and format a delivery without reading the connection record.
type Subscription struct {
	ConnectionID string
	Pattern      string
	Identity     auth.Identity
	Filters      filter.Set
	Envelope     bool
	ExpiresAt    time.Time
	// Hash is the connection's place in the hash space (layout.go).
	Hash uint64
	// Presence: it asked for the topic's join and leave events.
	Presence bool
}

// Subscription attribute names.
const (
	attrIdentity = "who"
	attrFilters  = "f"
	attrRev      = "rev"
	attrPresence = "pres"
)

// registryTTL outlives any connection (API Gateway closes them at 2 hours),
// so a wildcard pattern's index entry never expires under a live subscriber.
const registryTTL = 25 * time.Hour

// placement is where a new subscriber entry goes: its partition key, and
// the level and bucket it is in.
type placement struct {
	pk     string
	level  int
	bucket uint64
}

// place puts a new entry of conn on the level this container last read as
// the pattern's cur. With none cached (a new container, or one that
// subscribes to the pattern less often than it caches a layout,
// Layout.cacheFor) it reads the
// layout first, eventually consistent (a stale cur is a level that stays
// listed); level 0 only when that read fails. Writing on level 0 instead
// would pile every such container's subscribes on the one key every range
// of every event reads.
func (s *Store) place(ctx context.Context, p topic.Pattern, conn string) placement {
	pattern := p.String()
	now := s.now()
	l, ok := s.layouts.get(pattern, now)
	if !ok {
		if read, err := s.readLayout(ctx, p, now); err == nil {
			l = read
		}
	}
	b := bucket(Hash(conn), l.Cur)
	return placement{pk: bucketPK(pattern, l.Cur, b), level: l.Cur, bucket: b}
}

// placementOf is where an existing entry is, from its reverse entry.
func placementOf(rev map[string]types.AttributeValue) (placement, bool) {
	fpk := getS(rev, attrEntryPK)
	if fpk == "" {
		return placement{}, false
	}
	at := placement{pk: fpk}
	if _, rest, ok := strings.Cut(fpk, " "); ok {
		l, b, _ := strings.Cut(rest, " ")
		at.level, _ = strconv.Atoi(l)
		at.bucket, _ = strconv.ParseUint(b, 10, 64)
	}
	return at, true
}

// entryKey is the key of the subscriber entry a reverse entry names: the
// one-key layout's (P#<pattern>, <conn>) when it names none.
func entryKey(rev map[string]types.AttributeValue, pattern, conn string) map[string]types.AttributeValue {
	if at, ok := placementOf(rev); ok {
		return key(at.pk, entrySK(conn))
	}
	return key(prefixPattern+pattern, conn)
}

func (s *Store) subscriptionItems(c Connection, sub NewSubscription, at placement) []map[string]types.AttributeValue {
	pat := sub.Pattern.String()
	ttl := nv(c.ExpiresAt.Unix())
	var f types.AttributeValue
	if len(sub.Filters) > 0 {
		b, _ := json.Marshal(sub.Filters)
		f = sv(string(b))
	}
	who, _ := json.Marshal(c.Principal.Identity)

	rev := key(connPK(c.ID), skSubPrefix+pat)
	rev[TTLAttribute] = ttl
	rev[attrEntryPK] = sv(at.pk)
	fwd := key(at.pk, entrySK(c.ID))
	fwd[TTLAttribute] = ttl
	fwd[attrIdentity] = sv(string(who))
	fwd[attrEnvelope] = bv(c.Envelope)
	// The generation orders this write of the entry after every earlier
	// one, for the rosters folded from the stream (roster.go). The wall
	// clock, not s.now: a test's pinned clock would repeat it; Lambda
	// hosts' clocks agree far closer than a client can unsubscribe and
	// subscribe again.
	//
	// The reverse entry carries the same generation: a subscribe writes
	// its subscriber entry after the reverse entry, and keeps it only
	// while the reverse entry is of its generation (putEntry).
	gen := nv(time.Now().UnixNano())
	fwd[attrGen] = gen
	rev[attrGen] = gen
	if sub.Presence {
		fwd[attrPresence] = bv(true)
	}
	if f != nil {
		rev[attrFilters] = f
		fwd[attrFilters] = f
	}
	return []map[string]types.AttributeValue{rev, fwd}
}

// A wildcard pattern's index entry, W#<literal prefix> <pattern>, is read
// by every event under the prefix, and a popular pattern is subscribed by
// every connection of a storm: written by each subscribe (2 WCU in the
// subscribe's transaction) it would pass a partition's 1,000 WCU/s at 500
// subscribes a second. So a subscribe writes its own entries first and
// then reads the index entry, strongly consistent, 1 RCU against the
// partition's 3,000 RCU/s
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html),
// and writes it only when it is missing, near its TTL, or marked by a
// removal under way (ForgetPattern).
//
// The order keeps the race a removal runs against a new subscriber: the
// removal marks the entry, then reads the subscribers, then deletes the
// entry only while its mark is unchanged. A subscriber the removal's read
// missed wrote its entry after that read, so after the mark: its own read
// of the index entry comes later still and finds the mark, or nothing, and
// rewrites the entry, which makes the delete fail or undoes it.
const (
	// attrDying marks an index entry a removal is about to delete.
	attrDying = "dying"
	// indexRefresh: an entry with less time than this left is rewritten
	// by the next subscribe; it is more than a connection lives (API
	// Gateway's 2 h), so an entry that is not rewritten outlives the
	// subscription.
	indexRefresh = 3 * time.Hour
)

// indexPattern makes sure the wildcard index lists p, after a subscription
// to p was written at level (which it adds to the entry's levels when
// missing: an entry forgotten and written again lists no level).
func (s *Store) indexPattern(ctx context.Context, p topic.Pattern, level int) error {
	k := key(prefixWildcard+p.LiteralPrefix(), p.String())
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: k,
		// A stale read could miss a removal's mark (see above).
		ConsistentRead:           aws.Bool(true),
		ProjectionExpression:     aws.String("#ttl, #dying, #cur, #lv"),
		ExpressionAttributeNames: map[string]string{"#ttl": TTLAttribute, "#dying": attrDying, "#cur": attrCur, "#lv": attrLevels},
		ReturnConsumedCapacity:   total,
	})
	if err != nil {
		return fmt.Errorf("store: read index entry %s: %w", p, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	now := s.now()
	if out.Item != nil && out.Item[attrDying] == nil && getN(out.Item, TTLAttribute) >= now.Add(indexRefresh).Unix() {
		l := layoutOf(out.Item)
		s.layouts.put(p.String(), l, now)
		if l.has(level) {
			return nil
		}
	}
	expr := "SET #rev = :rev, #ttl = :ttl, #cur = if_not_exists(#cur, :cur) REMOVE #dying"
	values := map[string]types.AttributeValue{":rev": sv(randomRev()), ":ttl": nv(now.Add(registryTTL).Unix()), ":cur": nv(int64(level))}
	if level > 0 {
		expr += " ADD #lv :lv"
		values[":lv"] = &types.AttributeValueMemberNS{Value: []string{strconv.Itoa(level)}}
	}
	names := map[string]string{"#rev": attrRev, "#ttl": TTLAttribute, "#cur": attrCur, "#dying": attrDying}
	if level > 0 {
		names["#lv"] = attrLevels
	}
	up, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: s.table, Key: k, UpdateExpression: aws.String(expr),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
		ReturnValues:              types.ReturnValueAllNew,
		ReturnConsumedCapacity:    total,
	})
	if err != nil {
		return fmt.Errorf("store: write index entry %s: %w", p, err)
	}
	meter(ctx, "UpdateItem", ccOne(up.ConsumedCapacity)...)
	s.layouts.put(p.String(), layoutOf(up.Attributes), now)
	return nil
}

func randomRev() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Subscribe adds one subscription to a live connection, atomically with its
// reverse entry, the wildcard index and the connection's count. It returns
// created=false when the subscription existed (its filters are replaced),
// ErrLimit when the connection has as many subscriptions as it may,
// ErrWildcardLimit (an ErrLimit), before writing anything, when a new
// wildcard pattern would take the principal past c.Limits.MaxWildcards
// distinct ones, and ErrNotFound when the connection is gone or still
// pending.
func (s *Store) Subscribe(ctx context.Context, c Connection, sub NewSubscription) (bool, error) {
	t, counted := wildTally(c.Principal)
	if !counted || !sub.Pattern.HasWildcard() {
		return s.subscribe(ctx, c, sub, nil)
	}
	pat := sub.Pattern.String()
	cl := claim{t: t, slot: pat, exp: c.ExpiresAt, limit: c.Limits.MaxWildcards, err: ErrWildcardLimit}
	for attempt := 0; attempt < takeAttempts; attempt++ {
		added, err := s.holdPattern(ctx, cl, c.ID)
		if err != nil {
			return false, err
		}
		created, err := s.subscribe(ctx, c, sub, []types.TransactWriteItem{s.heldCheck(t, pat, c.ID)})
		if errors.Is(err, errHoldLost) {
			continue // an unsubscribe let go of it meanwhile: hold it again
		}
		if err != nil && added {
			// Let go even when ctx ran out: the hold would count until the
			// connection expires.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			err = errors.Join(err, s.releasePattern(rctx, t, pat, c.ID))
		}
		return created, err
	}
	return false, fmt.Errorf("store: subscribe %s to %s: contention did not settle", c.ID, pat)
}

// errHoldLost: the subscription's wildcard hold was released before the
// subscription was written.
var errHoldLost = errors.New("wildcard hold released meanwhile")

// subscribe writes a subscription; checks are transaction items that must
// hold too (refused with errHoldLost).
func (s *Store) subscribe(ctx context.Context, c Connection, sub NewSubscription, checks []types.TransactWriteItem) (bool, error) {
	pat := sub.Pattern.String()
	checkFailed := func(reasons []types.CancellationReason, n int) bool {
		for i := n - len(checks); i < n; i++ {
			if reasonIs(reasons, i, "ConditionalCheckFailed") {
				return true
			}
		}
		return false
	}
	at, n, err := s.createSubscription(ctx, c, sub, checks)
	if err == nil {
		if err := s.indexNew(ctx, c.ID, sub.Pattern, at.level); err != nil {
			return true, err
		}
		s.countSubscribe(ctx, sub.Pattern, at)
		return true, nil
	}
	reasons, ok := cancelReasons(err)
	if !ok {
		return false, fmt.Errorf("store: subscribe %s to %s: %w", c.ID, sub.Pattern, err)
	}
	if !reasonIs(reasons, 1, "ConditionalCheckFailed") {
		if reasonIs(reasons, 0, "ConditionalCheckFailed") {
			if reasons[0].Item == nil || getN(reasons[0].Item, attrPending) != 0 {
				return false, ErrNotFound
			}
			return false, ErrLimit
		}
		if checkFailed(reasons, n) {
			return false, errHoldLost
		}
		return false, fmt.Errorf("store: subscribe %s to %s: %w", c.ID, sub.Pattern, err)
	}
	// Already subscribed: replace the filters, keep the count, and keep
	// the entry where it is, so there is one. An entry of the one-key
	// layout moves to the new one.
	update := []types.TransactWriteItem{{ConditionCheck: &types.ConditionCheck{
		TableName:           s.table,
		Key:                 key(connPK(c.ID), skMeta),
		ConditionExpression: aws.String("attribute_exists(pk) AND attribute_not_exists(pend)"),
	}}}
	if old, ok := placementOf(reasons[1].Item); ok {
		at = old
	} else {
		update = append(update, types.TransactWriteItem{Delete: &types.Delete{TableName: s.table, Key: key(prefixPattern+pat, c.ID)}})
	}
	update = append(append(update, s.subscriptionPuts(c, sub, at)...), checks...)
	if err := s.transact(ctx, update); err != nil {
		reasons, ok := cancelReasons(err)
		switch {
		case ok && reasonIs(reasons, 0, "ConditionalCheckFailed"):
			return false, ErrNotFound
		case ok && checkFailed(reasons, len(update)):
			return false, errHoldLost
		}
		return false, fmt.Errorf("store: resubscribe %s to %s: %w", c.ID, sub.Pattern, err)
	}
	if sub.Pattern.HasWildcard() {
		return false, s.indexPattern(ctx, sub.Pattern, at.level)
	}
	return false, nil
}

// createSubscription writes a new subscription: first, in one
// transaction, the connection's count, the reverse entry (naming the
// subscriber entry's key, on the level place picks) and checks; then the
// subscriber entry by itself (putEntry). It returns the placement of the
// entry and the transaction's length; the reasons of a cancellation index
// its items. A cancelled transaction wrote nothing; an entry that could
// not be written takes the subscription back.
//
// The subscriber entry is outside the transaction because a transaction
// charges each of its items twice (2 WCU): a bucket's key takes
// DynamoDB's 1,000 write units a second, and a storm of subscribes to a
// new pattern (API Gateway's 500 connects a second, each subscribing)
// puts all of them on level 0 until the sampled count splits it. At
// 2 WCU a subscribe that storm is the key's whole ceiling; at 1 WCU it is
// half of it. The transaction still holds the caps (the count) and the
// uniqueness (the reverse entry) in one step; the subscribe is answered
// only after its entry is written, so an event numbered after the answer
// finds it.
func (s *Store) createSubscription(ctx context.Context, c Connection, sub NewSubscription, checks []types.TransactWriteItem) (placement, int, error) {
	at := s.place(ctx, sub.Pattern, c.ID)
	its := s.subscriptionItems(c, sub, at)
	fwd := its[1]
	items := append([]types.TransactWriteItem{{Update: &types.Update{
		TableName:                           s.table,
		Key:                                 key(connPK(c.ID), skMeta),
		UpdateExpression:                    aws.String("SET ns = ns + :one"),
		ConditionExpression:                 aws.String("attribute_exists(pk) AND attribute_not_exists(pend) AND ns < ms"),
		ExpressionAttributeValues:           map[string]types.AttributeValue{":one": nv(1)},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}}}, types.TransactWriteItem{Put: s.newReversePut(its[0])})
	items = append(items, checks...)
	if err := s.transact(ctx, items); err != nil {
		return at, len(items), err
	}
	if err := s.putEntry(ctx, c.ID, sub.Pattern, &at, fwd); err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, uerr := s.unsubscribe(rctx, c.ID, sub.Pattern)
		// subscribe names the subscription in the error it returns.
		return at, len(items), errors.Join(err, uerr)
	}
	return at, len(items), nil
}

// putEntry writes a new subscription's subscriber entry fwd at *at, after
// its reverse entry was written naming *at. The write keeps an entry of a
// later generation (a later subscribe of the connection to the pattern,
// which wrote it first). Then it reads the reverse entry back (strongly
// consistent, 1 RCU on the connection's key): an unsubscribe or a
// disconnect that ran between the transaction and the put removed the
// reverse entry and found no subscriber entry to remove, so the put left
// one; it is removed now.
//
// A put throttled on its bucket raises the pattern's level from the one
// it was placed on (conditional: once, whichever container comes first;
// the others' refused raise hands them the new layout), and the next try
// is placed anew, on the level the raise left, which is in lv before the
// entry is written; the reverse entry is moved to name it first. The SDK
// retries the other errors it retries, not throttling, which this loop
// does with its own backoff. At MaxLevel a throttled put is tried again
// where it was.
func (s *Store) putEntry(ctx context.Context, conn string, p topic.Pattern, at *placement, fwd map[string]types.AttributeValue) error {
	gen := fwd[attrGen]
	for attempt := 0; ; attempt++ {
		out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: s.table, Item: fwd,
			ConditionExpression:       aws.String("attribute_not_exists(pk) OR attribute_not_exists(#gen) OR #gen < :gen"),
			ExpressionAttributeNames:  map[string]string{"#gen": attrGen},
			ExpressionAttributeValues: map[string]types.AttributeValue{":gen": gen},
			ReturnConsumedCapacity:    total,
		}, throttlesNotRetried)
		var ccf *types.ConditionalCheckFailedException
		if err == nil || asCCF(err, &ccf) {
			if out != nil {
				meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
			} else {
				meter(ctx, "PutItem")
			}
			break
		}
		meter(ctx, "PutItem")
		if !isThrottled(err) || attempt+1 >= conflictAttempts {
			return fmt.Errorf("write subscriber entry: %w", err)
		}
		if m, ok := ctx.Value(meterKey{}).(*Meter); ok {
			m.throttle()
		}
		if at.level < MaxLevel {
			// Best effort: a raise that fails leaves the layout, and the
			// next try's place, as they were.
			_ = s.raise(ctx, p, at.level)
			if next := s.place(ctx, p, conn); next.pk != at.pk {
				moved, err := s.moveReverse(ctx, conn, p, *at, next, gen)
				if err != nil {
					return err
				}
				if !moved {
					return nil // removed or replaced meanwhile: nothing of ours to write
				}
				*at = next
				fwd["pk"] = sv(next.pk)
			}
		}
		if err := retry.Wait(ctx, attempt); err != nil {
			return err
		}
	}
	return s.confirmEntry(ctx, conn, p, *at, gen)
}

// moveReverse makes the reverse entry of conn's subscription to p (of
// generation gen) name the subscriber entry's new key; false when it is
// gone or is another generation's.
func (s *Store) moveReverse(ctx context.Context, conn string, p topic.Pattern, from, to placement, gen types.AttributeValue) (bool, error) {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: s.table, Key: key(connPK(conn), skSubPrefix+p.String()),
		UpdateExpression:          aws.String("SET #fpk = :to"),
		ConditionExpression:       aws.String("#fpk = :from AND #gen = :gen"),
		ExpressionAttributeNames:  map[string]string{"#fpk": attrEntryPK, "#gen": attrGen},
		ExpressionAttributeValues: map[string]types.AttributeValue{":to": sv(to.pk), ":from": sv(from.pk), ":gen": gen},
		ReturnConsumedCapacity:    total,
	})
	var ccf *types.ConditionalCheckFailedException
	if asCCF(err, &ccf) {
		meter(ctx, "UpdateItem")
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("move reverse entry: %w", err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return true, nil
}

// confirmEntry keeps the subscriber entry of generation gen at at only
// while the reverse entry names it (same key, same generation); otherwise
// it deletes it, unless a later write replaced it.
func (s *Store) confirmEntry(ctx context.Context, conn string, p topic.Pattern, at placement, gen types.AttributeValue) error {
	got, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(connPK(conn), skSubPrefix+p.String()), ConsistentRead: aws.Bool(true),
		ProjectionExpression:     aws.String("#fpk, #gen"),
		ExpressionAttributeNames: map[string]string{"#fpk": attrEntryPK, "#gen": attrGen},
		ReturnConsumedCapacity:   total,
	})
	if err != nil {
		return fmt.Errorf("read back reverse entry: %w", err)
	}
	meter(ctx, "GetItem", ccOne(got.ConsumedCapacity)...)
	if got.Item != nil && getS(got.Item, attrEntryPK) == at.pk && sameN(got.Item[attrGen], gen) {
		return nil
	}
	out, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName: s.table, Key: key(at.pk, entrySK(conn)),
		ConditionExpression:       aws.String("#gen = :gen"),
		ExpressionAttributeNames:  map[string]string{"#gen": attrGen},
		ExpressionAttributeValues: map[string]types.AttributeValue{":gen": gen},
		ReturnConsumedCapacity:    total,
	})
	var ccf *types.ConditionalCheckFailedException
	if asCCF(err, &ccf) {
		meter(ctx, "DeleteItem")
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove subscriber entry of a removed subscription: %w", err)
	}
	meter(ctx, "DeleteItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

// sameN reports whether a and b are the same number.
func sameN(a, b types.AttributeValue) bool {
	x, ok1 := a.(*types.AttributeValueMemberN)
	y, ok2 := b.(*types.AttributeValueMemberN)
	return ok1 && ok2 && x.Value == y.Value
}

// isThrottled reports whether err is DynamoDB refusing a request over a
// partition's (or the table's) throughput.
func isThrottled(err error) bool {
	var pte *types.ProvisionedThroughputExceededException
	if errors.As(err, &pte) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ThrottlingException", "RequestLimitExceeded":
			return true
		}
	}
	return false
}

// throttlesNotRetried makes the SDK hand a throttled request back at once
// (it retries the other retryable errors as before), for a caller that
// acts on a throttle before it tries again.
func throttlesNotRetried(o *dynamodb.Options) {
	if o.Retryer != nil {
		o.Retryer = throttleNotRetryable{o.Retryer}
	}
}

type throttleNotRetryable struct{ aws.Retryer }

func (r throttleNotRetryable) IsErrorRetryable(err error) bool {
	return !isThrottled(err) && r.Retryer.IsErrorRetryable(err)
}

// subscriptionPuts are the puts of a subscription's two entries at at
// (a resubscribe's, which replaces them).
func (s *Store) subscriptionPuts(c Connection, sub NewSubscription, at placement) []types.TransactWriteItem {
	var out []types.TransactWriteItem
	for _, it := range s.subscriptionItems(c, sub, at) {
		out = append(out, types.TransactWriteItem{Put: &types.Put{TableName: s.table, Item: it}})
	}
	return out
}

// newReversePut puts a new subscription's reverse entry, which must be
// new (the existing one is returned when it is not).
func (s *Store) newReversePut(rev map[string]types.AttributeValue) *types.Put {
	return &types.Put{
		TableName: s.table, Item: rev,
		ConditionExpression:                 aws.String("attribute_not_exists(pk)"),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
}

// indexNew indexes a new subscription's wildcard pattern at level; when
// that fails the subscription is taken back, so none is left that events
// would miss.
func (s *Store) indexNew(ctx context.Context, connID string, p topic.Pattern, level int) error {
	if !p.HasWildcard() {
		return nil
	}
	err := s.indexPattern(ctx, p, level)
	if err == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, uerr := s.unsubscribe(rctx, connID, p)
	return errors.Join(err, uerr)
}

// Unsubscribe removes one subscription. It returns false when there was
// none. A wildcard pattern's hold among the principal's distinct patterns
// goes with it, and its index entry with its last subscriber.
func (s *Store) Unsubscribe(ctx context.Context, connID string, pattern topic.Pattern) (bool, error) {
	if !pattern.HasWildcard() {
		return s.unsubscribe(ctx, connID, pattern)
	}
	// Read the principal first: the record may be gone after.
	p, err := s.principal(ctx, connID)
	if err != nil {
		return false, err
	}
	removed, err := s.unsubscribe(ctx, connID, pattern)
	if err != nil {
		return false, err
	}
	// Also when there was nothing to remove: a retry after a failed
	// cleanup, or a hold left by a subscribe that failed part-way.
	return removed, s.letGo(ctx, connID, p, []topic.Pattern{pattern})
}

// principal reads a connection's principal (zero when it is gone).
func (s *Store) principal(ctx context.Context, connID string) (auth.Principal, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(connPK(connID), skMeta),
		// A connection that authenticated a moment ago must not read as
		// its pending, anonymous self.
		ConsistentRead:       aws.Bool(true),
		ProjectionExpression: aws.String("pk, sk, " + attrPrincipal), ReturnConsumedCapacity: total,
	})
	if err != nil {
		return auth.Principal{}, fmt.Errorf("store: principal of %s: %w", connID, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	return principalOf(out.Item)
}

// unsubscribe removes a subscription's two entries. It reads the reverse
// entry first (strongly consistent, 1 RCU): it names the partition key of
// the subscriber entry.
func (s *Store) unsubscribe(ctx context.Context, connID string, pattern topic.Pattern) (bool, error) {
	pat := pattern.String()
	revKey := key(connPK(connID), skSubPrefix+pat)
	got, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: revKey, ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("#fpk"), ExpressionAttributeNames: map[string]string{"#fpk": attrEntryPK},
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		return false, fmt.Errorf("store: unsubscribe %s from %s: %w", connID, pat, err)
	}
	meter(ctx, "GetItem", ccOne(got.ConsumedCapacity)...)
	if got.Item == nil {
		return false, nil
	}
	fwdKey := entryKey(got.Item, pat, connID)
	// The reverse entry must still name the entry read: a resubscribe
	// keeps it where it is, and one that moved an old entry changed it.
	cond, vals := "attribute_not_exists(#fpk)", map[string]types.AttributeValue{}
	if fpk := getS(got.Item, attrEntryPK); fpk != "" {
		cond, vals = "#fpk = :fpk", map[string]types.AttributeValue{":fpk": sv(fpk)}
	}
	del := &types.Delete{
		TableName: s.table, Key: revKey, ConditionExpression: aws.String("attribute_exists(pk) AND " + cond),
		ExpressionAttributeNames: map[string]string{"#fpk": attrEntryPK},
	}
	if len(vals) > 0 {
		del.ExpressionAttributeValues = vals
	}
	err = s.transact(ctx, []types.TransactWriteItem{
		{Delete: del},
		{Delete: &types.Delete{TableName: s.table, Key: fwdKey}},
		{Update: &types.Update{
			TableName:                 s.table,
			Key:                       key(connPK(connID), skMeta),
			UpdateExpression:          aws.String("SET ns = ns - :one"),
			ConditionExpression:       aws.String("attribute_exists(pk) AND ns > :zero"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": nv(1), ":zero": nv(0)},
		}},
	})
	if err == nil {
		return true, nil
	}
	reasons, ok := cancelReasons(err)
	switch {
	case ok && reasonIs(reasons, 0, "ConditionalCheckFailed"):
		return false, nil
	case ok && reasonIs(reasons, 2, "ConditionalCheckFailed"):
		// The record is gone (disconnect raced us): remove the two entries.
		return true, s.batchWrite(ctx, []types.WriteRequest{
			{DeleteRequest: &types.DeleteRequest{Key: revKey}},
			{DeleteRequest: &types.DeleteRequest{Key: fwdKey}},
		})
	}
	return false, fmt.Errorf("store: unsubscribe %s from %s: %w", connID, pat, err)
}

func (s *Store) transact(ctx context.Context, items []types.TransactWriteItem) error {
	out, err := s.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{
		TransactItems: items, ReturnConsumedCapacity: total,
	})
	if err != nil {
		meter(ctx, "TransactWriteItems")
		return err
	}
	meter(ctx, "TransactWriteItems", out.ConsumedCapacity...)
	return nil
}

// ConnectionSubscriptions lists a connection's subscriptions (from the
// reverse entries; Identity and Envelope are not filled). An entry whose
// filters do not decode is left out and named in an error that wraps
// ErrUnreadable, returned with the readable ones: a caller must not take
// the list for the connection's whole set then.
func (s *Store) ConnectionSubscriptions(ctx context.Context, connID string) ([]Subscription, error) {
	var out []Subscription
	var unreadable []error
	now := s.now()
	err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:              s.table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :s)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": sv(connPK(connID)), ":s": sv(skSubPrefix),
		},
		ConsistentRead: aws.Bool(true),
	}, func(item map[string]types.AttributeValue) {
		if !alive(item, now) {
			return
		}
		sub := Subscription{
			ConnectionID: connID,
			Pattern:      strings.TrimPrefix(getS(item, SortKey), skSubPrefix),
			ExpiresAt:    time.Unix(getN(item, TTLAttribute), 0),
		}
		if _, ok := item[attrFilters]; ok {
			if err := decodeAttr(item, attrFilters, &sub.Filters); err != nil {
				unreadable = append(unreadable, err)
				return
			}
		}
		out = append(out, sub)
	})
	if err != nil {
		return nil, fmt.Errorf("store: subscriptions of %s: %w", connID, err)
	}
	return out, errors.Join(unreadable...)
}

// PatternRef is a pattern whose subscribers may receive an event.
type PatternRef struct {
	Pattern string
	// Levels are the levels of the pattern that may hold subscribers
	// (Layout.Levels).
	Levels []int
	// Wildcard patterns come from the index; Prefix and Rev identify the
	// index entry so an empty one can be removed without racing a new
	// subscriber.
	Wildcard bool
	Prefix   string
	Rev      string
}

// SubscriberPatterns returns the patterns whose subscribers may want an
// event on t: t itself, at the levels of exact (its layout, which the
// event's numbering returned), and every indexed wildcard pattern that
// matches t, with its levels. It makes one query per prefix of t (at most
// topic.MaxSegments, run in parallel), whatever the table holds.
func (s *Store) SubscriberPatterns(ctx context.Context, t topic.Pattern, exact Layout) ([]PatternRef, error) {
	prefixes := t.Prefixes()
	found := make([][]PatternRef, len(prefixes))
	errs := make([]error, len(prefixes))
	var wg sync.WaitGroup
	for i, prefix := range prefixes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.queryAll(ctx, &dynamodb.QueryInput{
				TableName:                 s.table,
				KeyConditionExpression:    aws.String("pk = :pk"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(prefixWildcard + prefix)},
				ProjectionExpression:      aws.String("sk, rev, #cur, #lv"),
				ExpressionAttributeNames:  map[string]string{"#cur": attrCur, "#lv": attrLevels},
				// A stale read could miss a pattern subscribed before the
				// event took its number, and its subscribers with it.
				ConsistentRead: aws.Bool(true),
			}, func(item map[string]types.AttributeValue) {
				p, err := topic.ParsePattern(getS(item, SortKey))
				if err != nil || !p.Match(t) {
					return
				}
				found[i] = append(found[i], PatternRef{
					Pattern: p.String(), Levels: layoutOf(item).Levels, Wildcard: true, Prefix: prefix, Rev: getS(item, attrRev),
				})
			})
		}()
	}
	wg.Wait()
	levels := exact.Levels
	if len(levels) == 0 {
		levels = []int{0}
	}
	out := []PatternRef{{Pattern: t.String(), Levels: levels}}
	for i := range prefixes {
		if errs[i] != nil {
			return nil, fmt.Errorf("store: wildcard index of %s: %w", t, errs[i])
		}
		out = append(out, found[i]...)
	}
	return out, nil
}

// Cursor is where a page of subscribers ends; empty means the start.
type Cursor string

// Subscribers reads one page of a pattern's live subscribers at level 0
// (P#<pattern>, the whole key), from cursor on: at most limit, or with
// limit 0 as many as DynamoDB returns in one page (1 MB, thousands).
// next is empty after the last page. A subscriber whose identity or
// filters do not decode is left out of subs (it gets nothing, rather than
// what an empty filter would let through) and named in an error that
// wraps ErrUnreadable, returned with the readable subscribers and next: a
// caller may skip those and go on.
func (s *Store) Subscribers(ctx context.Context, pattern string, cursor Cursor, limit int) (subs []Subscription, next Cursor, err error) {
	return s.bucketPage(ctx, pattern, bucketRead{pk: prefixPattern + pattern}, cursor, limit)
}

// bucketPage reads one page of the subscribers of one bucket read.
func (s *Store) bucketPage(ctx context.Context, pattern string, r bucketRead, cursor Cursor, limit int) (subs []Subscription, next Cursor, err error) {
	in := &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(r.pk)},
		// Every subscription made before the event took its number must be
		// found (subscribed's seqs promise it), and an empty answer may
		// remove the pattern's index entry: neither may rest on a stale read.
		ConsistentRead:         aws.Bool(true),
		ReturnConsumedCapacity: total,
	}
	if r.lo != "" {
		in.KeyConditionExpression = aws.String("pk = :pk AND sk BETWEEN :lo AND :hi")
		in.ExpressionAttributeValues[":lo"] = sv(r.lo)
		in.ExpressionAttributeValues[":hi"] = sv(r.hi)
	}
	if limit > 0 {
		in.Limit = aws.Int32(int32(limit))
	}
	if cursor != "" {
		in.ExclusiveStartKey = key(r.pk, string(cursor))
	}
	out, err := s.db.Query(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("store: subscribers of %s: %w", pattern, err)
	}
	meter(ctx, "Query", ccOne(out.ConsumedCapacity)...)
	now := s.now()
	subs = make([]Subscription, 0, len(out.Items))
	var unreadable []error
	for _, item := range out.Items {
		if !alive(item, now) {
			continue
		}
		conn, h, hashed := parseEntrySK(getS(item, SortKey))
		if !hashed && r.lo != "" {
			// An entry made before buckets: its sort key is no hash, so a
			// window of hashes may take it by chance. It is read only with
			// its key whole (layout.go).
			continue
		}
		sub := Subscription{
			ConnectionID: conn,
			Hash:         h,
			Pattern:      pattern,
			Envelope:     getBool(item, attrEnvelope),
			ExpiresAt:    time.Unix(getN(item, TTLAttribute), 0),
			Presence:     getBool(item, attrPresence),
		}
		err := decodeAttr(item, attrIdentity, &sub.Identity)
		if _, ok := item[attrFilters]; ok && err == nil {
			err = decodeAttr(item, attrFilters, &sub.Filters)
		}
		if err != nil {
			unreadable = append(unreadable, err)
			continue
		}
		subs = append(subs, sub)
	}
	if out.LastEvaluatedKey != nil {
		next = Cursor(getS(out.LastEvaluatedKey, SortKey))
	}
	return subs, next, errors.Join(unreadable...)
}

// rangeParallel bounds the queries one range read runs at once.
const rangeParallel = 8

// RangeSubscribers reads every live subscriber of pattern, at levels, in
// hash range rg: one query per bucket read (rangeReads), up to
// rangeParallel at once, each paged to its end, strongly consistent. With
// probe > 0 each read stops after one page of at most probe entries (a
// test of whether any are there). Unreadable entries are left out and
// named in an error wrapping ErrUnreadable, returned with the others.
func (s *Store) RangeSubscribers(ctx context.Context, pattern string, levels []int, rg Range, probe int) ([]Subscription, error) {
	reads := rangeReads(pattern, levels, rg)
	results := make([][]Subscription, len(reads))
	errs := make([]error, len(reads))
	sem := make(chan struct{}, rangeParallel)
	var wg sync.WaitGroup
	for i, r := range reads {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var cursor Cursor
			for {
				subs, next, err := s.bucketPage(ctx, pattern, r, cursor, probe)
				results[i] = append(results[i], subs...)
				if err != nil {
					errs[i] = errors.Join(errs[i], err)
					if !errors.Is(err, ErrUnreadable) {
						return
					}
				}
				if next == "" || probe > 0 {
					return
				}
				cursor = next
			}
		}()
	}
	wg.Wait()
	var out []Subscription
	for _, r := range results {
		out = append(out, r...)
	}
	return out, errors.Join(errs...)
}

// forgetIfUnused removes a wildcard pattern's index entry when the pattern
// has no subscriber left. A first read of a few subscribers spares the
// removal's writes while the pattern is in use; ForgetPattern's mark and
// second read keep the race with a new subscriber.
func (s *Store) forgetIfUnused(ctx context.Context, p topic.Pattern) error {
	ref := PatternRef{Pattern: p.String(), Wildcard: true, Prefix: p.LiteralPrefix()}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(prefixWildcard+ref.Prefix, ref.Pattern),
		ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
	})
	if err != nil {
		return fmt.Errorf("store: read index entry %s: %w", ref.Pattern, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil {
		return nil
	}
	ref.Rev = getS(out.Item, attrRev)
	ref.Levels = layoutOf(out.Item).Levels
	// A few entries of each key tell: a live one keeps the pattern.
	used, err := s.inUse(ctx, ref.Pattern, ref.Levels, forgetProbe)
	if err != nil || used {
		return err
	}
	return s.ForgetPattern(ctx, ref)
}

// forgetProbe is how many subscriber entries forgetIfUnused reads.
const forgetProbe = 10

// inUse reports whether a pattern has a subscriber at any of levels,
// reading each of its keys whole (one page of up to probe entries each; 0:
// DynamoDB's page). An unreadable entry counts as one.
func (s *Store) inUse(ctx context.Context, pattern string, levels []int, probe int) (bool, error) {
	subs, err := s.RangeSubscribers(ctx, pattern, levels, Range{}, probe)
	if errors.Is(err, ErrUnreadable) || err == nil && len(subs) > 0 {
		return true, nil
	}
	return false, err
}

// ForgetPattern removes a wildcard index entry found to have no
// subscribers, unless a subscribe rewrote it since it was read: it marks
// the entry (while its rev is ref's), reads the pattern's subscribers
// again, and deletes the entry only when there are none and its mark is
// unchanged (see indexPattern for the race this keeps).
func (s *Store) ForgetPattern(ctx context.Context, ref PatternRef) error {
	if !ref.Wildcard {
		return nil
	}
	k := key(prefixWildcard+ref.Prefix, ref.Pattern)
	mark := sv(randomRev())
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       k,
		UpdateExpression:          aws.String("SET #dying = :mark"),
		ConditionExpression:       aws.String("rev = :rev"),
		ExpressionAttributeNames:  map[string]string{"#dying": attrDying},
		ExpressionAttributeValues: map[string]types.AttributeValue{":rev": sv(ref.Rev), ":mark": mark},
		ReturnValues:              types.ReturnValueAllNew,
		ReturnConsumedCapacity:    total,
	})
	if isConditionFailed(err) {
		meter(ctx, "UpdateItem")
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: forget pattern %s: %w", ref.Pattern, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	// One page of every key of every level the entry lists now: a live
	// subscriber keeps the entry.
	used, err := s.inUse(ctx, ref.Pattern, layoutOf(out.Attributes).Levels, 0)
	if err != nil {
		return fmt.Errorf("store: forget pattern %s: %w", ref.Pattern, err)
	}
	if used {
		return s.unmark(ctx, k, mark)
	}
	del, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
		TableName:                 s.table,
		Key:                       k,
		ConditionExpression:       aws.String("#dying = :mark"),
		ExpressionAttributeNames:  map[string]string{"#dying": attrDying},
		ExpressionAttributeValues: map[string]types.AttributeValue{":mark": mark},
		ReturnConsumedCapacity:    total,
	})
	if isConditionFailed(err) {
		meter(ctx, "DeleteItem")
		return nil // a subscriber rewrote it
	}
	if err != nil {
		return fmt.Errorf("store: forget pattern %s: %w", ref.Pattern, err)
	}
	meter(ctx, "DeleteItem", ccOne(del.ConsumedCapacity)...)
	return nil
}

// unmark takes a removal's mark off an index entry that stays, so the
// next subscribe does not rewrite it (left, it costs that one write).
func (s *Store) unmark(ctx context.Context, k map[string]types.AttributeValue, mark types.AttributeValue) error {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       k,
		UpdateExpression:          aws.String("REMOVE #dying"),
		ConditionExpression:       aws.String("#dying = :mark"),
		ExpressionAttributeNames:  map[string]string{"#dying": attrDying},
		ExpressionAttributeValues: map[string]types.AttributeValue{":mark": mark},
		ReturnConsumedCapacity:    total,
	})
	if isConditionFailed(err) {
		meter(ctx, "UpdateItem")
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: unmark index entry: %w", err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

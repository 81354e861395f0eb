package store

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/auth"
)

// Caps that must hold across every Lambda instance at once are counted in
// the table, in the same transaction as the write they limit:
//
//	N#<key>  #COUNT       n, v: the connections counted under key
//	N#<key>  C#<conn>     one of them: refs {conn: expiry}
//	N#<key>  #WILD        n, v: a principal's distinct wildcard patterns
//	N#<key>  W#<pattern>  one of them: refs {conn: expiry} of the
//	                      principal's connections subscribed to it
//
// key is "p#<hash>" for a principal (principalKey), "ip#<address>" for
// the connections waiting to authenticate from one address, "pending#<i>"
// for a shard of all of those (pending.go), or "anon#<address>" for the anonymous connections open
// from one address.
//
// Taking a place adds a slot and increments n, on the condition that n is
// below the cap; giving it back deletes the slot, on the condition that it
// still exists, and decrements n, so a place is given back once however
// often a disconnect is retried. When $disconnect never comes, the slot
// stays until its holders' expiry (the connection's TTL, or a pending
// connection's auth deadline) and no longer: a taker that finds the cap
// full reclaims the slots whose holders have all expired and recounts n
// from the slots left (reclaim). n never understates the slots, so the cap
// is never exceeded; it may overstate them (a slot DynamoDB's TTL removed)
// only until the next reclaim. The keys are in schema.go's table.

// Tally attribute names.
const (
	attrCount    = "n"
	attrCountRev = "v"
	attrRefs     = "refs"
	attrSlotRev  = "sv"
	// attrHeld lists, on a connection record, the tallies (their pk) the
	// connection holds a place in, for the disconnect to give them back.
	attrHeld = "held"
)

// Expired slots stay readable a while for reclaim to free them; a counter
// outlives the slots it counts.
const (
	slotGrace    = time.Hour
	counterGrace = 24 * time.Hour
	// reclaimBatch is how many expired slots one reclaim removes, with the
	// counter, in one transaction (DynamoDB allows 100 items).
	reclaimBatch = 99
	// takeAttempts bounds the reclaim-and-retry rounds of one admission.
	takeAttempts = 4
)

// Which cap refused a write. Each is an ErrLimit.
var (
	ErrConnectionLimit  = fmt.Errorf("%w: connections per principal", ErrLimit)
	ErrPendingIPLimit   = fmt.Errorf("%w: connections waiting to authenticate from one address", ErrLimit)
	ErrPendingLimit     = fmt.Errorf("%w: connections waiting to authenticate", ErrLimit)
	ErrAnonymousIPLimit = fmt.Errorf("%w: anonymous connections from one address", ErrLimit)
	ErrWildcardLimit    = fmt.Errorf("%w: distinct wildcard patterns per principal", ErrLimit)
)

// tally is one capped count: its counter item and the slots it counts.
type tally struct {
	pk      string
	counter string // the counter's sort key
	slots   string // the slots' sort-key prefix
}

func connTally(pk string) tally { return tally{pk: pk, counter: skConnCount, slots: skConnSlot} }

func wildTally(p auth.Principal) (tally, bool) {
	k, ok := principalKey(p)
	return tally{pk: k, counter: skWildCount, slots: skWildSlot}, ok
}

// principalKey is the partition of a principal's tallies and bans,
// N#p#<SHA-256 of "<ptype>:<sub>", base64url>: bounded whatever the sub (a
// direct topic, the key this used to be, could not be formed for a long
// sub, and such a principal had no caps and could not be revoked). A ptype
// never holds a colon. False for principals that are not counted
// (anonymous ones).
func principalKey(p auth.Principal) (string, bool) {
	if p.Anonymous || p.Sub == "" {
		return "", false
	}
	ptype := p.Type
	if ptype == "" {
		ptype = auth.DefaultPrincipalType
	}
	h := sha256.Sum256([]byte(ptype + ":" + p.Sub))
	return prefixTally + tallyPrincipal + base64.RawURLEncoding.EncodeToString(h[:]), true
}

// claim is a place a write takes in a tally.
type claim struct {
	t     tally
	slot  string    // the slot's name under t.slots
	exp   time.Time // when its holder expires
	limit int       // 0: counted, not capped
	err   error     // the refusal when the cap is full
	// bans are the ban items (sort keys under t.pk) that refuse the take
	// while they hold a time not yet past (see revoke.go).
	bans []string
}

var tallyNames = map[string]string{"#n": attrCount, "#v": attrCountRev, "#ttl": TTLAttribute}

// take is the transaction items that take cl's place for holder: the
// counter (refused when full), then a new slot. The checks of cl's bans
// are not among them (see takePlaces).
func (s *Store) take(cl claim, holder string) []types.TransactWriteItem {
	counter := &types.Update{
		TableName:                s.table,
		Key:                      key(cl.t.pk, cl.t.counter),
		UpdateExpression:         aws.String("SET #n = if_not_exists(#n, :zero) + :one, #v = if_not_exists(#v, :zero) + :one, #ttl = :ttl"),
		ExpressionAttributeNames: tallyNames,
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":zero": nv(0), ":one": nv(1), ":ttl": nv(cl.exp.Add(counterGrace).Unix()),
		},
	}
	var cond []string
	if cl.limit > 0 {
		cond = append(cond, "(attribute_not_exists(#n) OR #n < :cap)")
		counter.ExpressionAttributeValues[":cap"] = nv(int64(cl.limit))
	}
	if len(cond) > 0 {
		counter.ConditionExpression = aws.String(strings.Join(cond, " AND "))
	}
	slot := key(cl.t.pk, cl.t.slots+cl.slot)
	slot[attrRefs] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{holder: nv(cl.exp.UnixMilli())}}
	slot[attrSlotRev] = sv(randomRev())
	slot[TTLAttribute] = nv(cl.exp.Add(slotGrace).Unix())
	return []types.TransactWriteItem{
		{Update: counter},
		{Put: &types.Put{TableName: s.table, Item: slot, ConditionExpression: aws.String("attribute_not_exists(pk)")}},
	}
}

// give is the transaction items that give a slot's place back: the slot,
// on the condition that it still exists (or, with rev, is unchanged), then
// the counter.
func (s *Store) give(t tally, slot, rev string) []types.TransactWriteItem {
	del := &types.Delete{TableName: s.table, Key: key(t.pk, t.slots+slot), ConditionExpression: aws.String("attribute_exists(pk)")}
	if rev != "" {
		del.ConditionExpression = aws.String("#sv = :sv")
		del.ExpressionAttributeNames = map[string]string{"#sv": attrSlotRev}
		del.ExpressionAttributeValues = map[string]types.AttributeValue{":sv": sv(rev)}
	}
	return []types.TransactWriteItem{{Delete: del}, {Update: &types.Update{
		TableName:                s.table,
		Key:                      key(t.pk, t.counter),
		UpdateExpression:         aws.String("SET #n = if_not_exists(#n, :one) - :one, #v = if_not_exists(#v, :zero) + :one, #ttl = if_not_exists(#ttl, :ttl)"),
		ExpressionAttributeNames: tallyNames,
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":zero": nv(0), ":one": nv(1), ":ttl": nv(s.now().Add(counterGrace).Unix()),
		},
	}}}
}

// heldSlot is a connection's place in a connection tally.
type heldSlot struct {
	t    tally
	slot string
}

// transactGiving runs items and gives back each of gives, in one
// transaction. A give whose slot is already gone (reclaimed once it
// expired, or given back by a concurrent disconnect) is left out and the
// rest tried again, so a place is given back exactly once. It returns how
// many places it gave back; any other refusal is returned as is, its
// reasons indexing items first.
func (s *Store) transactGiving(ctx context.Context, items []types.TransactWriteItem, gives []heldSlot) (int, error) {
	for {
		all := append([]types.TransactWriteItem(nil), items...)
		for _, g := range gives {
			all = append(all, s.give(g.t, g.slot, "")...)
		}
		err := s.transact(ctx, all)
		if err == nil {
			return len(gives), nil
		}
		reasons, ok := cancelReasons(err)
		if !ok {
			return 0, err
		}
		var kept []heldSlot
		for i, g := range gives {
			if !reasonIs(reasons, len(items)+2*i, "ConditionalCheckFailed") {
				kept = append(kept, g)
			}
		}
		if len(kept) == len(gives) {
			return 0, err
		}
		gives = kept
	}
}

// liveRefs reports whether any holder of a slot has not expired.
func liveRefs(item map[string]types.AttributeValue, now time.Time) bool {
	refs, _ := item[attrRefs].(*types.AttributeValueMemberM)
	if refs == nil {
		return false
	}
	for _, v := range refs.Value {
		if n, ok := v.(*types.AttributeValueMemberN); ok {
			if ms, err := strconv.ParseInt(n.Value, 10, 64); err == nil && ms > now.UnixMilli() {
				return true
			}
		}
	}
	return false
}

// reclaim frees the places of t's slots whose holders have all expired
// (their $disconnect never came) and sets the count to the slots left,
// unless the tally changed meanwhile. It reports whether the count went
// down, or the tally changed: either way a refused take may try again.
func (s *Store) reclaim(ctx context.Context, t tally) (bool, error) {
	now := s.now()
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(t.pk, t.counter), ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
	})
	if err != nil {
		return false, fmt.Errorf("store: read count %s: %w", t.pk, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil {
		return false, nil
	}
	// The counter is read before the slots: a slot taken or given back
	// after this read changes v, and the write below is refused.
	n, v := getN(out.Item, attrCount), getN(out.Item, attrCountRev)
	var dead []types.TransactWriteItem
	slots := 0
	err = s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :s)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(t.pk), ":s": sv(t.slots)},
		ConsistentRead:            aws.Bool(true),
	}, func(item map[string]types.AttributeValue) {
		slots++
		if liveRefs(item, now) || len(dead) >= reclaimBatch {
			return
		}
		dead = append(dead, types.TransactWriteItem{Delete: &types.Delete{
			TableName: s.table, Key: key(t.pk, getS(item, SortKey)),
			// A holder that joined since this read changed sv.
			ConditionExpression:       aws.String("#sv = :sv"),
			ExpressionAttributeNames:  map[string]string{"#sv": attrSlotRev},
			ExpressionAttributeValues: map[string]types.AttributeValue{":sv": sv(getS(item, attrSlotRev))},
		}})
	})
	if err != nil {
		return false, fmt.Errorf("store: read slots %s: %w", t.pk, err)
	}
	left := int64(slots - len(dead))
	if left >= n {
		return false, nil
	}
	err = s.transact(ctx, append([]types.TransactWriteItem{{Update: &types.Update{
		TableName:                 s.table,
		Key:                       key(t.pk, t.counter),
		UpdateExpression:          aws.String("SET #n = :n, #v = #v + :one"),
		ConditionExpression:       aws.String("#v = :v"),
		ExpressionAttributeNames:  map[string]string{"#n": attrCount, "#v": attrCountRev},
		ExpressionAttributeValues: map[string]types.AttributeValue{":n": nv(left), ":v": nv(v), ":one": nv(1)},
	}}}, dead...))
	if _, cancelled := cancelReasons(err); err != nil && !cancelled {
		return false, fmt.Errorf("store: reclaim %s: %w", t.pk, err)
	}
	return true, nil
}

// fullClaim returns the index of the claim whose counter refused a
// transaction holding claims' takes from item first on, or -1.
func fullClaim(reasons []types.CancellationReason, claims []claim, first int) int {
	for i := range claims {
		if reasonIs(reasons, first+2*i, "ConditionalCheckFailed") {
			return i
		}
	}
	return -1
}

// countLive counts the slots of t with a live holder.
func (s *Store) countLive(ctx context.Context, t tally) (int, error) {
	now := s.now()
	n := 0
	err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :s)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(t.pk), ":s": sv(t.slots)},
		ProjectionExpression:      aws.String(attrRefs),
		ConsistentRead:            aws.Bool(true), // a connection made a moment ago counts
	}, func(item map[string]types.AttributeValue) {
		if liveRefs(item, now) {
			n++
		}
	})
	if err != nil {
		return 0, fmt.Errorf("store: count %s: %w", t.pk, err)
	}
	return n, nil
}

// holdPattern counts a wildcard pattern among its principal's distinct
// ones, held by conn until cl.exp: a pattern the principal holds already
// (on any connection) gains a holder, a new one takes a place. added
// reports whether conn did not hold it yet, so a failed subscribe knows to
// let go.
func (s *Store) holdPattern(ctx context.Context, cl claim, conn string) (bool, error) {
	for attempt := 0; attempt < takeAttempts; attempt++ {
		out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                s.table,
			Key:                      key(cl.t.pk, cl.t.slots+cl.slot),
			UpdateExpression:         aws.String("SET #refs.#h = :exp, #sv = :sv, #ttl = :ttl"),
			ConditionExpression:      aws.String("attribute_exists(pk)"),
			ExpressionAttributeNames: map[string]string{"#refs": attrRefs, "#h": conn, "#sv": attrSlotRev, "#ttl": TTLAttribute},
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":exp": nv(cl.exp.UnixMilli()), ":sv": sv(randomRev()), ":ttl": nv(cl.exp.Add(slotGrace).Unix()),
			},
			ReturnValues:           types.ReturnValueAllOld,
			ReturnConsumedCapacity: total,
		})
		if err == nil {
			meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
			refs, _ := out.Attributes[attrRefs].(*types.AttributeValueMemberM)
			if refs == nil {
				return true, nil
			}
			_, had := refs.Value[conn]
			return !had, nil
		}
		if !isConditionFailed(err) {
			return false, fmt.Errorf("store: hold pattern %s: %w", cl.slot, err)
		}
		meter(ctx, "UpdateItem")
		err = s.transact(ctx, s.take(cl, conn))
		if err == nil {
			return true, nil
		}
		reasons, ok := cancelReasons(err)
		switch {
		case ok && reasonIs(reasons, 1, "ConditionalCheckFailed"):
			// Another connection of the principal took it just now: hold it.
		case ok && reasonIs(reasons, 0, "ConditionalCheckFailed"):
			freed, err := s.reclaim(ctx, cl.t)
			if err != nil {
				return false, err
			}
			if !freed {
				return false, cl.err
			}
		default:
			return false, fmt.Errorf("store: hold pattern %s: %w", cl.slot, err)
		}
	}
	return false, fmt.Errorf("store: hold pattern %s: contention did not settle", cl.slot)
}

// heldCheck is the transaction item that refuses a subscription unless
// conn holds the wildcard pattern, so a subscription is never left without
// its hold by a release running at the same time.
func (s *Store) heldCheck(t tally, pattern, conn string) types.TransactWriteItem {
	return types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
		TableName:                s.table,
		Key:                      key(t.pk, t.slots+pattern),
		ConditionExpression:      aws.String("attribute_exists(#refs.#h)"),
		ExpressionAttributeNames: map[string]string{"#refs": attrRefs, "#h": conn},
	}}
}

// releasePattern lets conn go of a wildcard pattern, unless conn is
// subscribed to it (again). The principal's place for the pattern is given
// back when no live holder is left, unless a holder joined meanwhile
// (joining changes the slot's rev).
func (s *Store) releasePattern(ctx context.Context, t tally, pattern, conn string) error {
	slotKey := key(t.pk, t.slots+pattern)
	err := s.transact(ctx, []types.TransactWriteItem{{Update: &types.Update{
		TableName:                 s.table,
		Key:                       slotKey,
		UpdateExpression:          aws.String("REMOVE #refs.#h SET #sv = :sv"),
		ConditionExpression:       aws.String("attribute_exists(#refs.#h)"),
		ExpressionAttributeNames:  map[string]string{"#refs": attrRefs, "#h": conn, "#sv": attrSlotRev},
		ExpressionAttributeValues: map[string]types.AttributeValue{":sv": sv(randomRev())},
	}}, {ConditionCheck: &types.ConditionCheck{
		TableName:           s.table,
		Key:                 key(connPK(conn), skSubPrefix+pattern),
		ConditionExpression: aws.String("attribute_not_exists(pk)"),
	}}})
	if reasons, ok := cancelReasons(err); ok && (reasonIs(reasons, 0, "ConditionalCheckFailed") || reasonIs(reasons, 1, "ConditionalCheckFailed")) {
		return nil // not held (a subscription the token made, or let go already), or subscribed again
	}
	if err != nil {
		return fmt.Errorf("store: release pattern %s: %w", pattern, err)
	}
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: s.table, Key: slotKey, ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total})
	if err != nil {
		return fmt.Errorf("store: release pattern %s: %w", pattern, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil || liveRefs(out.Item, s.now()) {
		return nil
	}
	err = s.transact(ctx, s.give(t, pattern, getS(out.Item, attrSlotRev)))
	if reasons, ok := cancelReasons(err); ok && reasonIs(reasons, 0, "ConditionalCheckFailed") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: release pattern %s: %w", pattern, err)
	}
	return nil
}

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/topic"
)

// Connection is one WebSocket connection's record.
type Connection struct {
	ID        string
	Principal auth.Principal
	// Scope is the topic a scoped (?topic=) connection is bound to.
	Scope    string
	Envelope bool
	// Pending connections wait for an auth message until AuthDeadline.
	Pending       bool
	AuthDeadline  time.Time
	ConnectedAt   time.Time
	ExpiresAt     time.Time
	Subscriptions int
	Limits        config.Limits
	SourceIP      string
	// TokenExpires is when the token the connection authenticated with
	// (or last refreshed) expires; the connection closes then. Zero for
	// connections without a token.
	TokenExpires time.Time
	// MaxPendingPerIP and MaxPending cap the pending connections
	// PutConnection admits, from SourceIP and in all (0: no cap). They are
	// admission settings, not stored.
	MaxPendingPerIP int
	MaxPending      int
	// MaxAnonymousPerIP caps the anonymous connections (admitted without
	// a token, not pending) PutConnection admits from SourceIP (0: no
	// cap). An admission setting, not stored.
	MaxAnonymousPerIP int
}

// PushOnly reports whether the connection ignores client commands other
// than ping and request_current_state.
func (c Connection) PushOnly() bool {
	return c.Scope != "" || c.Principal.Mode == auth.ModePush
}

// Connection attribute names.
const (
	attrPrincipal = "p"
	attrScope     = "scope"
	attrEnvelope  = "env"
	attrPending   = "pend"
	attrAt        = "at"
	attrSubs      = "ns"
	attrRateWin   = "rlw"
	attrRateCount = "rlc"
	attrRateMax   = "rlm"
	attrMaxBytes  = "mb"
	attrMaxSubs   = "ms"
	attrMaxConns  = "mc"
	attrMaxWild   = "mw"
	attrIP        = "ip"
	attrLast      = "la"
	// attrTokenExp is when the connection's token expires (ms).
	attrTokenExp = "texp"
)

func connPK(id string) string { return prefixConn + id }

// claims are the places a new connection takes: among the pending ones
// (from its address, and in all) while it waits to authenticate, among the
// anonymous ones from its address, or among its principal's connections.
func (c Connection) claims() []claim { return c.claimsAt(0) }

// claimsAt are claims with the place among all pending connections taken
// in the probe'th shard tried for the connection (see pendingShard).
func (c Connection) claimsAt(probe int) []claim {
	if c.Pending {
		var out []claim
		if c.SourceIP != "" && c.MaxPendingPerIP > 0 {
			out = append(out, claim{t: connTally(prefixTally + tallyIP + c.SourceIP), slot: c.ID, exp: c.AuthDeadline, limit: c.MaxPendingPerIP, err: ErrPendingIPLimit})
		}
		if c.MaxPending > 0 {
			shard, limit := pendingShard(c.ID, c.MaxPending, probe)
			out = append(out, claim{t: connTally(shard), slot: c.ID, exp: c.AuthDeadline, limit: limit, err: ErrPendingLimit})
		}
		return out
	}
	if c.Principal.Anonymous {
		if c.SourceIP != "" && c.MaxAnonymousPerIP > 0 {
			return []claim{{t: connTally(prefixTally + tallyAnonIP + c.SourceIP), slot: c.ID, exp: c.ExpiresAt, limit: c.MaxAnonymousPerIP, err: ErrAnonymousIPLimit}}
		}
		return nil
	}
	if pk, ok := principalKey(c.Principal); ok {
		return []claim{{t: connTally(pk), slot: c.ID, exp: c.ExpiresAt, limit: c.Limits.MaxConnectionsPerPrincipal, err: ErrConnectionLimit, bans: bansOf(c.Principal)}}
	}
	return nil
}

// heldAttr lists the tallies of claims, for the record.
func heldAttr(claims []claim) types.AttributeValue {
	held := make([]string, len(claims))
	for i, cl := range claims {
		held[i] = cl.t.pk
	}
	return &types.AttributeValueMemberSS{Value: held}
}

// heldSlots are the places a connection record says it holds.
func heldSlots(item map[string]types.AttributeValue, id string) []heldSlot {
	ss, _ := item[attrHeld].(*types.AttributeValueMemberSS)
	if ss == nil {
		return nil
	}
	out := make([]heldSlot, len(ss.Value))
	for i, pk := range ss.Value {
		out[i] = heldSlot{t: connTally(pk), slot: id}
	}
	return out
}

func (c Connection) item() (map[string]types.AttributeValue, error) {
	p, err := json.Marshal(c.Principal)
	if err != nil {
		return nil, fmt.Errorf("store: encode principal: %w", err)
	}
	it := key(connPK(c.ID), skMeta)
	it[attrPrincipal] = sv(string(p))
	it[attrEnvelope] = bv(c.Envelope)
	it[attrAt] = nv(c.ConnectedAt.UnixMilli())
	it[TTLAttribute] = nv(c.ExpiresAt.Unix())
	it[attrSubs] = nv(int64(c.Subscriptions))
	it[attrRateWin] = nv(0)
	it[attrRateCount] = nv(0)
	it[attrRateMax] = nv(int64(c.Limits.MessagesPerSecond))
	it[attrMaxBytes] = nv(int64(c.Limits.MaxMessageBytes))
	it[attrMaxSubs] = nv(int64(c.Limits.MaxSubscriptions))
	it[attrMaxConns] = nv(int64(c.Limits.MaxConnectionsPerPrincipal))
	it[attrMaxWild] = nv(int64(c.Limits.MaxWildcards))
	if claims := c.claims(); len(claims) > 0 {
		it[attrHeld] = heldAttr(claims)
	}
	if c.Scope != "" {
		it[attrScope] = sv(c.Scope)
	}
	if c.Pending {
		it[attrPending] = nv(c.AuthDeadline.UnixMilli())
	}
	if c.SourceIP != "" {
		it[attrIP] = sv(c.SourceIP)
	}
	if !c.TokenExpires.IsZero() {
		it[attrTokenExp] = nv(c.TokenExpires.UnixMilli())
	}
	return it, nil
}

func connectionFrom(item map[string]types.AttributeValue) (Connection, error) {
	c := Connection{
		ID:            getS(item, PartitionKey)[len(prefixConn):],
		Scope:         getS(item, attrScope),
		Envelope:      getBool(item, attrEnvelope),
		ConnectedAt:   time.UnixMilli(getN(item, attrAt)),
		ExpiresAt:     time.Unix(getN(item, TTLAttribute), 0),
		Subscriptions: int(getN(item, attrSubs)),
		SourceIP:      getS(item, attrIP),
		Limits: config.Limits{
			MessagesPerSecond:          int(getN(item, attrRateMax)),
			MaxMessageBytes:            int(getN(item, attrMaxBytes)),
			MaxSubscriptions:           int(getN(item, attrMaxSubs)),
			MaxConnectionsPerPrincipal: int(getN(item, attrMaxConns)),
			MaxWildcards:               int(getN(item, attrMaxWild)),
		},
	}
	if ms := getN(item, attrTokenExp); ms != 0 {
		c.TokenExpires = time.UnixMilli(ms)
	}
	if _, ok := item[attrPending]; ok {
		c.Pending = true
		c.AuthDeadline = time.UnixMilli(getN(item, attrPending))
	}
	if err := decodeAttr(item, attrPrincipal, &c.Principal); err != nil {
		return Connection{}, err
	}
	return c, nil
}

// PutConnection stores a new connection and its initial subscriptions,
// taking its places in the caps it is counted against (see claims) in the
// same transaction as the record. A full cap is first reclaimed of places
// whose holders expired, then refused with ErrConnectionLimit,
// ErrPendingIPLimit, ErrPendingLimit or ErrAnonymousIPLimit, writing
// nothing. Subscriptions
// counts the subscriptions; they are written after the record, so a
// failure part-way leaves only items that expire with the connection's TTL.
func (s *Store) PutConnection(ctx context.Context, c Connection, subs []NewSubscription) error {
	c.Subscriptions = len(subs)
	item, err := c.item()
	if err != nil {
		return err
	}
	probes := 1
	if c.Pending && c.MaxPending > 0 {
		probes = min(pendingProbes, pendingShards(c.MaxPending))
	}
	for probe := 0; ; probe++ {
		claims := c.claimsAt(probe)
		if len(claims) > 0 {
			item[attrHeld] = heldAttr(claims)
		}
		err = s.admit(ctx, c.ID, item, claims)
		// A full shard of the pending cap: try the next one, so the cap
		// refuses only when the shards tried are all full.
		if !errors.Is(err, ErrPendingLimit) || probe+1 >= probes {
			break
		}
	}
	if err != nil {
		return err
	}
	return s.putSubscriptions(ctx, c, subs)
}

// admit writes a new connection record with its places in claims.
func (s *Store) admit(ctx context.Context, id string, item map[string]types.AttributeValue, claims []claim) error {
	cond := aws.String("attribute_not_exists(pk)")
	if len(claims) == 0 {
		out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table, Item: item, ConditionExpression: cond, ReturnConsumedCapacity: total})
		if err != nil {
			return fmt.Errorf("store: put connection %s: %w", id, err)
		}
		meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
		return nil
	}
	err := s.takePlaces(ctx, id, types.TransactWriteItem{Put: &types.Put{TableName: s.table, Item: item, ConditionExpression: cond}}, claims, nil)
	switch reasons, _ := cancelReasons(err); {
	case err == nil || errors.Is(err, ErrLimit) || errors.Is(err, ErrRevoked):
		return err
	case reasonIs(reasons, 0, "ConditionalCheckFailed"):
		return fmt.Errorf("store: put connection %s: the id exists", id)
	}
	return fmt.Errorf("store: put connection %s: %w", id, err)
}

// takePlaces runs first, the takes of claims and the gives as one
// transaction. A full cap is reclaimed of expired places and tried again,
// then refused with its claim's error; any other refusal is returned as is
// (its reasons index first at 0).
func (s *Store) takePlaces(ctx context.Context, id string, first types.TransactWriteItem, claims []claim, gives []heldSlot) error {
	// freedBefore: the last round's reclaim found places to free, or it is
	// the first round. A reclaim that finds nothing may have been beaten to
	// the expired places by a concurrent connect, whose deletes lowered the
	// count: the take is tried once more before a refusal.
	freedBefore := true
	for attempt := 0; attempt < takeAttempts; attempt++ {
		items := []types.TransactWriteItem{first}
		for _, cl := range claims {
			items = append(items, s.take(cl, id)...)
		}
		// The ban checks follow the takes, so fullClaim finds each take at
		// 1+2i.
		checked := len(items)
		for _, cl := range claims {
			items = append(items, s.banChecks(cl.t.pk, cl.bans)...)
		}
		_, err := s.transactGiving(ctx, items, gives)
		reasons, _ := cancelReasons(err)
		if anyFailed(reasons, checked, len(items)-checked) {
			return ErrRevoked
		}
		full := fullClaim(reasons, claims, 1)
		if full < 0 {
			return err
		}
		freed, err := s.reclaim(ctx, claims[full].t)
		if err != nil {
			return err
		}
		if !freed && !freedBefore {
			return claims[full].err
		}
		freedBefore = freed
	}
	return errors.New("contention did not settle")
}

func (s *Store) putSubscriptions(ctx context.Context, c Connection, subs []NewSubscription) error {
	var reqs []types.WriteRequest
	at := make([]placement, len(subs))
	for i, sub := range subs {
		at[i] = s.place(ctx, sub.Pattern, c.ID)
		for _, it := range s.subscriptionItems(c, sub, at[i]) {
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: it}})
		}
	}
	if err := s.batchWrite(ctx, reqs); err != nil {
		return err
	}
	// After the subscriptions, as Subscribe does (indexPattern).
	for i, sub := range subs {
		if sub.Pattern.HasWildcard() {
			if err := s.indexPattern(ctx, sub.Pattern, at[i].level); err != nil {
				return err
			}
		}
		s.countSubscribe(ctx, sub.Pattern, at[i])
	}
	return nil
}

// GetConnection reads a connection record.
func (s *Store) GetConnection(ctx context.Context, id string) (Connection, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(connPK(id), skMeta), ConsistentRead: aws.Bool(true),
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		return Connection{}, fmt.Errorf("store: get connection %s: %w", id, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil || !alive(out.Item, s.now()) {
		return Connection{}, ErrNotFound
	}
	return connectionFrom(out.Item)
}

// CountCommands counts a frame's n client commands against the
// connection's rate limit (a fixed one-second window kept in the record, so
// the limit holds across every Lambda instance) and returns the record and
// how many of the n fit: the first ones, in order, up to what the window
// has left; the caller refuses the rest. All n are counted, so a frame
// that found the window nearly full leaves it full. It returns
// ErrRateLimited, with the record, when the window is full (none fit), and
// ErrNotFound for an unknown or expired connection. One write in the
// common case. at is when the frame arrived: its second is the window it
// counts in.
func (s *Store) CountCommands(ctx context.Context, id string, at time.Time, n int) (Connection, int, error) {
	n = max(n, 1)
	now := at
	win := now.Unix()
	for attempt := 0; attempt < 4; attempt++ {
		// DynamoDB conditions cannot add, so the condition is only that
		// the window is not full yet; what fits is worked out from the
		// count before this frame's.
		out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                           s.table,
			Key:                                 key(connPK(id), skMeta),
			UpdateExpression:                    aws.String("SET rlc = rlc + :n, la = :now"),
			ConditionExpression:                 aws.String("attribute_exists(pk) AND rlw = :win AND rlc < rlm AND #ttl > :nows"),
			ExpressionAttributeNames:            map[string]string{"#ttl": TTLAttribute},
			ExpressionAttributeValues:           map[string]types.AttributeValue{":n": nv(int64(n)), ":now": nv(now.UnixMilli()), ":win": nv(win), ":nows": nv(now.Unix())},
			ReturnValues:                        types.ReturnValueAllNew,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			ReturnConsumedCapacity:              total,
		})
		if err == nil {
			meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
			before := getN(out.Attributes, attrRateCount) - int64(n)
			c, err := connectionFrom(out.Attributes)
			return c, fits(n, getN(out.Attributes, attrRateMax)-before), err
		}
		var ccf *types.ConditionalCheckFailedException
		if !asCCF(err, &ccf) {
			return Connection{}, 0, fmt.Errorf("store: count commands of %s: %w", id, err)
		}
		meter(ctx, "UpdateItem")
		old := ccf.Item
		if old == nil || !alive(old, now) {
			return Connection{}, 0, ErrNotFound
		}
		switch stored := getN(old, attrRateWin); {
		case stored == win:
			c, err := connectionFrom(old)
			if err != nil {
				return Connection{}, 0, err
			}
			return c, 0, ErrRateLimited
		case stored > win:
			// A frame that arrived later already opened the next window
			// (frames of one connection run at once, in any order): count
			// this one there.
			win = stored
			continue
		}
		// A new window: reset the counter, unless another instance just did.
		out, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 s.table,
			Key:                       key(connPK(id), skMeta),
			UpdateExpression:          aws.String("SET rlw = :win, rlc = :n, la = :now"),
			ConditionExpression:       aws.String("attribute_exists(pk) AND rlw < :win"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":n": nv(int64(n)), ":now": nv(now.UnixMilli()), ":win": nv(win)},
			ReturnValues:              types.ReturnValueAllNew,
			ReturnConsumedCapacity:    total,
		})
		if err == nil {
			meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
			c, err := connectionFrom(out.Attributes)
			// The first frame of a window always runs a command, as it
			// did when every frame counted one.
			return c, fits(n, max(getN(out.Attributes, attrRateMax), 1)), err
		}
		if !isConditionFailed(err) {
			return Connection{}, 0, fmt.Errorf("store: count commands of %s: %w", id, err)
		}
	}
	return Connection{}, 0, fmt.Errorf("store: count commands of %s: contention did not settle", id)
}

// ChargeCommands adds n units to the connection's rate-limit window for
// work a frame did whose size was known only once it ran (a register
// narrowed to many patterns, an unsubscribe of every covered one): the
// window of at's second, or a later one a frame opened already, which then
// carries it. Nothing happens when the connection is gone.
func (s *Store) ChargeCommands(ctx context.Context, id string, at time.Time, n int) error {
	if n <= 0 {
		return nil
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(connPK(id), skMeta),
		UpdateExpression:          aws.String("SET rlc = rlc + :n"),
		ConditionExpression:       aws.String("attribute_exists(pk) AND rlw >= :win"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":n": nv(int64(n)), ":win": nv(at.Unix())},
		ReturnConsumedCapacity:    total,
	})
	if isConditionFailed(err) {
		meter(ctx, "UpdateItem")
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: charge commands of %s: %w", id, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

// fits is how many of n commands a window with left places takes.
func fits(n int, left int64) int {
	return int(max(0, min(int64(n), left)))
}

func asCCF(err error, target **types.ConditionalCheckFailedException) bool {
	return errors.As(err, target)
}

// Authenticate turns a pending connection into an authenticated one and
// adds its initial subscriptions: in one transaction the connection gives
// back its places among the pending ones and takes one among its
// principal's connections. ErrExpired when the deadline has passed,
// ErrNotFound when the connection is gone or was not pending,
// ErrConnectionLimit when the principal has as many connections as it may.
func (s *Store) Authenticate(ctx context.Context, c Connection, subs []NewSubscription) error {
	now := s.now()
	rec, err := s.pendingRecord(ctx, c.ID, now)
	if err != nil {
		return err
	}
	// The record knows the connection's expiry and the places it holds.
	c.Pending = false
	c.ExpiresAt = time.Unix(getN(rec, TTLAttribute), 0)
	p, err := json.Marshal(c.Principal)
	if err != nil {
		return fmt.Errorf("store: encode principal: %w", err)
	}
	update := &types.Update{
		TableName:           s.table,
		Key:                 key(connPK(c.ID), skMeta),
		UpdateExpression:    aws.String("SET p = :p, ns = :ns, rlm = :rlm, mb = :mb, ms = :ms, mc = :mc, mw = :mw, texp = :texp REMOVE pend, held"),
		ConditionExpression: aws.String("attribute_exists(pend) AND pend >= :now"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":p": sv(string(p)), ":ns": nv(int64(len(subs))), ":now": nv(now.UnixMilli()), ":texp": nv(c.TokenExpires.UnixMilli()),
			":rlm": nv(int64(c.Limits.MessagesPerSecond)), ":mb": nv(int64(c.Limits.MaxMessageBytes)),
			":ms": nv(int64(c.Limits.MaxSubscriptions)), ":mc": nv(int64(c.Limits.MaxConnectionsPerPrincipal)),
			":mw": nv(int64(c.Limits.MaxWildcards)),
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
	claims := c.claims()
	if len(claims) > 0 {
		update.UpdateExpression = aws.String("SET p = :p, ns = :ns, rlm = :rlm, mb = :mb, ms = :ms, mc = :mc, mw = :mw, texp = :texp, held = :held REMOVE pend")
		update.ExpressionAttributeValues[":held"] = heldAttr(claims)
	}
	if err := s.promote(ctx, c.ID, update, claims, heldSlots(rec, c.ID)); err != nil {
		return err
	}
	return s.putSubscriptions(ctx, c, subs)
}

// pendingRecord reads a connection that is still waiting to authenticate.
func (s *Store) pendingRecord(ctx context.Context, id string, now time.Time) (map[string]types.AttributeValue, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(connPK(id), skMeta), ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
	})
	if err != nil {
		return nil, fmt.Errorf("store: authenticate %s: %w", id, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	switch {
	case out.Item == nil || getN(out.Item, attrPending) == 0:
		return nil, ErrNotFound
	case getN(out.Item, attrPending) < now.UnixMilli():
		return nil, ErrExpired
	}
	return out.Item, nil
}

// promote applies a pending record's update, taking claims' places and
// giving back the pending ones, in one transaction.
func (s *Store) promote(ctx context.Context, id string, update *types.Update, claims []claim, pending []heldSlot) error {
	err := s.takePlaces(ctx, id, types.TransactWriteItem{Update: update}, claims, pending)
	switch reasons, _ := cancelReasons(err); {
	case err == nil || errors.Is(err, ErrLimit) || errors.Is(err, ErrRevoked):
		return err
	case reasonIs(reasons, 0, "ConditionalCheckFailed"):
		if old := reasons[0].Item; old != nil && getN(old, attrPending) != 0 {
			return ErrExpired
		}
		return ErrNotFound
	}
	return fmt.Errorf("store: authenticate %s: %w", id, err)
}

// DeleteConnection removes a connection's record and every subscription
// (both entries), gives back the places it holds in caps, and lets go of
// its wildcard patterns (removing their index entries when nobody else
// subscribes). It is idempotent, gives each place back once however often
// it runs, and returns how many of the connection's items it removed.
func (s *Store) DeleteConnection(ctx context.Context, id string) (int, error) {
	var meta map[string]types.AttributeValue
	var reqs []types.WriteRequest
	var wild []topic.Pattern
	del := func(pk, sk string) {
		reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: key(pk, sk)}})
	}
	err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(connPK(id))},
		ProjectionExpression:      aws.String("pk, sk, #p, #held, #fpk"),
		ExpressionAttributeNames:  map[string]string{"#p": attrPrincipal, "#held": attrHeld, "#fpk": attrEntryPK},
		ConsistentRead:            aws.Bool(true),
	}, func(item map[string]types.AttributeValue) {
		sk := getS(item, SortKey)
		if sk == skMeta {
			meta = item
			return
		}
		if pat, ok := strings.CutPrefix(sk, skSubPrefix); ok && pat != "" {
			k := entryKey(item, pat, id)
			reqs = append(reqs, types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}})
			if p, err := topic.ParsePattern(pat); err == nil && p.HasWildcard() {
				wild = append(wild, p)
			}
		}
		del(connPK(id), sk)
	})
	if err != nil {
		return 0, fmt.Errorf("store: delete connection %s: %w", id, err)
	}
	// The subscriptions first, the record last: a record gone means its
	// subscriptions are gone, and a delete cut short is finished by the
	// next one (a 410, or the TTL), which finds the record still there.
	n := 0
	if len(reqs) > 0 {
		if err := s.batchWrite(ctx, reqs); err != nil {
			return n, fmt.Errorf("store: delete connection %s: %w", id, err)
		}
		n += len(reqs)
	}
	if meta != nil {
		removed, err := s.deleteRecord(ctx, id, meta)
		if err != nil {
			return n, err
		}
		n += removed
	}
	// An unreadable principal cannot name the tally its wildcard holds are
	// in: those expire with their TTL; the index entries still go.
	p, perr := principalOf(meta)
	return n, errors.Join(perr, s.letGo(ctx, id, p, wild))
}

// deleteRecord deletes a connection record with the places it holds, once:
// a concurrent or repeated delete finds the record gone and gives nothing
// back. It returns the items removed.
func (s *Store) deleteRecord(ctx context.Context, id string, meta map[string]types.AttributeValue) (int, error) {
	held := heldSlots(meta, id)
	if len(held) == 0 {
		// Nothing to give back: a plain delete costs half a transaction.
		out, err := s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: s.table, Key: key(connPK(id), skMeta), ReturnConsumedCapacity: total})
		if err != nil {
			return 0, fmt.Errorf("store: delete connection %s: %w", id, err)
		}
		meter(ctx, "DeleteItem", ccOne(out.ConsumedCapacity)...)
		return 1, nil
	}
	given, err := s.transactGiving(ctx, []types.TransactWriteItem{{Delete: &types.Delete{
		TableName: s.table, Key: key(connPK(id), skMeta), ConditionExpression: aws.String("attribute_exists(pk)"),
	}}}, held)
	if reasons, ok := cancelReasons(err); ok && reasonIs(reasons, 0, "ConditionalCheckFailed") {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: delete connection %s: %w", id, err)
	}
	return 1 + given, nil
}

// principalOf reads the principal of a connection record: zero when there
// is no record or it holds none, an error wrapping ErrUnreadable when it
// does not decode.
func principalOf(meta map[string]types.AttributeValue) (auth.Principal, error) {
	var p auth.Principal
	if _, ok := meta[attrPrincipal]; !ok {
		return p, nil
	}
	if err := decodeAttr(meta, attrPrincipal, &p); err != nil {
		return auth.Principal{}, err
	}
	return p, nil
}

// letGo releases a connection's wildcard patterns after their
// subscriptions are gone: its hold on each among the principal's distinct
// patterns, and each index entry nobody else needs.
func (s *Store) letGo(ctx context.Context, id string, p auth.Principal, patterns []topic.Pattern) error {
	t, counted := wildTally(p)
	errs := make([]error, len(patterns))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, pat := range patterns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if counted {
				errs[i] = s.releasePattern(ctx, t, pat.String(), id)
			}
			errs[i] = errors.Join(errs[i], s.forgetIfUnused(ctx, pat))
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// CountConnections counts the live connections of a principal (its own
// connections only: a principal that subscribes to someone's direct topic
// does not count as them).
func (s *Store) CountConnections(ctx context.Context, id auth.Identity) (int, error) {
	pk, ok := principalKey(auth.Principal{Identity: id})
	if !ok {
		return 0, errors.New("store: count connections: an anonymous principal is not counted")
	}
	return s.countLive(ctx, connTally(pk))
}

// queryAll runs a query to its end, calling fn for each item.
func (s *Store) queryAll(ctx context.Context, in *dynamodb.QueryInput, fn func(map[string]types.AttributeValue)) error {
	in.ReturnConsumedCapacity = total
	for {
		out, err := s.db.Query(ctx, in)
		if err != nil {
			return err
		}
		meter(ctx, "Query", ccOne(out.ConsumedCapacity)...)
		for _, it := range out.Items {
			fn(it)
		}
		if out.LastEvaluatedKey == nil {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

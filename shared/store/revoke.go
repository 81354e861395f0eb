package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/auth"
)

// A backend revokes a principal, or one of its tokens, until a time. Each
// revocation is an item of its own in the principal's tally partition
// (N#<principal>, see tally.go), next to the connection counter and slots:
//
//	#BAN          until: when every connection of the principal is refused (ms)
//	#BAN#<jti>    until: when connections with that token id are refused (ms)
//
// Its TTL follows its own until and only a later until moves it (later),
// so nothing written after a ban (another revocation, a connection) can
// make DynamoDB delete it early, as it did when the bans were attributes
// of the counter whose TTL every write set.
//
// Every transaction that admits a connection of the principal (a
// handshake, an authentication, a token refresh) checks the ban items it
// is covered by: one that commits after the revocation is refused by
// DynamoDB itself, and one that committed before holds a slot the
// revocation's consistent query finds and closes. No interleaving lets a
// connection through.
const (
	attrBanUntil = "until"
	// attrBanLifted is when (the lift's event time, ms) a ban was lifted:
	// a revocation issued before it, delivered late or twice as
	// EventBridge may, does not ban again.
	attrBanLifted = "lifted"
	// liftKept is how long a lifted ban's item stays to refuse such
	// stale revocations: the age past which EventBridge and Lambda stop
	// retrying an event (6 h), and an hour more.
	liftKept = 7 * time.Hour
	// banGrace keeps a ban readable a while past its until: the check
	// compares until with the clock, so this only spares the TTL a race.
	banGrace = time.Hour
)

// bansOf names the ban items (their sort keys) that refuse principal p.
func bansOf(p auth.Principal) []string {
	bans := []string{skBan}
	if p.TokenID != "" {
		bans = append(bans, banKey(p.TokenID))
	}
	return bans
}

// banKey is the sort key of the ban of one token id.
func banKey(jti string) string { return skBan + "#" + jti }

// banChecks are the transaction items that refuse a write while a ban
// item of pk among bans holds a time after now.
func (s *Store) banChecks(pk string, bans []string) []types.TransactWriteItem {
	now := nv(s.now().UnixMilli())
	out := make([]types.TransactWriteItem, len(bans))
	for i, b := range bans {
		out[i] = types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
			TableName:                 s.table,
			Key:                       key(pk, b),
			ConditionExpression:       aws.String("attribute_not_exists(#u) OR #u <= :now"),
			ExpressionAttributeNames:  map[string]string{"#u": attrBanUntil},
			ExpressionAttributeValues: map[string]types.AttributeValue{":now": now},
		}}
	}
	return out
}

// anyFailed reports whether a cancelled transaction's item at any of
// [first, first+n) failed its condition.
func anyFailed(reasons []types.CancellationReason, first, n int) bool {
	for i := first; i < first+n; i++ {
		if reasonIs(reasons, i, "ConditionalCheckFailed") {
			return true
		}
	}
	return false
}

// Revocation is what a backend revokes: every connection of a principal
// (its type and id), or only those holding one of its tokens (TokenID,
// the jti), until Until.
type Revocation struct {
	Principal auth.Identity
	TokenID   string
	Until     time.Time
	// Issued is when the revocation (or the lift) was published, its
	// event's time; zero means now. A revocation issued before the ban
	// was lifted is stale and changes nothing.
	Issued time.Time
}

// banItem is the partition and sort key of the ban r names.
func (r Revocation) banItem() (pk, sk string, ok bool) {
	pk, ok = principalKey(auth.Principal{Identity: r.Principal})
	sk = skBan
	if r.TokenID != "" {
		sk = banKey(r.TokenID)
	}
	return pk, sk, ok
}

func (s *Store) issued(r Revocation) int64 {
	if r.Issued.IsZero() {
		return s.now().UnixMilli()
	}
	return r.Issued.UnixMilli()
}

// Lift ends the ban r names (the principal's, or its token's) now, before
// its until: the principal, or the token, may connect again at once.
// Lifting what is not banned is harmless. The item stays a few hours,
// marked lifted at r.Issued, so a revocation issued before the lift and
// delivered after it (EventBridge neither orders nor deduplicates) does
// not ban again; one issued after it does.
func (s *Store) Lift(ctx context.Context, r Revocation) error {
	pk, sk, ok := r.banItem()
	if !ok {
		return errors.New("store: lift: an anonymous principal is never revoked")
	}
	issued := s.issued(r)
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                s.table,
		Key:                      key(pk, sk),
		UpdateExpression:         aws.String("SET #u = :now, #l = :issued, #ttl = :ttl"),
		ConditionExpression:      aws.String("attribute_not_exists(#l) OR #l < :issued"),
		ExpressionAttributeNames: map[string]string{"#u": attrBanUntil, "#l": attrBanLifted, "#ttl": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":now": nv(s.now().UnixMilli()), ":issued": nv(issued),
			":ttl": nv(s.now().Add(liftKept).Unix()),
		},
		ReturnConsumedCapacity: total,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf):
		return nil // a later lift is in place
	case err != nil:
		return fmt.Errorf("store: lift %s %s: %w", pk, sk, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

// Revoke records r in its ban item, then returns the live
// connections it covers (their records), for the caller to close. Repeating it is
// harmless; a later Until extends an earlier one, an earlier one never
// shortens it.
func (s *Store) Revoke(ctx context.Context, r Revocation) ([]Connection, error) {
	pk, ban, ok := r.banItem()
	if !ok {
		return nil, errors.New("store: revoke: an anonymous principal cannot be revoked")
	}
	// The item's TTL moves with its until, in the same conditional
	// write: only ever later.
	ttl := time.UnixMilli(r.Until.UnixMilli()).Add(banGrace + time.Second).Unix()
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                s.table,
		Key:                      key(pk, ban),
		UpdateExpression:         aws.String("SET #u = :until, #ttl = :ttl"),
		ConditionExpression:      aws.String("(attribute_not_exists(#u) OR #u < :until) AND (attribute_not_exists(#l) OR #l < :issued)"),
		ExpressionAttributeNames: map[string]string{"#u": attrBanUntil, "#l": attrBanLifted, "#ttl": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":until": nv(r.Until.UnixMilli()), ":ttl": nv(ttl), ":issued": nv(s.issued(r)),
		},
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		ReturnConsumedCapacity:              total,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
	case errors.As(err, &ccf) && liftedSince(ccf.Item, s.issued(r)):
		// Lifted after this revocation was issued: it is stale.
		return nil, nil
	case errors.As(err, &ccf):
		// A revocation at least as long is in place: close what it covers.
	case err != nil:
		return nil, fmt.Errorf("store: revoke %s: %w", pk, err)
	default:
		meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	}

	// Every connection committed before the ban holds a slot by now.
	var ids []string
	now := s.now()
	err = s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:                 s.table,
		KeyConditionExpression:    aws.String("pk = :pk AND begins_with(sk, :s)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(pk), ":s": sv(skConnSlot)},
		ConsistentRead:            aws.Bool(true),
	}, func(item map[string]types.AttributeValue) {
		if liveRefs(item, now) {
			ids = append(ids, getS(item, SortKey)[len(skConnSlot):])
		}
	})
	if err != nil {
		return nil, fmt.Errorf("store: revoke %s: list connections: %w", pk, err)
	}
	var covered []Connection
	for _, id := range ids {
		c, err := s.GetConnection(ctx, id)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return nil, err
		case r.TokenID == "" || c.Principal.TokenID == r.TokenID:
			covered = append(covered, c)
		}
	}
	return covered, nil
}

// Refresh gives an authenticated connection a fresh token: its principal
// (same type and id, possibly other capabilities and token id) and the
// token's expiry replace the old ones, unless the principal or the new
// token is revoked (ErrRevoked). ErrNotFound when the connection is gone
// or still waiting to authenticate.
func (s *Store) Refresh(ctx context.Context, id string, p auth.Principal, expires time.Time) error {
	pk, ok := principalKey(p)
	if !ok {
		return errors.New("store: refresh: an anonymous principal has no token")
	}
	enc, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("store: encode principal: %w", err)
	}
	bans := bansOf(p)
	err = s.transact(ctx, append([]types.TransactWriteItem{
		{Update: &types.Update{
			TableName:           s.table,
			Key:                 key(connPK(id), skMeta),
			UpdateExpression:    aws.String("SET p = :p, texp = :texp"),
			ConditionExpression: aws.String("attribute_exists(pk) AND attribute_not_exists(pend)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":p": sv(string(enc)), ":texp": nv(expires.UnixMilli()),
			},
		}},
	}, s.banChecks(pk, bans)...))
	switch reasons, _ := cancelReasons(err); {
	case err == nil:
		return nil
	case reasonIs(reasons, 0, "ConditionalCheckFailed"):
		return ErrNotFound
	case anyFailed(reasons, 1, len(bans)):
		return ErrRevoked
	}
	return fmt.Errorf("store: refresh %s: %w", id, err)
}

// liftedSince reports whether a ban item was lifted at or after issued (ms).
func liftedSince(item map[string]types.AttributeValue, issued int64) bool {
	n, ok := item[attrBanLifted].(*types.AttributeValueMemberN)
	if !ok {
		return false
	}
	l, err := strconv.ParseInt(n.Value, 10, 64)
	return err == nil && l >= issued
}

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

// A backend revokes a principal, or one of its tokens, until a time. The
// revocation lives on the principal's connection counter (N#<direct>
// #COUNT), the item every connection of the principal takes a place in
// within the transaction that writes it:
//
//	rv        until when every connection of the principal is refused (ms)
//	j:<jti>   until when connections with that token id are refused (ms)
//
// So a handshake, an authentication or a token refresh that commits after
// the revocation is refused by DynamoDB itself, and one that committed
// before holds a slot the revocation's consistent query finds and closes:
// no interleaving lets a connection through.
const (
	attrBanAll      = "rv"
	attrBanTokenPfx = "j:"
	// banTTLFloor keeps a counter holding a revocation readable at least
	// this long past now, so it outlives the slots it counts.
	banTTLFloor = 24 * time.Hour
)

// bansOf names the revocation attributes that refuse principal p.
func bansOf(p auth.Principal) []string {
	bans := []string{attrBanAll}
	if p.TokenID != "" {
		bans = append(bans, attrBanTokenPfx+p.TokenID)
	}
	return bans
}

// notBanned is the condition that none of bans holds a time after now (a
// conjunction of parenthesized terms),
// adding its names (#b0, #b1...) and :now to names and values.
func (s *Store) notBanned(bans []string, names map[string]string, values map[string]types.AttributeValue) string {
	cond := ""
	for i, b := range bans {
		n := "#b" + strconv.Itoa(i)
		names[n] = b
		if i > 0 {
			cond += " AND "
		}
		cond += fmt.Sprintf("(attribute_not_exists(%s) OR %s <= :bannow)", n, n)
	}
	values[":bannow"] = nv(s.now().UnixMilli())
	return cond
}

// banned reports whether a counter item holds one of bans past now.
func banned(item map[string]types.AttributeValue, bans []string, now time.Time) bool {
	for _, b := range bans {
		if getN(item, b) > now.UnixMilli() {
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
}

// Revoke records r on the principal's counter, then returns the live
// connections it covers (their records), for the caller to close. Repeating it is
// harmless; a later Until extends an earlier one, an earlier one never
// shortens it.
func (s *Store) Revoke(ctx context.Context, r Revocation) ([]Connection, error) {
	pk, ok := principalKey(auth.Principal{Identity: r.Principal})
	if !ok {
		return nil, errors.New("store: revoke: an anonymous principal cannot be revoked")
	}
	ban := attrBanAll
	if r.TokenID != "" {
		ban = attrBanTokenPfx + r.TokenID
	}
	until := r.Until.UnixMilli()
	ttl := r.Until
	if floor := s.now().Add(banTTLFloor); ttl.Before(floor) {
		ttl = floor
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                s.table,
		Key:                      key(pk, skConnCount),
		UpdateExpression:         aws.String("SET #b = :until, #ttl = :ttl"),
		ConditionExpression:      aws.String("attribute_not_exists(#b) OR #b < :until"),
		ExpressionAttributeNames: map[string]string{"#b": ban, "#ttl": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":until": nv(until), ":ttl": nv(ttl.Add(counterGrace).Unix()),
		},
		ReturnConsumedCapacity: total,
	})
	var ccf *types.ConditionalCheckFailedException
	switch {
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
	names, values := map[string]string{}, map[string]types.AttributeValue{}
	check := &types.ConditionCheck{
		TableName:                 s.table,
		Key:                       key(pk, skConnCount),
		ConditionExpression:       aws.String(s.notBanned(bansOf(p), names, values)),
		ExpressionAttributeNames:  names,
		ExpressionAttributeValues: values,
	}
	err = s.transact(ctx, []types.TransactWriteItem{
		{Update: &types.Update{
			TableName:           s.table,
			Key:                 key(connPK(id), skMeta),
			UpdateExpression:    aws.String("SET p = :p, texp = :texp"),
			ConditionExpression: aws.String("attribute_exists(pk) AND attribute_not_exists(pend)"),
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":p": sv(string(enc)), ":texp": nv(expires.UnixMilli()),
			},
		}},
		{ConditionCheck: check},
	})
	switch reasons, _ := cancelReasons(err); {
	case err == nil:
		return nil
	case reasonIs(reasons, 0, "ConditionalCheckFailed"):
		return ErrNotFound
	case reasonIs(reasons, 1, "ConditionalCheckFailed"):
		return ErrRevoked
	}
	return fmt.Errorf("store: refresh %s: %w", id, err)
}

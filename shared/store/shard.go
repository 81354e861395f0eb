package store

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ShardProgress records how far the delivery of one fan-out shard (a hash
// range of the event's audience) got, so a retried shard skips what was
// delivered.
type ShardProgress struct {
	Done bool
	// Delivered are the hashes (Hash, 8 bytes each, big-endian) of the
	// connections delivered: unlike positions in a list, they still name
	// the same connections when subscribers joined or left between two
	// attempts. A page-sized range's fit one item (10,000: 80 KB).
	Delivered []byte
}

// attrDelivered holds a shard's delivered hashes.
const attrDelivered = "dh"

// shardKey is a range's progress record: a partition key of its own, so
// an event's 64 ranges recording their delivered hashes (8 bytes a
// connection: 8 KB, 8 WCU, a checkpoint for a range of 1,000) do not meet
// on one key's 1,000 WCU a second.
func shardKey(eventID string, shard int) map[string]types.AttributeValue {
	sk := fmt.Sprintf("%s%06d", skShardPrefix, shard)
	return key(prefixEvent+eventID+sk, sk)
}

// ClaimShard takes a shard for this attempt (owner) for lease and returns
// the progress an earlier attempt recorded (false: none). A finished shard
// comes back with Done; one another attempt holds, its lease running, is
// ErrInProgress: two workers never deliver the same shard at once.
func (s *Store) ClaimShard(ctx context.Context, eventID string, shard int, owner string, lease time.Duration) (ShardProgress, bool, error) {
	now := s.now()
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           s.table,
		Key:                 shardKey(eventID, shard),
		UpdateExpression:    aws.String("SET #owner = :me, #lease = :until, #ttl = :ttl"),
		ConditionExpression: aws.String("attribute_not_exists(pk) OR ((attribute_not_exists(#done) OR #done <> :true) AND (#lease < :now OR #owner = :me))"),
		ExpressionAttributeNames: map[string]string{
			"#owner": attrOwner, "#lease": attrLease, "#done": attrDone, "#ttl": TTLAttribute,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me": sv(owner), ":until": nv(now.Add(lease).UnixMilli()), ":now": nv(now.UnixMilli()),
			":true": bv(true), ":ttl": nv(now.Add(s.EventTTL).Unix()),
		},
		ReturnValues:                        types.ReturnValueAllOld,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		ReturnConsumedCapacity:              total,
	})
	var ccf *types.ConditionalCheckFailedException
	if asCCF(err, &ccf) {
		meter(ctx, "UpdateItem")
		if getBool(ccf.Item, attrDone) {
			return ShardProgress{Done: true}, true, nil
		}
		return ShardProgress{}, false, fmt.Errorf("store: shard %d of %s: %w", shard, eventID, ErrInProgress)
	}
	if err != nil {
		return ShardProgress{}, false, fmt.Errorf("store: claim shard %d of %s: %w", shard, eventID, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	if len(out.Attributes) == 0 {
		return ShardProgress{}, false, nil
	}
	a := out.Attributes
	return ShardProgress{Done: getBool(a, attrDone), Delivered: getB(a, attrDelivered)}, true, nil
}

// PutShard records the progress of the attempt holding a shard and renews
// its lease; ErrInProgress when another attempt has taken the shard over.
func (s *Store) PutShard(ctx context.Context, eventID string, shard int, owner string, lease time.Duration, p ShardProgress) error {
	now := s.now()
	it := shardKey(eventID, shard)
	it[attrDone] = bv(p.Done)
	if len(p.Delivered) > 0 {
		it[attrDelivered] = &types.AttributeValueMemberB{Value: p.Delivered}
	}
	it[attrOwner] = sv(owner)
	it[attrLease] = nv(now.Add(lease).UnixMilli())
	it[TTLAttribute] = nv(now.Add(s.EventTTL).Unix())
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.table, Item: it, ReturnConsumedCapacity: total,
		ConditionExpression:       aws.String("attribute_not_exists(pk) OR #owner = :me"),
		ExpressionAttributeNames:  map[string]string{"#owner": attrOwner},
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": sv(owner)},
	})
	if isConditionFailed(err) {
		return fmt.Errorf("store: record shard %d of %s: %w", shard, eventID, ErrInProgress)
	}
	if err != nil {
		return fmt.Errorf("store: record shard %d of %s: %w", shard, eventID, err)
	}
	meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

// attrDetail holds an event's detail stored for its shards.
const attrDetail = "d"

// PutDetail stores an event's detail once, for its fan-out shards to read
// instead of each carrying a copy (a detail is up to
// publish.MaxDetailBytes, which leaves this one item under DynamoDB's
// 400 KB; a queue batch of ten shards carrying it would not fit SQS's
// 1 MiB). It expires with the event's record; writing it again is harmless.
func (s *Store) PutDetail(ctx context.Context, eventID string, detail []byte) error {
	it := key(prefixEvent+eventID, skDetail)
	it[attrDetail] = &types.AttributeValueMemberB{Value: detail}
	it[TTLAttribute] = nv(s.now().Add(s.EventTTL).Unix())
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table, Item: it, ReturnConsumedCapacity: total})
	if err != nil {
		return fmt.Errorf("store: detail of %s: %w", eventID, err)
	}
	meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

// Detail reads the detail PutDetail stored (consistently: a shard may run
// a moment after it was written); ErrNotFound when it is gone.
func (s *Store) Detail(ctx context.Context, eventID string) ([]byte, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(prefixEvent+eventID, skDetail), ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
	})
	if err != nil {
		return nil, fmt.Errorf("store: detail of %s: %w", eventID, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil {
		return nil, ErrNotFound
	}
	return getB(out.Item, attrDetail), nil
}

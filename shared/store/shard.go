package store

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// ShardProgress records how far the delivery of one fan-out shard got, so
// a retried shard skips what was delivered.
type ShardProgress struct {
	Done bool
	// Delivered is a bitmap over the shard's connections, in shard order.
	Delivered []byte
	// First is the shard's first connection id: a retry whose shard starts
	// elsewhere (the audience changed) does not trust the bitmap.
	First string
}

// Shard attribute names.
const (
	attrBitmap = "bits"
	attrFirst  = "first"
)

func shardKey(eventID string, shard int) map[string]types.AttributeValue {
	return key(prefixEvent+eventID, fmt.Sprintf("%s%06d", skShardPrefix, shard))
}

// GetShard reads a shard's progress; false when it has none.
func (s *Store) GetShard(ctx context.Context, eventID string, shard int) (ShardProgress, bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: shardKey(eventID, shard), ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
	})
	if err != nil {
		return ShardProgress{}, false, fmt.Errorf("store: shard %d of %s: %w", shard, eventID, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil {
		return ShardProgress{}, false, nil
	}
	return ShardProgress{Done: getBool(out.Item, attrDone), Delivered: getB(out.Item, attrBitmap), First: getS(out.Item, attrFirst)}, true, nil
}

// PutShard records a shard's progress.
func (s *Store) PutShard(ctx context.Context, eventID string, shard int, p ShardProgress) error {
	it := shardKey(eventID, shard)
	it[attrDone] = bv(p.Done)
	it[attrFirst] = sv(p.First)
	if len(p.Delivered) > 0 {
		it[attrBitmap] = &types.AttributeValueMemberB{Value: p.Delivered}
	}
	it[TTLAttribute] = nv(s.now().Add(s.EventTTL).Unix())
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table, Item: it, ReturnConsumedCapacity: total})
	if err != nil {
		return fmt.Errorf("store: record shard %d of %s: %w", shard, eventID, err)
	}
	meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

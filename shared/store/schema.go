// Package store keeps wsgate's state in one DynamoDB table: connections,
// subscriptions (with the reverse entries a disconnect needs), the wildcard
// pattern index, topic sequence numbers, state and history, processed event
// ids and used ticket ids. Every access is by key; nothing here scans.
//
// Item layout (pk / sk):
//
//	C#<conn>     #META          connection record
//	C#<conn>     S#<pattern>    the connection's subscription (reverse entry)
//	P#<pattern>  <conn>         subscriber of a pattern (what fan-out reads)
//	W#<prefix>   <pattern>      a wildcard pattern someone subscribed to, under
//	                            its literal prefix (a.b.* lives under W#a.b)
//	T#<topic>    #SEQ           the topic's last sequence number
//	T#<topic>    #STATE         the topic's current state frames
//	H#<topic>    <seq, 20 digits> one event kept for resume
//	E#<event id> #EVENT         a processed (or in-flight) EventBridge event
//	E#<event id> #SHARD#<n>     a fan-out shard of that event, once delivered
//	J#<jti>      #TICKET        a used single-use ticket
//	R#<topic>    A#<principal>  a presence topic's principal: announced or not
//	R#<topic>    M#<principal>#<conn> one of its subscriptions (roster.go)
//	Q#<topic>    <conn>         a connection that asked for join/leave events
//
// Every item that can go stale carries a ttl (epoch seconds), so a missed
// $disconnect or an abandoned topic cleans itself up.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Key and attribute names shared with the CDK stack.
const (
	PartitionKey = "pk"
	SortKey      = "sk"
	TTLAttribute = "ttl"
)

// Key prefixes.
const (
	prefixConn     = "C#"
	prefixPattern  = "P#"
	prefixWildcard = "W#"
	prefixTopic    = "T#"
	prefixHistory  = "H#"
	prefixEvent    = "E#"
	prefixTicket   = "J#"
	skMeta         = "#META"
	skSubPrefix    = "S#"
	skSeq          = "#SEQ"
	skState        = "#STATE"
	skEvent        = "#EVENT"
	skShardPrefix  = "#SHARD#"
	skDetail       = "#DETAIL"
	skTicket       = "#TICKET"
)

// TableAdmin is what creating the table needs.
type TableAdmin interface {
	CreateTable(ctx context.Context, in *dynamodb.CreateTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
	DescribeTable(ctx context.Context, in *dynamodb.DescribeTableInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	UpdateTimeToLive(ctx context.Context, in *dynamodb.UpdateTimeToLiveInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateTimeToLiveOutput, error)
}

// CreateTableInput is the table's one definition: on-demand, pk/sk strings,
// a stream of new and old images (connection lifecycle events). The CDK
// stack mirrors it with the same constants.
func CreateTableInput(name string) *dynamodb.CreateTableInput {
	return &dynamodb.CreateTableInput{
		TableName:   aws.String(name),
		BillingMode: types.BillingModePayPerRequest,
		StreamSpecification: &types.StreamSpecification{
			StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewAndOldImages,
		},
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(PartitionKey), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String(SortKey), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(PartitionKey), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(SortKey), KeyType: types.KeyTypeRange},
		},
	}
}

// CreateTable creates the table if it does not exist, waits for it to be
// active and turns TTL on. It is idempotent.
func CreateTable(ctx context.Context, db TableAdmin, name string) error {
	return CreateTableFrom(ctx, db, CreateTableInput(name))
}

// CreateTableFrom is CreateTable with the definition given (a test's table
// without the stream, say).
func CreateTableFrom(ctx context.Context, db TableAdmin, in *dynamodb.CreateTableInput) error {
	name := aws.ToString(in.TableName)
	_, err := db.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("store: create table %s: %w", name, err)
	}
	for i := 0; ; i++ {
		out, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err != nil {
			return fmt.Errorf("store: describe table %s: %w", name, err)
		}
		if out.Table.TableStatus == types.TableStatusActive {
			break
		}
		if i > 300 {
			return fmt.Errorf("store: table %s not active after 30s", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	_, err = db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName: aws.String(name),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{
			AttributeName: aws.String(TTLAttribute), Enabled: aws.Bool(true),
		},
	})
	if err != nil && !isTTLAlreadyOn(err) {
		return fmt.Errorf("store: enable TTL on %s: %w", name, err)
	}
	return nil
}

func isTTLAlreadyOn(err error) bool {
	var ve interface{ ErrorCode() string }
	return errors.As(err, &ve) && ve.ErrorCode() == "ValidationException"
}

// Package store keeps wsgate's state in one DynamoDB table: connections,
// subscriptions (with the reverse entries a disconnect needs), the wildcard
// pattern index, topic sequence numbers, state and history, processed event
// ids and used ticket ids. Every access is by key; nothing here scans.
//
// Every item's key, what it holds, who writes and reads it and its TTL
// are in one table, beside the key constants below (keys).
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

// The table's items, by key. pk is a prefix and a name; sk a constant or
// a name. Writers and readers are the functions (connect, disconnect,
// message, broadcast: the last also runs the stream, the SQS shards and
// the expiry and deadline tasks); TTL is when DynamoDB may delete the
// item, on a best-effort basis, typically within two days, and expired
// items still show in reads until then, so readers check expiry themselves
// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateTimeToLive.html).
//
//	pk                     sk                       holds                                        written by             read by                     ttl
//	C#<conn>               #META                    the connection: principal, scope, limits,    connect, message,      message (each frame),       the connection's expiry
//	                                                rate window, replay bucket, held tallies     disconnect, broadcast  broadcast, disconnect       (2 h 10 min)
//	C#<conn>               S#<pattern>              the connection's subscription (reverse);     connect, message,      disconnect, message         the connection's expiry
//	                                                fpk: its subscriber entry's pk               disconnect
//	P#<pattern>            <hash16>#<conn>          a subscriber of the pattern on level 0:      connect, message,      broadcast (fan-out by hash  the connection's expiry
//	                                                filters, principal (what fan-out reads);     disconnect             range, stream: roster,
//	                                                made before buckets: sk <conn>                                      presence), message (presence)
//	P#<pattern> <L> <b>    <hash16>#<conn>          the same, on level L > 0, bucket b (the      the same               the same                    the connection's expiry
//	                                                hash's top L bits; layout.go)
//	B#<pattern> <L> <b>    #N                       n: subscribes counted in that bucket         connect, message       the same write (ADD)        2 h 10 min after it was
//	                                                (sampled 1 in S, adding S)                   (subscribe)                                        first counted
//	W#<literal prefix>     <pattern>                a wildcard pattern someone subscribed to     connect, message;      broadcast (audience)        25 h, rewritten by a
//	                                                (a.b.* lives under W#a.b); its layout:       unused ones forgotten                              subscribe within 3 h of it
//	                                                cur, lv                                      by disconnect, message,
//	                                                                                             broadcast
//	T#<topic>              #SEQ                     the topic's last sequence number and time;   broadcast, message     message (subscribe,         30 days after its last
//	                                                its layout: cur, lv                          (client publishes,     resume), broadcast          event or level (SeqTTL)
//	                                                                                             subscribe: levels)
//	T#<topic>              #STATE                   the topic's current state frames, audience   broadcast, message     message, connect            none: an event replaces
//	                                                                                             (client publishes)     (request_current_state)     or clears it
//	H#<topic>              <seq, 20 digits>         one event kept for resume, or a skipped seq  broadcast, message     message (resume),           history retention
//	                                                                                             (client publishes)     broadcast (?since=)         (24 h)
//	E#<event id>           #EVENT                   a processed or in-flight event: its          broadcast, message     the same (redeliveries)     25 h (EventTTL)
//	                                                lease, owner, seq, done, cut (k: its 2^k     (client publishes)
//	                                                hash ranges)
//	E#<event id>#SHARD#<n> #SHARD#<n, 6 digits>     one hash range's progress (the hashes of     broadcast              broadcast (retried range)   25 h (EventTTL)
//	                                                the connections delivered); n = 2^k + r
//	E#<event id>           #DETAIL                  the event's detail, for its shards           broadcast              broadcast (SQS shards)      25 h (EventTTL)
//	J#<jti>                #TICKET                  a used single-use ticket                     connect, message       the same write (condition)  the ticket's exp + 1 min
//	N#<tally key>          #COUNT                   n: connections counted under the key         connect, message,      connect, message            the holders' expiry + 24 h
//	                                                                                             disconnect             (caps, reclaim)
//	N#<tally key>          C#<conn>                 one of them: refs {conn: expiry}             the same               the same                    the holder's expiry + 1 h
//	N#p#<principal hash>   #WILD                    n: the principal's distinct wildcards        connect, message,      connect, message            the holders' expiry + 24 h
//	                                                                                             disconnect             (subscribe)
//	N#p#<principal hash>   W#<pattern>              one of them: refs of its connections         the same               the same                    the holders' expiry + 1 h
//	N#p#<principal hash>   #BAN                     until: the principal is refused (ms)         broadcast (revoke)     connect, message (auth,     until + 1 h; a lifted
//	                                                                                                                    refresh), broadcast         ban 7 h
//	N#p#<principal hash>   #BAN#<jti>               until: that token id is refused (ms)         the same               the same                    the same
//	N#p#<hash>, N#ip#<a>   #REPLAY                  the replay allowance shared by a principal's message (resume,       the same writes             2 min past its window
//	                                                (or an address's anonymous) connections      state, presence),
//	                                                                                             broadcast (?since=)
//	R#<topic>              A#<principal hash>       a presence principal: announced or not       broadcast (stream)     broadcast (announcements)   25 h (a tombstone)
//	R#<topic>              M#<principal hash>#<conn> one of its subscriptions: gen, live         broadcast (stream)     broadcast                   the connection's expiry;
//	                                                                                                                                                25 h once removed
//	Q#<topic>              <conn>                   a connection that asked for join/leave       broadcast (stream)     broadcast (announcements)   the connection's expiry
//
// <tally key> is p#<principal hash> (a principal's connections,
// principalKey), ip#<address> (connections waiting to authenticate from an
// address), pending#<i> (a shard of all of those, pending.go) or
// anon#<address> (anonymous connections from an address); tally.go,
// revoke.go, replay.go and roster.go say how each is used.
const (
	prefixConn     = "C#"
	prefixPattern  = "P#"
	prefixWildcard = "W#"
	prefixTopic    = "T#"
	prefixHistory  = "H#"
	prefixEvent    = "E#"
	prefixTicket   = "J#"
	prefixTally    = "N#"
	prefixRoster   = "R#"
	prefixWatcher  = "Q#"

	skMeta        = "#META"
	skSubPrefix   = "S#"
	skSeq         = "#SEQ"
	skState       = "#STATE"
	skEvent       = "#EVENT"
	skShardPrefix = "#SHARD#"
	skDetail      = "#DETAIL"
	skTicket      = "#TICKET"
	skConnCount   = "#COUNT"
	skConnSlot    = "C#"
	skWildCount   = "#WILD"
	skWildSlot    = "W#"
	skBan         = "#BAN"
	skReplay      = "#REPLAY"
	skRosterWho   = "A#"
	skRosterConn  = "M#"

	// The tally keys' kinds, after prefixTally.
	tallyPrincipal = "p#"
	tallyIP        = "ip#"
	tallyPending   = "pending"
	tallyAnonIP    = "anon#"
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

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/topic"
)

// What a replay reads and what it may send.
//
// A connection's replay allowance is a token bucket kept in its record, so
// it holds across every Lambda instance and every frame running at once:
// it holds at most perMinute bytes and refills at perMinute bytes a minute,
// continuously. Unlike a calendar minute's count it never resets at an
// edge: a client that spends its allowance at 12:00:59 has a sixtieth of
// it back at 12:01:00, not all of it (which let it take twice its cap in
// two seconds). Over any span T it gets at most perMinute + perMinute·T/1m.
//
// The bucket is stored as one number, in the generic cell rate algorithm's
// form: rbt, the instant (Unix microseconds) at which the bucket would be
// full again. Its level at t is (t + 1m - max(rbt, t)) converted to bytes,
// and taking b bytes moves rbt on by b's share of a minute. So a
// reservation is one conditional write whose condition only compares
// (DynamoDB conditions cannot add or multiply): "rbt <= t" (full: set it
// to t + cost), or "t < rbt <= t + 1m - cost" (room: add cost). Frames
// racing on one record each either fit under the condition or retry with
// the value the failed write returned.
const attrReplayTAT = "rbt"

// replayMinute is the bucket's refill time, in the unit rbt is kept in.
const replayMinute = int64(time.Minute / time.Microsecond)

// replayCost is how far b bytes move the bucket's time under a cap of
// perMinute bytes a minute (rounded up, so it never grants more).
func replayCost(b, perMinute int64) int64 {
	return (b*replayMinute + perMinute - 1) / perMinute
}

// replayLevel is the bytes the bucket holds at t (microseconds) with its
// full-again time at tat.
func replayLevel(tat, t, perMinute int64) int64 {
	return (t + replayMinute - max(tat, t)) * perMinute / replayMinute
}

// TopicSeq is where a topic's numbering stands.
type TopicSeq struct {
	// Seq is the topic's last sequence number (0 when it has none).
	Seq uint64
	// Published is when the event that took Seq was published; zero when
	// unknown.
	Published time.Time
}

// TopicSeq reads a topic's last sequence number and when the event that
// took it was published: a replay missing that event's history entry can
// tell whether the entry may still be on its way.
func (s *Store) TopicSeq(ctx context.Context, t topic.Pattern) (TopicSeq, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(prefixTopic+t.String(), skSeq), ConsistentRead: aws.Bool(true),
		ProjectionExpression:     aws.String("#seq, #pub"),
		ExpressionAttributeNames: map[string]string{"#seq": attrSeq, "#pub": attrTime},
		ReturnConsumedCapacity:   total,
	})
	if err != nil {
		return TopicSeq{}, fmt.Errorf("store: sequence of %s: %w", t, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	ts := TopicSeq{Seq: getU(out.Item, attrSeq)}
	if _, ok := out.Item[attrTime]; ok {
		ts.Published = time.UnixMilli(getN(out.Item, attrTime))
	}
	return ts, nil
}

// ReplayBucket names a replay allowance: a connection's, kept in its
// record, or the one every connection of a principal (an anonymous one:
// every anonymous connection from a source address) draws from as well,
// an item of its own beside the principal's tallies (N#<key> #REPLAY), so
// it holds across connections and handshakes.
type ReplayBucket struct {
	pk, sk string
	// record: the bucket is in a connection record, which must be there
	// and not expired; otherwise the item is made on first use.
	record bool
}

// ConnectionReplay is connection id's own replay allowance.
func ConnectionReplay(id string) ReplayBucket {
	return ReplayBucket{pk: connPK(id), sk: skMeta, record: true}
}

// SourceReplay is the replay allowance c shares with its principal's other
// connections, or, for an anonymous connection (or a principal that has no
// key), with every anonymous connection from its source address; and
// whether it is a principal's (false: an address's).
func SourceReplay(c Connection) (ReplayBucket, bool) {
	if k, ok := principalKey(c.Principal); ok && !c.Principal.Anonymous {
		return ReplayBucket{pk: k, sk: skReplay}, true
	}
	ip := c.SourceIP
	if ip == "" {
		ip = "unknown" // all unknown addresses share one bucket
	}
	return ReplayBucket{pk: prefixTally + tallyIP + ip, sk: skReplay}, false
}

// ReplayReservation is bytes taken from a replay allowance.
type ReplayReservation struct {
	// Bytes is what the replay may send: at most what was asked.
	Bytes int64
	// cost is how far the bucket's time was moved for Bytes.
	cost, perMinute int64
}

// ReserveReplay takes up to n bytes from replay allowance b (a bucket of
// perMinute bytes refilled at perMinute a minute, see above) at instant
// at, before anything is sent; the replay gives back what it did not send
// with ReturnReplay. Several frames reserving at once never get more
// between them than the bucket holds. It returns ErrRateLimited when the
// bucket is empty, ErrNotFound for an unknown or expired connection (a
// connection's bucket). One write when the bucket is full or its value is
// as last seen; one more per frame that changed it meanwhile.
func (s *Store) ReserveReplay(ctx context.Context, b ReplayBucket, at time.Time, n, perMinute int64) (ReplayReservation, error) {
	if n <= 0 || perMinute <= 0 {
		return ReplayReservation{}, fmt.Errorf("store: reserve replay for %s: %d bytes of %d a minute", b.pk, n, perMinute)
	}
	t := at.UnixMicro()
	tat := int64(-1) // unknown: try the full bucket first, the common case
	for attempt := 0; attempt < 6; attempt++ {
		take := min(n, perMinute)
		if tat > t {
			take = min(n, replayLevel(tat, t, perMinute))
			if take <= 0 {
				return ReplayReservation{}, ErrRateLimited
			}
		}
		r := ReplayReservation{Bytes: take, cost: replayCost(take, perMinute), perMinute: perMinute}
		old, err := s.takeReplay(ctx, b, at, r.cost, tat > t)
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, errBucketMoved) {
			return ReplayReservation{}, err
		}
		if b.record && (old == nil || !alive(old, at)) {
			return ReplayReservation{}, ErrNotFound
		}
		tat = getN(old, attrReplayTAT) // 0 when it never replayed: full
	}
	return ReplayReservation{}, fmt.Errorf("store: reserve replay for %s: contention did not settle", b.pk)
}

// errBucketMoved: the bucket was not as the write assumed.
var errBucketMoved = errors.New("replay bucket moved")

// takeReplay moves bucket b's time on by cost, assuming it is partly used
// (used) or full (!used) at the instant at; errBucketMoved with the item
// as it is when it is not so (or a connection's record is gone). A bucket
// of its own expires once it would be full again.
func (s *Store) takeReplay(ctx context.Context, b ReplayBucket, at time.Time, cost int64, used bool) (map[string]types.AttributeValue, error) {
	t := at.UnixMicro()
	names := map[string]string{"#b": attrReplayTAT}
	values := map[string]types.AttributeValue{":t": nv(t)}
	update, cond := "SET #b = :full", "(attribute_not_exists(#b) OR #b <= :t)"
	values[":full"] = nv(t + cost)
	if used {
		update, cond = "SET #b = #b + :cost", "#b > :t AND #b <= :room"
		delete(values, ":full")
		values[":cost"], values[":room"] = nv(cost), nv(t+replayMinute-cost)
	}
	if b.record {
		cond = "attribute_exists(pk) AND #ttl > :nows AND " + cond
		names["#ttl"], values[":nows"] = TTLAttribute, nv(at.Unix())
	} else {
		update += ", #ttl = :ttl"
		names["#ttl"], values[":ttl"] = TTLAttribute, nv(at.Add(2*time.Minute).Unix())
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                           s.table,
		Key:                                 key(b.pk, b.sk),
		UpdateExpression:                    aws.String(update),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            names,
		ExpressionAttributeValues:           values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		ReturnConsumedCapacity:              total,
	})
	if err == nil {
		meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
		return nil, nil
	}
	var ccf *types.ConditionalCheckFailedException
	if !asCCF(err, &ccf) {
		return nil, fmt.Errorf("store: reserve replay for %s: %w", b.pk, err)
	}
	meter(ctx, "UpdateItem")
	return ccf.Item, errBucketMoved
}

// ReturnReplay gives back to the bucket the part of r that was not sent
// (sent is what was). A bucket that refilled meanwhile stays full: its
// level never passes perMinute, whatever is given back. (One that refilled
// and was drawn again while r was out gets back at most r's unsent bytes
// more than due: a frame holds r for seconds.)
func (s *Store) ReturnReplay(ctx context.Context, b ReplayBucket, r ReplayReservation, sent int64) error {
	if r.Bytes-sent <= 0 || r.perMinute <= 0 {
		return nil
	}
	back := r.cost - replayCost(sent, r.perMinute)
	if back <= 0 {
		return nil
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(b.pk, b.sk),
		UpdateExpression:          aws.String("SET #b = #b - :n"),
		ConditionExpression:       aws.String("attribute_exists(#b)"),
		ExpressionAttributeNames:  map[string]string{"#b": attrReplayTAT},
		ExpressionAttributeValues: map[string]types.AttributeValue{":n": nv(back)},
		ReturnConsumedCapacity:    total,
	})
	if err != nil {
		if isConditionFailed(err) {
			meter(ctx, "UpdateItem")
			return nil // the connection is gone, or the bucket expired
		}
		return fmt.Errorf("store: return replay for %s: %w", b.pk, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

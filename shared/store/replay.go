package store

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/topic"
)

// What a replay reads and what it may send.
//
// A connection record counts the bytes of history replayed to it in a
// fixed one-minute window, like the message rate's one-second window, so
// the cap holds across every Lambda instance and every frame running at
// once: rbw is the window (Unix minutes), rbc the bytes taken in it.
const (
	attrReplayWin   = "rbw"
	attrReplayBytes = "rbc"
)

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

// ReplayReservation is bytes taken from a connection's replay allowance.
type ReplayReservation struct {
	// Bytes is what the replay may send: at most what was asked.
	Bytes int64
	// taken is what the counter went up by (what was asked), minute the
	// window it counts in.
	taken, minute int64
}

// ReserveReplay takes up to n bytes from the connection's replay allowance
// of perMinute bytes in the minute of at, before anything is sent; the
// replay gives back what it did not send with ReturnReplay. Several frames
// reserving at once never get more than perMinute between them. It returns
// ErrRateLimited when the minute's allowance is used up, ErrNotFound for
// an unknown or expired connection.
func (s *Store) ReserveReplay(ctx context.Context, id string, at time.Time, n, perMinute int64) (ReplayReservation, error) {
	win := at.Unix() / 60
	names := map[string]string{"#ttl": TTLAttribute, "#w": attrReplayWin, "#b": attrReplayBytes}
	for attempt := 0; attempt < 4; attempt++ {
		// As in CountCommands: the condition is that the window is not
		// used up; what fits is worked out from the count before ours.
		out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                s.table,
			Key:                      key(connPK(id), skMeta),
			UpdateExpression:         aws.String("SET #b = #b + :n"),
			ConditionExpression:      aws.String("attribute_exists(pk) AND #w = :win AND #b < :max AND #ttl > :nows"),
			ExpressionAttributeNames: names,
			ExpressionAttributeValues: map[string]types.AttributeValue{
				":n": nv(n), ":win": nv(win), ":max": nv(perMinute), ":nows": nv(at.Unix()),
			},
			ReturnValues:                        types.ReturnValueUpdatedNew,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
			ReturnConsumedCapacity:              total,
		})
		if err == nil {
			meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
			before := getN(out.Attributes, attrReplayBytes) - n
			return ReplayReservation{Bytes: min(n, perMinute-before), taken: n, minute: win}, nil
		}
		var ccf *types.ConditionalCheckFailedException
		if !asCCF(err, &ccf) {
			return ReplayReservation{}, fmt.Errorf("store: reserve replay for %s: %w", id, err)
		}
		meter(ctx, "UpdateItem")
		old := ccf.Item
		if old == nil || !alive(old, at) {
			return ReplayReservation{}, ErrNotFound
		}
		_, hasWin := old[attrReplayWin]
		switch stored := getN(old, attrReplayWin); {
		case hasWin && stored == win:
			return ReplayReservation{}, ErrRateLimited
		case hasWin && stored > win:
			win = stored // a frame that arrived later opened the next minute
			continue
		}
		// A new minute: start its count, unless another instance just did.
		out, err = s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 s.table,
			Key:                       key(connPK(id), skMeta),
			UpdateExpression:          aws.String("SET #w = :win, #b = :n"),
			ConditionExpression:       aws.String("attribute_exists(pk) AND (attribute_not_exists(#w) OR #w < :win)"),
			ExpressionAttributeNames:  map[string]string{"#w": attrReplayWin, "#b": attrReplayBytes},
			ExpressionAttributeValues: map[string]types.AttributeValue{":n": nv(n), ":win": nv(win)},
			ReturnConsumedCapacity:    total,
		})
		if err == nil {
			meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
			return ReplayReservation{Bytes: min(n, perMinute), taken: n, minute: win}, nil
		}
		if !isConditionFailed(err) {
			return ReplayReservation{}, fmt.Errorf("store: reserve replay for %s: %w", id, err)
		}
	}
	return ReplayReservation{}, fmt.Errorf("store: reserve replay for %s: contention did not settle", id)
}

// ReturnReplay gives back the part of r that was not sent (sent is what
// was), to the minute it was taken from; nothing once that minute is over.
func (s *Store) ReturnReplay(ctx context.Context, id string, r ReplayReservation, sent int64) error {
	back := r.taken - sent
	if back <= 0 {
		return nil
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(connPK(id), skMeta),
		UpdateExpression:          aws.String("SET #b = #b - :n"),
		ConditionExpression:       aws.String("#w = :win AND #b >= :n"),
		ExpressionAttributeNames:  map[string]string{"#w": attrReplayWin, "#b": attrReplayBytes},
		ExpressionAttributeValues: map[string]types.AttributeValue{":n": nv(back), ":win": nv(r.minute)},
		ReturnConsumedCapacity:    total,
	})
	if err != nil {
		if isConditionFailed(err) {
			meter(ctx, "UpdateItem")
			return nil // a new minute started meanwhile, or the connection is gone
		}
		return fmt.Errorf("store: return replay for %s: %w", id, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

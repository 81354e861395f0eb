package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/event"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/topic"
)

// Event record attribute names.
const (
	attrTopic    = "topic"
	attrSeq      = "seq"
	attrOwner    = "owner"
	attrLease    = "lease"
	attrDone     = "done"
	attrFrames   = "frames"
	attrAudience = "aud"
	attrID       = "id"
	attrTime     = "t"
	attrPayload  = "pl"
	attrBinary   = "bin"
	attrAttrs    = "attrs"
	attrProject  = "proj"
	attrSkip     = "skip"
	attrNumbered = "nt"
	attrFrom     = "from"
	attrCut      = "cut"
)

// EventRecord is the outcome of BeginEvent.
type EventRecord struct {
	Seq uint64
	// Done: the event was fully delivered before; deliver nothing.
	Done bool
	// Retry: an earlier attempt assigned Seq but did not finish; deliver
	// again (shards already marked delivered are skipped).
	Retry bool
	// Published and Numbered are when the event was published and given
	// its number (Event fills them).
	Published, Numbered time.Time
	// Overtaken is how long after this event the event that took the
	// topic's previous number was published (0 when it was published
	// earlier): subscribers see this one after an event published later.
	Overtaken time.Duration
	// Layout is the topic's layout as the numbering found it (every level
	// a subscriber made before the event may be on); nil when this attempt
	// took over a number drawn earlier (read it: PatternLayout).
	Layout *Layout
	// Cut is k, when an earlier attempt cut the event into 2^k hash ranges
	// (FixCut); 0 when none did.
	Cut int
}

// BeginEvent claims an EventBridge event for this invocation and gives it
// the topic's next sequence number.
//
// The claim comes first: the event's record (its id, owner and lease) is
// put on the condition that the id is new, so of any number of deliveries
// of one event (EventBridge delivers at least once, and a redelivery may
// run at the same time as the first) exactly one holds it, and only the
// holder draws a number. The others find the record: Done when the holder
// finished, ErrInProgress while its lease runs, or they take it over when
// the lease lapsed (with its number, or drawing one if the holder died
// before it had one).
//
// The number comes from an atomic counter (UpdateItem ADD), so any number
// of invocations publishing to one hot topic never contend; the number is
// then written on the record, conditional on this attempt still holding
// it, in one transaction with the event's history entry. The transaction
// touches only items of this event (no topic-wide item), so parallel
// events on one topic never conflict; the topic's state is written apart
// (ReplaceState). A number drawn by an attempt that lost its hold meanwhile
// (its lease lapsed mid-numbering) is marked skipped in the history, so a
// resume steps over it; only an invocation dying between drawing a number
// and writing it leaves a number unmarked (a resume across it answers
// history_expired). owner identifies this attempt; lease bounds how long
// another attempt waits before taking over.
func (s *Store) BeginEvent(ctx context.Context, ev publish.Event, owner string, lease time.Duration, historyTTL time.Duration) (EventRecord, error) {
	now := s.now()
	claim := key(prefixEvent+ev.ID, skEvent)
	claim[attrTopic] = sv(ev.Topic.String())
	claim[attrOwner] = sv(owner)
	claim[attrLease] = nv(now.Add(lease).UnixMilli())
	claim[attrDone] = bv(false)
	claim[attrTime] = nv(ev.Time.UnixMilli())
	claim[TTLAttribute] = nv(now.Add(s.EventTTL).Unix())
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.table, Item: claim, ConditionExpression: aws.String("attribute_not_exists(pk)"), ReturnConsumedCapacity: total,
	})
	switch {
	case err == nil:
		meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
		return s.number(ctx, ev, owner, historyTTL)
	case !isConditionFailed(err):
		return EventRecord{}, fmt.Errorf("store: claim event %s: %w", ev.ID, err)
	}
	// A redelivery: another attempt holds or held the event.
	rec, err := s.claimEvent(ctx, ev.ID, owner, lease)
	if err != nil || rec.Done || rec.Seq != 0 {
		return rec, err
	}
	// The attempt that claimed it died before it had a number.
	return s.number(ctx, ev, owner, historyTTL)
}

// number draws the topic's next number for an event owner holds and
// records it with the event's history entry.
func (s *Store) number(ctx context.Context, ev publish.Event, owner string, historyTTL time.Duration) (EventRecord, error) {
	tp := ev.Topic.String()
	now := s.now()
	seq, prevPublished, layout, err := s.nextSeq(ctx, tp, ev.Time, now)
	if err != nil {
		return EventRecord{}, err
	}
	items := []types.TransactWriteItem{{Update: &types.Update{
		TableName:                 s.table,
		Key:                       key(prefixEvent+ev.ID, skEvent),
		UpdateExpression:          aws.String("SET #seq = :seq, #nt = :now"),
		ConditionExpression:       aws.String("#owner = :me AND attribute_not_exists(#seq)"),
		ExpressionAttributeNames:  map[string]string{"#seq": attrSeq, "#nt": attrNumbered, "#owner": attrOwner},
		ExpressionAttributeValues: map[string]types.AttributeValue{":seq": uv(seq), ":now": nv(now.UnixMilli()), ":me": sv(owner)},
	}}}
	if ev.History && ev.HasPayload {
		h, err := historyItem(ev.Event, seq, now.Add(historyTTL))
		if err != nil {
			return EventRecord{}, err
		}
		items = append(items, types.TransactWriteItem{Put: &types.Put{TableName: s.table, Item: h}})
	}
	err = s.transact(ctx, items)
	if err == nil {
		rec := EventRecord{Seq: seq, Layout: &layout}
		if prevPublished.After(ev.Time) {
			rec.Overtaken = prevPublished.Sub(ev.Time)
		}
		return rec, nil
	}
	// The number is drawn but no event has it: tell resuming clients so,
	// when the table lets us.
	skipErr := s.skipSeq(ctx, tp, seq, now.Add(historyTTL))
	if reasons, ok := cancelReasons(err); ok && reasonIs(reasons, 0, "ConditionalCheckFailed") {
		// Our lease lapsed and another attempt took the event over.
		if skipErr != nil {
			return EventRecord{}, skipErr
		}
		return EventRecord{}, fmt.Errorf("store: number event %s: taken over meanwhile: %w", ev.ID, ErrInProgress)
	}
	return EventRecord{}, fmt.Errorf("store: record event %s: %w", ev.ID, err)
}

// ReplaceState stores an event's state as its topic's current state,
// unless a later-numbered event's state is stored already (events on one
// topic may be processed out of order). It is one conditional write on the
// topic's state item, outside any transaction, so parallel events on one
// hot topic serialize on it instead of cancelling each other; repeating it
// (a retried event) changes nothing.
func (s *Store) ReplaceState(ctx context.Context, ev publish.Event, seq uint64) error {
	k := key(prefixTopic+ev.Topic.String(), skState)
	cond := aws.String("attribute_not_exists(seq) OR seq < :seq")
	vals := map[string]types.AttributeValue{":seq": uv(seq)}
	var err error
	var cc *types.ConsumedCapacity
	op := "PutItem"
	if len(ev.State) == 0 {
		op = "DeleteItem"
		var out *dynamodb.DeleteItemOutput
		out, err = s.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
			TableName: s.table, Key: k, ConditionExpression: cond, ExpressionAttributeValues: vals, ReturnConsumedCapacity: total,
		})
		if out != nil {
			cc = out.ConsumedCapacity
		}
	} else {
		var out *dynamodb.PutItemOutput
		out, err = s.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: s.table, Item: s.stateItem(ev, seq, k), ConditionExpression: cond, ExpressionAttributeValues: vals, ReturnConsumedCapacity: total,
		})
		if out != nil {
			cc = out.ConsumedCapacity
		}
	}
	meter(ctx, op, ccOne(cc)...)
	if err != nil && !isConditionFailed(err) {
		return fmt.Errorf("store: state of %s: %w", ev.Topic, err)
	}
	return nil
}

// claimEvent takes over an event an earlier attempt began: its record
// comes back with Done when that attempt finished, with Retry when this
// attempt now holds it (the earlier one's lease ran out; Seq is 0 if it
// died before it had a number), and ErrInProgress while the earlier one's
// lease runs.
func (s *Store) claimEvent(ctx context.Context, eventID, owner string, lease time.Duration) (EventRecord, error) {
	eventKey := key(prefixEvent+eventID, skEvent)
	for attempt := 0; attempt < 8; attempt++ {
		got, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: s.table, Key: eventKey, ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
		})
		if err != nil {
			return EventRecord{}, fmt.Errorf("store: claim event %s: %w", eventID, err)
		}
		meter(ctx, "GetItem", ccOne(got.ConsumedCapacity)...)
		if got.Item == nil {
			return EventRecord{}, fmt.Errorf("store: event %s vanished while it was being claimed", eventID)
		}
		rec, retry, err := s.takeOver(ctx, got.Item, eventKey, owner, lease, s.now())
		if !retry {
			return rec, err
		}
	}
	return EventRecord{}, fmt.Errorf("store: claim event %s: it keeps changing under us", eventID)
}

// RenewEvent extends the lease of an attempt that holds an event;
// ErrInProgress when another attempt has taken it over meanwhile.
func (s *Store) RenewEvent(ctx context.Context, eventID, owner string, lease time.Duration) error {
	return s.setLease(ctx, eventID, owner, s.now().Add(lease).UnixMilli())
}

// ReleaseEvent gives up the lease an attempt holds on an event it could not
// finish, so that a retry takes it over at once rather than after the
// lease; nothing when another attempt holds it.
func (s *Store) ReleaseEvent(ctx context.Context, eventID, owner string) error {
	if err := s.setLease(ctx, eventID, owner, 0); err != nil && !errors.Is(err, ErrInProgress) {
		return err
	}
	return nil
}

// setLease moves the lease of an event owner holds to until (Unix ms);
// ErrInProgress when owner no longer holds it.
func (s *Store) setLease(ctx context.Context, eventID, owner string, until int64) error {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(prefixEvent+eventID, skEvent),
		UpdateExpression:          aws.String("SET #lease = :until"),
		ConditionExpression:       aws.String("#owner = :me"),
		ExpressionAttributeNames:  map[string]string{"#owner": attrOwner, "#lease": attrLease},
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": sv(owner), ":until": nv(until)},
		ReturnConsumedCapacity:    total,
	})
	if isConditionFailed(err) {
		return fmt.Errorf("store: lease of event %s: %w", eventID, ErrInProgress)
	}
	if err != nil {
		return fmt.Errorf("store: lease of event %s: %w", eventID, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

// FixCut records that an event is cut into 2^k hash ranges, unless an
// earlier attempt recorded a cut already, and returns the recorded one:
// every attempt cuts the event the same way, so a retried range's
// progress is the same range's. ErrInProgress when owner no longer holds
// the event.
func (s *Store) FixCut(ctx context.Context, eventID, owner string, k int) (int, error) {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(prefixEvent+eventID, skEvent),
		UpdateExpression:          aws.String("SET #cut = if_not_exists(#cut, :k)"),
		ConditionExpression:       aws.String("#owner = :me"),
		ExpressionAttributeNames:  map[string]string{"#owner": attrOwner, "#cut": attrCut},
		ExpressionAttributeValues: map[string]types.AttributeValue{":me": sv(owner), ":k": nv(int64(k))},
		ReturnValues:              types.ReturnValueUpdatedNew,
		ReturnConsumedCapacity:    total,
	})
	if isConditionFailed(err) {
		return 0, fmt.Errorf("store: cut of event %s: %w", eventID, ErrInProgress)
	}
	if err != nil {
		return 0, fmt.Errorf("store: cut of event %s: %w", eventID, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return int(getN(out.Attributes, attrCut)), nil
}

// Event reads an event's record: its number and whether it was fully
// delivered; false when the id is unknown.
func (s *Store) Event(ctx context.Context, eventID string) (EventRecord, bool, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(prefixEvent+eventID, skEvent), ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
	})
	if err != nil {
		return EventRecord{}, false, fmt.Errorf("store: event %s: %w", eventID, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil {
		return EventRecord{}, false, nil
	}
	return EventRecord{
		Seq: getU(out.Item, attrSeq), Done: getBool(out.Item, attrDone),
		Published: time.UnixMilli(getN(out.Item, attrTime)), Numbered: time.UnixMilli(getN(out.Item, attrNumbered)),
		Cut: int(getN(out.Item, attrCut)),
	}, true, nil
}

// takeOver handles an event already recorded: done, held by another
// attempt, or abandoned (its lease expired), which this attempt takes over.
// retry is true when the record changed meanwhile and must be read again.
func (s *Store) takeOver(ctx context.Context, item map[string]types.AttributeValue, eventKey map[string]types.AttributeValue, owner string, lease time.Duration, now time.Time) (rec EventRecord, retry bool, err error) {
	rec = EventRecord{Seq: getU(item, attrSeq), Cut: int(getN(item, attrCut))}
	if getBool(item, attrDone) {
		rec.Done = true
		return rec, false, nil
	}
	if getS(item, attrOwner) != owner && getN(item, attrLease) > now.UnixMilli() {
		return rec, false, ErrInProgress
	}
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:           s.table,
		Key:                 eventKey,
		UpdateExpression:    aws.String("SET #owner = :me, #lease = :until"),
		ConditionExpression: aws.String("attribute_exists(pk) AND #done <> :true AND (#lease < :now OR #owner = :me)"),
		ExpressionAttributeNames: map[string]string{
			"#owner": attrOwner, "#lease": attrLease, "#done": attrDone,
		},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":me": sv(owner), ":until": nv(now.Add(lease).UnixMilli()), ":now": nv(now.UnixMilli()), ":true": bv(true),
		},
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		if isConditionFailed(err) {
			return rec, true, nil // finished or taken meanwhile: look again
		}
		return rec, false, fmt.Errorf("store: take over event: %w", err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	rec.Retry = true
	return rec, false, nil
}

// nextSeq atomically takes a topic's next sequence number. It also
// records the publish time of the event numbered, and returns the one of
// the event that took the previous number (zero for the first), so a
// caller can tell when an event is numbered after one published later,
// and the topic's layout as it was when the number was drawn (the same
// item holds it: no read more).
func (s *Store) nextSeq(ctx context.Context, tp string, published, now time.Time) (uint64, time.Time, Layout, error) {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(prefixTopic+tp, skSeq),
		UpdateExpression:          aws.String("ADD seq :one SET #ttl = :ttl, #pub = :pub"),
		ExpressionAttributeNames:  map[string]string{"#ttl": TTLAttribute, "#pub": attrTime},
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": nv(1), ":ttl": nv(now.Add(s.SeqTTL).Unix()), ":pub": nv(published.UnixMilli())},
		ReturnValues:              types.ReturnValueAllOld,
		ReturnConsumedCapacity:    total,
	})
	if err != nil {
		return 0, time.Time{}, Layout{}, fmt.Errorf("store: next sequence of %s: %w", tp, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	var prev time.Time
	if _, ok := out.Attributes[attrTime]; ok {
		prev = time.UnixMilli(getN(out.Attributes, attrTime))
	}
	return getU(out.Attributes, attrSeq) + 1, prev, layoutOf(out.Attributes), nil
}

// skipSeq marks a sequence number no event will have, for resume.
func (s *Store) skipSeq(ctx context.Context, tp string, seq uint64, expires time.Time) error {
	it := key(historyPK(tp), seqSK(seq))
	it[attrSkip] = bv(true)
	it[TTLAttribute] = nv(expires.Unix())
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: s.table, Item: it, ReturnConsumedCapacity: total})
	if err != nil {
		return fmt.Errorf("store: mark sequence %d of %s skipped: %w", seq, tp, err)
	}
	meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

func (s *Store) stateItem(ev publish.Event, seq uint64, k map[string]types.AttributeValue) map[string]types.AttributeValue {
	frames := make([]types.AttributeValue, len(ev.State))
	for i, f := range ev.State {
		frames[i] = &types.AttributeValueMemberB{Value: f}
	}
	k[attrFrames] = &types.AttributeValueMemberL{Value: frames}
	k[attrSeq] = uv(seq)
	k[attrAt] = nv(s.now().UnixMilli())
	if ev.Audience != nil {
		b, _ := json.Marshal(ev.Audience)
		k[attrAudience] = sv(string(b))
	}
	return k
}

// FinishEvent marks an event delivered, so a redelivery does nothing.
func (s *Store) FinishEvent(ctx context.Context, eventID string) error {
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(prefixEvent+eventID, skEvent),
		UpdateExpression:          aws.String("SET #done = :true REMOVE #lease, #owner"),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		ExpressionAttributeNames:  map[string]string{"#done": attrDone, "#lease": attrLease, "#owner": attrOwner},
		ExpressionAttributeValues: map[string]types.AttributeValue{":true": bv(true)},
		ReturnConsumedCapacity:    total,
	})
	if err != nil {
		return fmt.Errorf("store: finish event %s: %w", eventID, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

// State is a topic's stored current state.
type State struct {
	Frames   [][]byte
	Audience *auth.Audience
	Seq      uint64
}

// GetState reads a topic's state; ErrNotFound when it has none.
func (s *Store) GetState(ctx context.Context, t topic.Pattern) (State, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		// Consistent: a client must not be told "no state" (or refused a
		// state-required scope) just after the state was published.
		TableName: s.table, Key: key(prefixTopic+t.String(), skState), ConsistentRead: aws.Bool(true),
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		return State{}, fmt.Errorf("store: state of %s: %w", t, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	if out.Item == nil {
		return State{}, ErrNotFound
	}
	st := State{Seq: getU(out.Item, attrSeq)}
	if l, ok := out.Item[attrFrames].(*types.AttributeValueMemberL); ok {
		for _, v := range l.Value {
			if b, ok := v.(*types.AttributeValueMemberB); ok {
				st.Frames = append(st.Frames, b.Value)
			}
		}
	}
	if _, ok := out.Item[attrAudience]; ok {
		st.Audience = &auth.Audience{}
		if err := decodeAttr(out.Item, attrAudience, st.Audience); err != nil {
			return State{}, fmt.Errorf("store: state of %s: %w", t, err)
		}
	}
	return st, nil
}

// CurrentSeq is a topic's last sequence number (0 when it has none).
func (s *Store) CurrentSeq(ctx context.Context, t topic.Pattern) (uint64, error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: key(prefixTopic+t.String(), skSeq), ConsistentRead: aws.Bool(true),
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		return 0, fmt.Errorf("store: sequence of %s: %w", t, err)
	}
	meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
	// The item holds the topic's layout too: this container's next
	// subscribes to the topic go to its current level.
	s.cacheLayout(t, out.Item, s.now())
	return getU(out.Item, attrSeq), nil
}

// HistoryEntry is one event kept for resume, with its number. The item
// keeps the event's fields under the attribute names of historyItem; the
// topic is the item's partition key.
type HistoryEntry struct {
	event.Event
	Seq uint64
	// Skip marks a number no event has (see BeginEvent); its Event is
	// empty but for the topic.
	Skip bool
}

func historyPK(t string) string { return prefixHistory + t }
func seqSK(seq uint64) string   { return fmt.Sprintf("%020d", seq) }

func historyItem(ev event.Event, seq uint64, expires time.Time) (map[string]types.AttributeValue, error) {
	it := key(historyPK(ev.Topic.String()), seqSK(seq))
	it[attrID] = sv(ev.ID)
	it[attrTime] = nv(ev.Time.UnixMilli())
	it[attrPayload] = &types.AttributeValueMemberB{Value: ev.Payload}
	it[TTLAttribute] = nv(expires.Unix())
	if ev.Binary {
		it[attrBinary] = bv(true)
	}
	if ev.From != "" {
		it[attrFrom] = sv(ev.From)
	}
	for name, v := range map[string]any{attrAttrs: ev.Attributes, attrProject: ev.Project, attrAudience: ev.Audience} {
		if isEmpty(v) {
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("store: history item: %w", err)
		}
		it[name] = sv(string(b))
	}
	return it, nil
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case filter.Attributes:
		return len(x) == 0
	case filter.Projection:
		return len(x) == 0
	case *auth.Audience:
		return x == nil
	}
	return v == nil
}

// History returns up to limit kept events of a topic after since, in order,
// skipping entries past their retention. An entry whose attributes,
// projection or audience do not decode fails the read with an error that
// names it and wraps ErrUnreadable: replaying it unfiltered, untrimmed or
// to anyone would widen it, and leaving it out would hide a gap.
func (s *Store) History(ctx context.Context, t topic.Pattern, since uint64, limit int) ([]HistoryEntry, error) {
	var out []HistoryEntry
	now := s.now()
	in := &dynamodb.QueryInput{
		TableName:              s.table,
		KeyConditionExpression: aws.String("pk = :pk AND sk > :since"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": sv(historyPK(t.String())), ":since": sv(seqSK(since)),
		},
		ConsistentRead:         aws.Bool(true),
		ReturnConsumedCapacity: total,
	}
	for len(out) < limit {
		in.Limit = aws.Int32(int32(limit - len(out)))
		res, err := s.db.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("store: history of %s: %w", t, err)
		}
		meter(ctx, "Query", ccOne(res.ConsumedCapacity)...)
		for _, it := range res.Items {
			if !alive(it, now) {
				continue
			}
			e := HistoryEntry{
				Event: event.Event{
					ID: getS(it, attrID), Time: time.UnixMilli(getN(it, attrTime)), Topic: t,
					Payload: getB(it, attrPayload), Binary: getBool(it, attrBinary), From: getS(it, attrFrom),
				},
				Seq: parseSeq(getS(it, SortKey)), Skip: getBool(it, attrSkip),
			}
			if err := decodeHistory(it, &e); err != nil {
				return nil, fmt.Errorf("store: history of %s: %w", t, err)
			}
			out = append(out, e)
		}
		if res.LastEvaluatedKey == nil {
			break
		}
		in.ExclusiveStartKey = res.LastEvaluatedKey
	}
	return out, nil
}

// decodeHistory fills e's attributes, projection and audience from a
// history item, those it has.
func decodeHistory(it map[string]types.AttributeValue, e *HistoryEntry) error {
	if _, ok := it[attrAttrs]; ok {
		if err := decodeAttr(it, attrAttrs, &e.Attributes); err != nil {
			return err
		}
	}
	if _, ok := it[attrProject]; ok {
		if err := decodeAttr(it, attrProject, &e.Project); err != nil {
			return err
		}
	}
	if _, ok := it[attrAudience]; ok {
		e.Audience = &auth.Audience{}
		return decodeAttr(it, attrAudience, e.Audience)
	}
	return nil
}

func parseSeq(s string) uint64 {
	var n uint64
	for _, c := range s {
		n = n*10 + uint64(c-'0')
	}
	return n
}

// ClaimTicket records a single-use ticket id; auth.ErrTicketUsed when it
// was used before. The record lives until the ticket would have expired.
func (s *Store) ClaimTicket(ctx context.Context, jti string, expires time.Time) error {
	it := key(prefixTicket+jti, skTicket)
	it[TTLAttribute] = nv(expires.Add(time.Minute).Unix())
	out, err := s.db.PutItem(ctx, &dynamodb.PutItemInput{
		TableName: s.table, Item: it,
		ConditionExpression:    aws.String("attribute_not_exists(pk)"),
		ReturnConsumedCapacity: total,
	})
	if err != nil {
		if isConditionFailed(err) {
			return auth.ErrTicketUsed
		}
		return fmt.Errorf("store: claim ticket: %w", err)
	}
	meter(ctx, "PutItem", ccOne(out.ConsumedCapacity)...)
	return nil
}

package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/auth"
)

// Join and leave events of presence-enabled topics come from the table's
// stream: every subscription to a topic writes its index entry
// (P#<topic>, <connection>), and the entry goes with the subscription,
// the connection, or its TTL. The broadcast function folds those changes
// into a roster per topic, under R#<topic>:
//
//	A#<principal hash>                 the principal: v counts the changes
//	                                   applied to its members, ann whether
//	                                   it was last announced present, n the
//	                                   number of that announcement
//	M#<principal hash>#<connection>    one subscription instance: gen (its
//	                                   index entry's generation), live
//
// and keeps the topic's watchers (subscriptions with "presence": true)
// under Q#<topic>, one entry per connection, so an announcement reads
// its audience and nothing else.
//
// Stream batches may come twice, late, halved, out of order between
// items, or never (a discarded batch). A member entry only moves to a
// higher generation, or from live to removed at the same one, so applying
// any record again, or an older one after a newer one, changes nothing:
// the roster ends the same whatever order the records are applied in. An
// announcement is claimed on the principal item only if no change was
// applied since the members were read (v unchanged), so the last change
// applied always leaves ann equal to what the members say.

// Roster attribute names (the keys are in schema.go's table).
const (
	attrGen       = "gen"
	attrLive      = "live"
	attrVersion   = "v"
	attrAnnounced = "ann"
	attrAnnSeq    = "n"
)

// tombstoneTTL keeps a removed member long enough to refuse its own
// subscription's records delivered late: a stream keeps records 24 hours.
const tombstoneTTL = 25 * time.Hour

// SubscriptionChange is a subscription to an exact topic that came or
// went, read from a stream record of its index entry.
type SubscriptionChange struct {
	Topic        string
	ConnectionID string
	Identity     auth.Identity
	Added        bool
	// Expired: it went with its connection's TTL.
	Expired bool
	// Gen is the generation of the index entry: every write of it (a
	// subscribe, a resubscribe) has a higher one.
	Gen int64
	// Watch: the subscription asked for join and leave events.
	Watch bool
	// ExpiresAt is the index entry's TTL.
	ExpiresAt time.Time
}

// SubscriptionChangeOf reads a stream record of a subscription's index
// entry; false for other records and for wildcard patterns.
func SubscriptionChangeOf(r StreamRecord) (SubscriptionChange, bool) {
	pk, err := imageString(r.Dynamodb.Keys, PartitionKey)
	if err != nil {
		return SubscriptionChange{}, false
	}
	// P#<topic> or, on a level above 0, P#<topic> <L> <b>; sk <hash>#<conn>
	// or, made before buckets, <conn> (layout.go).
	pat, ok := patternOfPK(pk)
	if !ok {
		return SubscriptionChange{}, false
	}
	sk, _ := imageString(r.Dynamodb.Keys, SortKey)
	conn := ""
	if sk != "" {
		conn, _, _ = parseEntrySK(sk)
	}
	c := SubscriptionChange{Topic: pat, ConnectionID: conn, Added: r.EventName != "REMOVE"}
	if strings.ContainsAny(c.Topic, "*>") || sk == "" {
		return SubscriptionChange{}, false
	}
	image := r.Dynamodb.NewImage
	if !c.Added {
		image = r.Dynamodb.OldImage
		c.Expired = r.ByTTL()
	}
	item, err := itemFromJSON(image)
	if err != nil {
		return SubscriptionChange{}, false
	}
	who := getS(item, attrIdentity)
	if who == "" || json.Unmarshal([]byte(who), &c.Identity) != nil {
		return SubscriptionChange{}, false
	}
	c.Gen = getN(item, attrGen)
	c.Watch = getBool(item, attrPresence)
	c.ExpiresAt = time.Unix(getN(item, TTLAttribute), 0)
	return c, true
}

// RosterKey names a principal in a topic's roster.
func RosterKey(id auth.Identity) string {
	if id.Anonymous {
		return "anonymous:"
	}
	return auth.AudienceSub(id.Type, id.Sub)
}

// rosterHash is a principal's fixed-length name in roster keys: a sub may
// hold any character, a hash none that could be read as a separator.
func rosterHash(id auth.Identity) string {
	h := sha256.Sum256([]byte(RosterKey(id)))
	return hex.EncodeToString(h[:16])
}

func rosterWhoKey(topicName string, id auth.Identity) map[string]types.AttributeValue {
	return key(prefixRoster+topicName, skRosterWho+rosterHash(id))
}

// ApplyToRoster applies one subscription change to its topic's roster and
// watchers. It reports false when the change was already applied, or is
// older than what the roster holds (a late or repeated record): nothing
// changed.
func (s *Store) ApplyToRoster(ctx context.Context, c SubscriptionChange) (bool, error) {
	now := s.now()
	tomb := nv(now.Add(tombstoneTTL).Unix())
	vals := map[string]types.AttributeValue{":g": nv(c.Gen), ":t": bv(true)}
	member := &types.Update{
		TableName: s.table,
		Key:       key(prefixRoster+c.Topic, skRosterConn+rosterHash(c.Identity)+"#"+c.ConnectionID),
		ExpressionAttributeNames: map[string]string{
			"#ttl": TTLAttribute, "#gen": attrGen, "#live": attrLive,
		},
		ExpressionAttributeValues: vals,
	}
	if c.Added {
		member.UpdateExpression = aws.String("SET #gen = :g, #live = :t, #ttl = :exp")
		member.ConditionExpression = aws.String("attribute_not_exists(#gen) OR #gen < :g")
		vals[":exp"] = nv(c.ExpiresAt.Unix())
	} else {
		member.UpdateExpression = aws.String("SET #gen = :g, #live = :f, #ttl = :ttl")
		member.ConditionExpression = aws.String("attribute_not_exists(#gen) OR #gen < :g OR (#gen = :g AND #live = :t)")
		vals[":f"], vals[":ttl"] = bv(false), tomb
	}
	who, _ := json.Marshal(c.Identity)
	principal := &types.Update{
		TableName:                 s.table,
		Key:                       rosterWhoKey(c.Topic, c.Identity),
		UpdateExpression:          aws.String("ADD " + attrVersion + " :one SET " + attrIdentity + " = :who, #ttl = :ttl"),
		ExpressionAttributeNames:  map[string]string{"#ttl": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{":one": nv(1), ":who": sv(string(who)), ":ttl": tomb},
	}
	watcher := types.TransactWriteItem{Delete: &types.Delete{TableName: s.table, Key: key(prefixWatcher+c.Topic, c.ConnectionID)}}
	if c.Added && c.Watch {
		item := key(prefixWatcher+c.Topic, c.ConnectionID)
		item[TTLAttribute] = nv(c.ExpiresAt.Unix())
		item[attrIdentity] = sv(string(who))
		watcher = types.TransactWriteItem{Put: &types.Put{TableName: s.table, Item: item}}
	}
	err := s.transact(ctx, []types.TransactWriteItem{{Update: member}, {Update: principal}, watcher})
	if err == nil {
		return true, nil
	}
	if reasons, ok := cancelReasons(err); ok && reasonIs(reasons, 0, "ConditionalCheckFailed") {
		return false, nil
	}
	return false, fmt.Errorf("store: roster of %s: %w", c.Topic, err)
}

// Announcement is a join or a leave claimed for delivery.
type Announcement struct {
	Topic    string
	Identity auth.Identity
	Present  bool
	// Seq numbers the principal's announcements in the topic: a repeated
	// delivery has the same, a later announcement a higher one.
	Seq int64
}

// ErrRosterBusy: the roster kept changing while an announcement was
// being claimed; the caller retries later.
var ErrRosterBusy = errors.New("store: roster changed under every attempt to announce")

// rosterAttempts bounds the rounds of DueAnnouncement under contention.
const rosterAttempts = 8

// DueAnnouncement brings a principal's announced presence in a topic in
// line with its members: when they say present and the last announcement
// said absent (or the reverse), it claims the announcement and returns it
// (ok). It claims nothing when the two agree, so calling it again, or
// for a change that changed nothing, is free of effect.
func (s *Store) DueAnnouncement(ctx context.Context, topicName string, id auth.Identity) (a Announcement, ok bool, err error) {
	for range rosterAttempts {
		out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
			TableName: s.table, Key: rosterWhoKey(topicName, id),
			ConsistentRead: aws.Bool(true), ReturnConsumedCapacity: total,
		})
		if err != nil {
			return a, false, fmt.Errorf("store: roster of %s: %w", topicName, err)
		}
		meter(ctx, "GetItem", ccOne(out.ConsumedCapacity)...)
		if out.Item == nil {
			return a, false, nil
		}
		present, err := s.rosterPresent(ctx, topicName, id)
		if err != nil {
			return a, false, err
		}
		if present == getBool(out.Item, attrAnnounced) {
			return a, false, nil
		}
		claim, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 s.table,
			Key:                       rosterWhoKey(topicName, id),
			UpdateExpression:          aws.String("SET " + attrAnnounced + " = :p ADD " + attrAnnSeq + " :one"),
			ConditionExpression:       aws.String(attrVersion + " = :v"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":p": bv(present), ":one": nv(1), ":v": nv(getN(out.Item, attrVersion))},
			ReturnValues:              types.ReturnValueUpdatedNew,
			ReturnConsumedCapacity:    total,
		})
		if isConditionFailed(err) {
			continue // a change landed since the read: look again
		}
		if err != nil {
			return a, false, fmt.Errorf("store: roster of %s: %w", topicName, err)
		}
		meter(ctx, "UpdateItem", ccOne(claim.ConsumedCapacity)...)
		return Announcement{Topic: topicName, Identity: id, Present: present, Seq: getN(claim.Attributes, attrAnnSeq)}, true, nil
	}
	return a, false, ErrRosterBusy
}

// Unannounce gives back an announcement that could not be handed on, so
// the next DueAnnouncement claims it again; it does nothing when another
// announcement followed it meanwhile.
func (s *Store) Unannounce(ctx context.Context, a Announcement) error {
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       rosterWhoKey(a.Topic, a.Identity),
		UpdateExpression:          aws.String("SET " + attrAnnounced + " = :was"),
		ConditionExpression:       aws.String(attrAnnSeq + " = :n"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":was": bv(!a.Present), ":n": nv(a.Seq)},
	})
	if err != nil && !isConditionFailed(err) {
		return fmt.Errorf("store: roster of %s: %w", a.Topic, err)
	}
	return nil
}

// rosterPresent reports whether any of the principal's subscriptions to
// the topic is live: one consistent query of its own members (at most its
// connection cap, and their tombstones).
func (s *Store) rosterPresent(ctx context.Context, topicName string, id auth.Identity) (bool, error) {
	now := s.now()
	present := false
	err := s.queryAll(ctx, &dynamodb.QueryInput{
		TableName:              s.table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :m)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": sv(prefixRoster + topicName), ":m": sv(skRosterConn + rosterHash(id) + "#"),
		},
		ProjectionExpression:     aws.String("#live, #ttl"),
		ExpressionAttributeNames: map[string]string{"#live": attrLive, "#ttl": TTLAttribute},
		ConsistentRead:           aws.Bool(true),
	}, func(item map[string]types.AttributeValue) {
		if getBool(item, attrLive) && alive(item, now) {
			present = true
		}
	})
	if err != nil {
		return false, fmt.Errorf("store: roster of %s: %w", topicName, err)
	}
	return present, nil
}

// Watchers reads one page of the connections that asked for a topic's
// join and leave events, from cursor on (at most limit). The read is
// consistent: a watcher added a moment before an announcement (its own
// join among them) must get it.
func (s *Store) Watchers(ctx context.Context, topicName string, cursor Cursor, limit int) (conns []string, next Cursor, err error) {
	in := &dynamodb.QueryInput{
		TableName:                 s.table,
		ConsistentRead:            aws.Bool(true),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": sv(prefixWatcher + topicName)},
		ProjectionExpression:      aws.String("sk, #ttl"),
		ExpressionAttributeNames:  map[string]string{"#ttl": TTLAttribute},
		ReturnConsumedCapacity:    total,
	}
	if limit > 0 {
		in.Limit = aws.Int32(int32(limit))
	}
	if cursor != "" {
		in.ExclusiveStartKey = key(prefixWatcher+topicName, string(cursor))
	}
	out, err := s.db.Query(ctx, in)
	if err != nil {
		return nil, "", fmt.Errorf("store: watchers of %s: %w", topicName, err)
	}
	meter(ctx, "Query", ccOne(out.ConsumedCapacity)...)
	now := s.now()
	for _, item := range out.Items {
		if alive(item, now) {
			conns = append(conns, getS(item, SortKey))
		}
	}
	if out.LastEvaluatedKey != nil {
		next = Cursor(getS(out.LastEvaluatedKey, SortKey))
	}
	return conns, next, nil
}

// AnnouncementID names an announcement for the clients that receive it
// twice: the principal's hash and the announcement's number.
func AnnouncementID(a Announcement) string {
	return rosterHash(a.Identity)[:12] + "." + strconv.FormatInt(a.Seq, 10)
}

// RosterState reads what a topic's roster says of a principal: whether
// any of its subscriptions is live, and whether it was last announced
// present. Both agree once every change is applied and announced.
func (s *Store) RosterState(ctx context.Context, topicName string, id auth.Identity) (present, announced bool, err error) {
	out, err := s.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: s.table, Key: rosterWhoKey(topicName, id), ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return false, false, fmt.Errorf("store: roster of %s: %w", topicName, err)
	}
	present, err = s.rosterPresent(ctx, topicName, id)
	return present, getBool(out.Item, attrAnnounced), err
}

package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/wsgate/wsgate/shared/auth"
)

// Join and leave events of presence-enabled topics come from the table's
// stream too: every subscription to a topic writes its index entry
// (P#<topic>, <connection>), and the entry goes with the subscription,
// the connection, or its TTL. The broadcast function folds those changes
// into a roster per topic and principal, (R#<topic>, <ptype>:<sub>), whose
// set of connection ids only grows by ADD and shrinks by DELETE: a batch
// applied twice (a retry) changes nothing. The roster remembers whether
// the principal was last announced present; a join or leave is due when
// that differs from whether any connection is left, so a principal that
// drops and comes back within a batch announces nothing, and an
// announcement whose delivery failed is due again at the retry.

const (
	prefixRoster   = "R#"
	attrRosterConn = "conns"
	attrAnnounced  = "ann"
)

// SubscriptionChange is a subscription to an exact topic that came or
// went, read from a stream record of its index entry.
type SubscriptionChange struct {
	Topic        string
	ConnectionID string
	Identity     auth.Identity
	Added        bool
	// Expired: it went with its connection's TTL.
	Expired bool
}

// SubscriptionChangeOf reads a stream record of a subscription's index
// entry; false for other records and for wildcard patterns.
func SubscriptionChangeOf(r StreamRecord) (SubscriptionChange, bool) {
	pk, err := imageString(r.Dynamodb.Keys, PartitionKey)
	if err != nil || !strings.HasPrefix(pk, prefixPattern) {
		return SubscriptionChange{}, false
	}
	sk, _ := imageString(r.Dynamodb.Keys, SortKey)
	c := SubscriptionChange{Topic: pk[len(prefixPattern):], ConnectionID: sk, Added: r.EventName != "REMOVE"}
	if strings.ContainsAny(c.Topic, "*>") || sk == "" {
		return SubscriptionChange{}, false
	}
	image := r.Dynamodb.NewImage
	if !c.Added {
		image = r.Dynamodb.OldImage
		c.Expired = r.ByTTL()
	}
	who, err := imageString(image, attrIdentity)
	if err != nil || who == "" || json.Unmarshal([]byte(who), &c.Identity) != nil {
		return SubscriptionChange{}, false
	}
	return c, true
}

// RosterKey names a principal in a topic's roster.
func RosterKey(id auth.Identity) string {
	if id.Anonymous {
		return "anonymous:"
	}
	return auth.AudienceSub(id.Type, id.Sub)
}

// ApplyToRoster adds or removes the change's connection from its topic's
// roster and reports whether the principal's presence must be announced:
// join (present, not announced) or leave (announced, none left).
func (s *Store) ApplyToRoster(ctx context.Context, c SubscriptionChange) (announce, present bool, err error) {
	op := "DELETE"
	if c.Added {
		op = "ADD"
	}
	k := key(prefixRoster+c.Topic, RosterKey(c.Identity))
	out, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       k,
		UpdateExpression:          aws.String(op + " " + attrRosterConn + " :c SET #ttl = :ttl"),
		ExpressionAttributeNames:  map[string]string{"#ttl": TTLAttribute},
		ExpressionAttributeValues: map[string]types.AttributeValue{":c": &types.AttributeValueMemberSS{Value: []string{c.ConnectionID}}, ":ttl": nv(s.now().Add(registryTTL).Unix())},
		ReturnValues:              types.ReturnValueAllNew,
		ReturnConsumedCapacity:    total,
	})
	if err != nil {
		return false, false, fmt.Errorf("store: roster of %s: %w", c.Topic, err)
	}
	meter(ctx, "UpdateItem", ccOne(out.ConsumedCapacity)...)
	ss, _ := out.Attributes[attrRosterConn].(*types.AttributeValueMemberSS)
	present = ss != nil && len(ss.Value) > 0
	return present != getBool(out.Attributes, attrAnnounced), present, nil
}

// Announced records that the principal's presence is announced as
// present, unless another announcement did meanwhile (false then: nothing
// to do). A failed delivery sets it back (present: !present).
func (s *Store) Announced(ctx context.Context, topicName string, id auth.Identity, present bool) (bool, error) {
	cond := "attribute_not_exists(" + attrAnnounced + ") OR " + attrAnnounced + " <> :p"
	_, err := s.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName:                 s.table,
		Key:                       key(prefixRoster+topicName, RosterKey(id)),
		UpdateExpression:          aws.String("SET " + attrAnnounced + " = :p"),
		ConditionExpression:       aws.String(cond),
		ExpressionAttributeValues: map[string]types.AttributeValue{":p": bv(present)},
		ReturnConsumedCapacity:    total,
	})
	var ccf *types.ConditionalCheckFailedException
	if asCCF(err, &ccf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: roster of %s: %w", topicName, err)
	}
	return true, nil
}

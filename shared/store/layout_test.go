package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

// oldHistoryItem is a history entry exactly as the store has written it
// since history was kept: the item layout entries already in a table have.
func oldHistoryItem(ttl int64) map[string]types.AttributeValue {
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	return map[string]types.AttributeValue{
		"pk":    s("H#t.x"),
		"sk":    s("00000000000000000007"),
		"id":    s("e7"),
		"t":     n("1800000000123"),
		"pl":    &types.AttributeValueMemberB{Value: []byte{0x0a, 0x03, 'a', 'b', 'c'}},
		"bin":   &types.AttributeValueMemberBOOL{Value: true},
		"from":  s("user:alice"),
		"attrs": s(`{"device_id":["1"],"metrics":["h","t"]}`),
		"proj":  s(`{"metrics":"telemetry"}`),
		"aud":   s(`{"orgs":["acme"],"roles":["admin"]}`),
		"ttl":   n(strconv.FormatInt(ttl, 10)),
	}
}

// History written before the event became one type must still be read,
// field for field: a table holds entries for as long as their retention.
func TestHistory_DecodesAnItemInTheOldLayout(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: oldHistoryItem(f.now.Add(time.Hour).Unix())})
	require.NoError(t, err)

	h, err := f.s.History(ctx, topic.MustPattern("t.x"), 0, 10)
	require.NoError(t, err)
	require.Len(t, h, 1)
	e := h[0]
	assert.Equal(t, uint64(7), e.Seq)
	assert.Equal(t, "t.x", e.Topic.String(), "the topic is the item's key")
	assert.False(t, e.Skip)
	assert.Equal(t, "e7", e.ID)
	assert.Equal(t, time.UnixMilli(1800000000123), e.Time)
	assert.Equal(t, []byte{0x0a, 0x03, 'a', 'b', 'c'}, e.Payload)
	assert.True(t, e.Binary)
	assert.Equal(t, "user:alice", e.From)
	assert.Equal(t, filter.Attributes{"device_id": {"1"}, "metrics": {"h", "t"}}, e.Attributes)
	assert.Equal(t, filter.Projection{"metrics": "telemetry"}, e.Project)
	assert.Equal(t, &auth.Audience{Orgs: []string{"acme"}, Roles: []string{"admin"}}, e.Audience)
}

// A kept event is written in the same layout as before, attribute for
// attribute, so that older and newer functions can share one table during
// a deploy.
func TestHistory_ItemLayoutIsUnchanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ev := event(t, "e1", "t.x", `{"topic":"t.x","payload_base64":"CgNhYmM=","attributes":{"device_id":1,"metrics":["t","h"]},"audience":{"orgs":["acme"],"roles":["admin"]},"from":"user:alice","history":true}`)
	_, err := f.s.BeginEvent(ctx, ev, "w1", time.Minute, time.Hour)
	require.NoError(t, err)
	got, err := f.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(f.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "H#t.x"}, "sk": &types.AttributeValueMemberS{Value: "00000000000000000001"},
		},
	})
	require.NoError(t, err)
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	assert.Equal(t, map[string]types.AttributeValue{
		"pk":    s("H#t.x"),
		"sk":    s("00000000000000000001"),
		"id":    s("e1"),
		"t":     n("1800000000000"),
		"pl":    &types.AttributeValueMemberB{Value: []byte{0x0a, 0x03, 'a', 'b', 'c'}},
		"bin":   &types.AttributeValueMemberBOOL{Value: true},
		"from":  s("user:alice"),
		"attrs": s(`{"device_id":["1"],"metrics":["h","t"]}`),
		"aud":   s(`{"orgs":["acme"],"roles":["admin"]}`),
		"ttl":   n("1800003600"),
	}, got.Item)
}

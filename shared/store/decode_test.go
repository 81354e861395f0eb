package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// corrupt overwrites one string attribute of a stored item, as a bad
// migration, a hand edit or a bug elsewhere would.
func (f *fixture) corrupt(t *testing.T, pk, sk, attr, value string) {
	t.Helper()
	_, err := f.db.UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(f.table),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk},
		},
		UpdateExpression:          aws.String("SET #a = :v"),
		ConditionExpression:       aws.String("attribute_exists(pk)"),
		ExpressionAttributeNames:  map[string]string{"#a": attr},
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: value}},
	})
	require.NoError(t, err)
}

// A stored filter that does not decode must not read as no filter (which
// lets everything through): the subscriber is left out, named in an error,
// and the others are still returned.
func TestSubscribers_UnreadableFilterFailsClosedNamingTheItem(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	narrow := filter.Set{"severity": {"critical"}}
	for _, id := range []string{"good", "bad", "nobody"} {
		c := f.conn(id, "u-"+id)
		require.NoError(t, f.s.PutConnection(ctx, c, []store.NewSubscription{{Pattern: topic.MustPattern("a.b"), Filters: narrow}}))
	}
	f.corrupt(t, "P#a.b", store.EntrySK("bad"), "f", `{"severity":`)
	f.corrupt(t, "P#a.b", store.EntrySK("nobody"), "who", `not json`)

	subs, next, err := f.s.Subscribers(ctx, "a.b", "", 0)
	require.ErrorIs(t, err, store.ErrUnreadable)
	assert.Empty(t, next)
	require.Len(t, subs, 1, "only the readable subscriber")
	assert.Equal(t, "good", subs[0].ConnectionID)
	assert.Equal(t, narrow, subs[0].Filters)
	bad := store.Unreadable(err)
	require.Len(t, bad, 2)
	assert.Contains(t, err.Error(), `"f" of item P#a.b / `+store.EntrySK("bad"))
	assert.Contains(t, err.Error(), `"who" of item P#a.b / `+store.EntrySK("nobody"))

	// The reverse entries, which replay filters with, fail closed too.
	f.corrupt(t, "C#bad", "S#a.b", "f", `[`)
	mine, err := f.s.ConnectionSubscriptions(ctx, "bad")
	require.ErrorIs(t, err, store.ErrUnreadable)
	assert.Contains(t, err.Error(), "C#bad / S#a.b")
	assert.Empty(t, mine)
}

// History entries are replayed filtered by their attributes and trimmed by
// their projection: unreadable ones fail the read, naming the entry.
func TestHistory_UnreadableAttributesOrProjectionFailClosed(t *testing.T) {
	for _, attr := range []string{"attrs", "proj", "aud"} {
		t.Run(attr, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			ev := event(t, "e1", "t.x", `{"topic":"t.x","payload":{"m":{"a":1,"b":2}},"attributes":{"k":"v"},"project":{"k":"m"},"audience":{"orgs":["acme"]},"history":true}`)
			rec, err := f.s.BeginEvent(ctx, ev, "w1", time.Minute, time.Hour)
			require.NoError(t, err)
			require.Equal(t, uint64(1), rec.Seq)
			h, err := f.s.History(ctx, topic.MustPattern("t.x"), 0, 10)
			require.NoError(t, err)
			require.Len(t, h, 1)

			f.corrupt(t, "H#t.x", "00000000000000000001", attr, `{"k":`)
			h, err = f.s.History(ctx, topic.MustPattern("t.x"), 0, 10)
			require.ErrorIs(t, err, store.ErrUnreadable)
			assert.Contains(t, err.Error(), `"`+attr+`" of item H#t.x / 00000000000000000001`)
			assert.Empty(t, h)
		})
	}
}

// A connection record whose principal does not decode is refused by name;
// deleting it still removes everything it has.
func TestConnection_UnreadablePrincipalFailsClosed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), []store.NewSubscription{sub("a.*")}))
	f.corrupt(t, "C#c1", "#META", "p", `{"sub":`)

	_, err := f.s.GetConnection(ctx, "c1")
	require.ErrorIs(t, err, store.ErrUnreadable)
	assert.Contains(t, err.Error(), "C#c1 / #META")
	_, err = f.s.Unsubscribe(ctx, "c1", topic.MustPattern("a.*"))
	require.ErrorIs(t, err, store.ErrUnreadable, "the principal whose wildcard hold it releases is unknown")

	_, err = f.s.DeleteConnection(ctx, "c1")
	require.ErrorIs(t, err, store.ErrUnreadable, "reported")
	_, err = f.s.GetConnection(ctx, "c1")
	require.ErrorIs(t, err, store.ErrNotFound, "and removed all the same")
	subs, _, err := f.s.Subscribers(ctx, "a.*", "", 0)
	require.NoError(t, err)
	assert.Empty(t, subs)
}

package store

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/topic"
)

// dynamoJSON writes an item in DynamoDB's JSON form, as stream records
// carry it.
func dynamoJSON(t *testing.T, item map[string]types.AttributeValue) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	for k, v := range item {
		var b []byte
		var err error
		switch x := v.(type) {
		case *types.AttributeValueMemberS:
			b, err = json.Marshal(map[string]string{"S": x.Value})
		case *types.AttributeValueMemberN:
			b, err = json.Marshal(map[string]string{"N": x.Value})
		case *types.AttributeValueMemberBOOL:
			b, err = json.Marshal(map[string]bool{"BOOL": x.Value})
		case *types.AttributeValueMemberB:
			b, err = json.Marshal(map[string]string{"B": base64.StdEncoding.EncodeToString(x.Value)})
		case *types.AttributeValueMemberSS:
			b, err = json.Marshal(map[string][]string{"SS": x.Value})
		default:
			t.Fatalf("attribute %s: %T not covered by the test", k, v)
		}
		require.NoError(t, err)
		out[k] = b
	}
	return out
}

func record(t *testing.T, name string, oldC, newC *Connection, ttl bool) StreamRecord {
	t.Helper()
	var r StreamRecord
	r.EventID, r.EventName = "rec-"+name, name
	r.Dynamodb.ApproximateCreationDateTime = 1796124000
	r.Dynamodb.Keys = dynamoJSON(t, key(connPK("c1"), skMeta))
	for c, dst := range map[*Connection]*map[string]json.RawMessage{oldC: &r.Dynamodb.OldImage, newC: &r.Dynamodb.NewImage} {
		if c == nil {
			continue
		}
		it, err := c.item()
		require.NoError(t, err)
		*dst = dynamoJSON(t, it)
	}
	if ttl {
		r.UserIdentity = &struct {
			Type        string `json:"type"`
			PrincipalID string `json:"principalId"`
		}{"Service", "dynamodb.amazonaws.com"}
	}
	// Through JSON, as the function receives it.
	b, err := json.Marshal(r)
	require.NoError(t, err)
	var back StreamRecord
	require.NoError(t, json.Unmarshal(b, &back))
	return back
}

func TestLifecycle_StreamRecordsOpenAndCloseConnections(t *testing.T) {
	at := time.UnixMilli(1796123000123)
	authed := Connection{ID: "c1", Principal: auth.Principal{Identity: auth.Identity{Sub: "alice", Type: "user", Orgs: []string{"acme"}}}, Scope: "t.1", ConnectedAt: at, ExpiresAt: at.Add(time.Hour)}
	pending := authed
	pending.Principal, pending.Pending, pending.AuthDeadline = auth.Anonymous(), true, at.Add(5*time.Second)
	busier := authed
	busier.Subscriptions = 3

	cases := []struct {
		name     string
		rec      StreamRecord
		want     bool
		opened   bool
		byMsg    bool
		expired  bool
		wantConn string
	}{
		{"opened at the handshake", record(t, "INSERT", nil, &authed, false), true, true, false, false, "alice"},
		{"pending: not yet", record(t, "INSERT", nil, &pending, false), false, false, false, false, ""},
		{"opened by an auth message", record(t, "MODIFY", &pending, &authed, false), true, true, true, false, "alice"},
		{"a counter changed", record(t, "MODIFY", &authed, &busier, false), false, false, false, false, ""},
		{"closed", record(t, "REMOVE", &authed, nil, false), true, false, false, false, "alice"},
		{"expired (TTL)", record(t, "REMOVE", &authed, nil, true), true, false, false, true, "alice"},
		{"a pending one went: never opened", record(t, "REMOVE", &pending, nil, false), false, false, false, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, ok, err := LifecycleOf(c.rec)
			require.NoError(t, err)
			require.Equal(t, c.want, ok)
			if !ok {
				return
			}
			assert.Equal(t, c.opened, l.Opened)
			assert.Equal(t, c.byMsg, l.ByAuthMessage)
			assert.Equal(t, c.expired, l.Expired)
			assert.Equal(t, c.wantConn, l.Conn.Principal.Sub)
			assert.Equal(t, "c1", l.Conn.ID)
			assert.Equal(t, "t.1", l.Conn.Scope)
			assert.Equal(t, []string{"acme"}, l.Conn.Principal.Orgs)
			assert.True(t, l.Conn.ConnectedAt.Equal(at))
			assert.Equal(t, "rec-"+c.rec.EventName, l.ID)
			assert.Equal(t, int64(1796124000), l.At.Unix())
		})
	}
}

// TestLifecycle_ATTLDeletionIsAnExpiredClose: the README names it for what
// the local stack cannot show (DynamoDB Local's records carry no
// userIdentity).
func TestLifecycle_ATTLDeletionIsAnExpiredClose(t *testing.T) {
	c := Connection{ID: "c1", Principal: auth.Principal{Identity: auth.Identity{Sub: "ghost", Type: "device"}}, ConnectedAt: time.Now()}
	l, ok, err := LifecycleOf(record(t, "REMOVE", &c, nil, true))
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, l.Expired)
	assert.False(t, l.Opened)
}

func TestLifecycle_OtherItemsAndBadRecords(t *testing.T) {
	var sub StreamRecord
	sub.EventName = "INSERT"
	sub.Dynamodb.Keys = dynamoJSON(t, key(connPK("c1"), skSubPrefix+"a.b"))
	_, ok, err := LifecycleOf(sub)
	require.NoError(t, err)
	assert.False(t, ok, "a subscription item")

	var meta StreamRecord
	meta.EventName = "INSERT"
	meta.Dynamodb.Keys = dynamoJSON(t, key(connPK("c1"), skMeta))
	_, _, err = LifecycleOf(meta)
	assert.ErrorContains(t, err, "NEW_AND_OLD_IMAGES", "a stream without images is a configuration error")

	meta.Dynamodb.NewImage = map[string]json.RawMessage{"p": json.RawMessage(`{"X":"?"}`)}
	_, _, err = LifecycleOf(meta)
	assert.Error(t, err)

	assert.True(t, IsStream(json.RawMessage(`{"eventSource": "aws:dynamodb"}`)))
	assert.False(t, IsStream(json.RawMessage(`{"eventSource":"aws:sqs"}`)))
}

func TestAttributeFromJSON_EveryType(t *testing.T) {
	in := `{"s":{"S":"x"},"n":{"N":"1.5"},"b":{"B":"AQI="},"t":{"BOOL":true},"z":{"NULL":true},"ss":{"SS":["a","b"]},` +
		`"ns":{"NS":["1"]},"bs":{"BS":["AQ=="]},"m":{"M":{"k":{"S":"v"}}},"l":{"L":[{"N":"2"},{"S":"y"}]}}`
	var image map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(in), &image))
	item, err := itemFromJSON(image)
	require.NoError(t, err)
	assert.Equal(t, &types.AttributeValueMemberB{Value: []byte{1, 2}}, item["b"])
	assert.Equal(t, &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberN{Value: "2"}, &types.AttributeValueMemberS{Value: "y"}}}, item["l"])
	assert.Equal(t, &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": &types.AttributeValueMemberS{Value: "v"}}}, item["m"])
	assert.Equal(t, &types.AttributeValueMemberBS{Value: [][]byte{{1}}}, item["bs"])
	assert.Len(t, item, 10)
	for _, bad := range []string{`{"Q":"x"}`, `{"S":"x","N":"1"}`, `"x"`} {
		_, err := attributeFromJSON(json.RawMessage(bad))
		assert.Error(t, err, bad)
	}
}

func TestSubscriptionChangeOf_ReadsIndexEntriesOfExactTopics(t *testing.T) {
	c := Connection{ID: "c1", Principal: auth.Principal{Identity: auth.Identity{Sub: "alice", Type: "user"}}, ExpiresAt: time.Now().Add(time.Hour)}
	s := &Store{now: time.Now}
	entry := func(pattern, name string, ttl bool, level ...int) StreamRecord {
		at := placement{pk: prefixPattern + pattern}
		if len(level) > 0 {
			at = placement{pk: bucketPK(pattern, level[0], bucket(Hash(c.ID), level[0])), level: level[0]}
		}
		items := s.subscriptionItems(c, NewSubscription{Pattern: mustPattern(t, pattern)}, at)
		var r StreamRecord
		r.EventID, r.EventName = "rec", name
		r.Dynamodb.Keys = dynamoJSON(t, key(getS(items[1], PartitionKey), getS(items[1], SortKey)))
		delete(items[1], PartitionKey)
		if name == "REMOVE" {
			r.Dynamodb.OldImage = dynamoJSON(t, items[1])
		} else {
			r.Dynamodb.NewImage = dynamoJSON(t, items[1])
		}
		if ttl {
			r.UserIdentity = &struct {
				Type        string `json:"type"`
				PrincipalID string `json:"principalId"`
			}{"Service", "dynamodb.amazonaws.com"}
		}
		return r
	}
	got, ok := SubscriptionChangeOf(entry("room.1", "INSERT", false))
	require.True(t, ok)
	assert.Positive(t, got.Gen, "the entry's generation")
	assert.Equal(t, c.ExpiresAt.Unix(), got.ExpiresAt.Unix())
	got.Gen, got.ExpiresAt = 0, time.Time{}
	assert.Equal(t, SubscriptionChange{Topic: "room.1", ConnectionID: "c1", Identity: c.Principal.Identity, Added: true}, got)
	got, ok = SubscriptionChangeOf(entry("room.1", "REMOVE", true))
	require.True(t, ok)
	assert.True(t, !got.Added && got.Expired)
	got, ok = SubscriptionChangeOf(entry("room.#1", "INSERT", false, 3))
	require.True(t, ok, "an entry on a level above 0")
	assert.Equal(t, "room.#1", got.Topic, "a topic may hold '#': the level is after a space")
	assert.Equal(t, "c1", got.ConnectionID)
	old := entry("room.1", "INSERT", false)
	old.Dynamodb.Keys = dynamoJSON(t, key(prefixPattern+"room.1", "c1"))
	got, ok = SubscriptionChangeOf(old)
	require.True(t, ok, "an entry made before buckets")
	assert.Equal(t, "c1", got.ConnectionID)
	_, ok = SubscriptionChangeOf(entry("room.*", "INSERT", false))
	assert.False(t, ok, "a wildcard pattern is nobody's presence")
	_, ok = SubscriptionChangeOf(record(t, "INSERT", nil, &c, false))
	assert.False(t, ok, "a connection record")
}

func mustPattern(t *testing.T, p string) topic.Pattern {
	t.Helper()
	pat, err := topic.ParsePattern(p)
	require.NoError(t, err)
	return pat
}

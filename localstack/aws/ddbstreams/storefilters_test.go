package ddbstreams_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/ddbstreams"
	"github.com/wsgate/wsgate/localstack/aws/eventpattern"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/topic"
)

// storeFixture is a store on a fresh table with the stream on
// (storetest's tables have none), at a fixed time.
type storeFixture struct {
	s   *store.Store
	now time.Time
}

func (f *storeFixture) conn(id, sub string) store.Connection {
	return store.Connection{
		ID:          id,
		Principal:   auth.Principal{Identity: auth.Identity{Sub: sub, Type: "user", Orgs: []string{"acme"}}, Topics: []string{">"}},
		ConnectedAt: f.now, ExpiresAt: f.now.Add(2 * time.Hour), Limits: limits,
	}
}

// pending is an anonymous connection waiting for its auth message.
func (f *storeFixture) pending(id, ip string) store.Connection {
	return store.Connection{
		ID: id, Principal: auth.Anonymous(), Pending: true, AuthDeadline: f.now.Add(5 * time.Second),
		ConnectedAt: f.now, ExpiresAt: f.now.Add(2 * time.Hour), Limits: limits, SourceIP: ip,
		MaxPendingPerIP: 10, MaxPending: 10,
	}
}

var limits = config.Limits{MaxMessageBytes: 1024, MessagesPerSecond: 3, MaxConnectionsPerPrincipal: 5, MaxSubscriptions: 4}

func sub(p string) store.NewSubscription { return store.NewSubscription{Pattern: topic.MustPattern(p)} }

// streamRecords records every stream record of the table, as the event
// source mapping reads them before filtering.
type streamRecords struct {
	mu  sync.Mutex
	all []json.RawMessage
}

func watchStream(t *testing.T) (*storeFixture, *streamRecords) {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "wsgate-stream-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	db := storetest.Client(t)
	require.NoError(t, store.CreateTableFrom(ctx, db, store.CreateTableInput(table)))
	f := &storeFixture{now: time.Unix(1_800_000_000, 0)}
	f.s = store.New(db, table).WithClock(func() time.Time { return f.now })
	recs := &streamRecords{}
	require.NoError(t, ddbstreams.Mapping{
		Endpoint: storetest.Endpoint(t), Table: table, Window: 20 * time.Millisecond, Poll: 50 * time.Millisecond,
		Invoke: func(_ context.Context, payload []byte) ([]byte, error) {
			var batch struct{ Records []json.RawMessage }
			if err := json.Unmarshal(payload, &batch); err != nil {
				return nil, err
			}
			recs.mu.Lock()
			recs.all = append(recs.all, batch.Records...)
			recs.mu.Unlock()
			return nil, nil
		},
	}.Start(ctx))
	return f, recs
}

// until waits for a record that done accepts and returns every record so far.
func (r *streamRecords) until(t *testing.T, done func(store.StreamRecord) bool) []json.RawMessage {
	t.Helper()
	var out []json.RawMessage
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		out = append(out[:0], r.all...)
		for _, raw := range out {
			var rec store.StreamRecord
			if json.Unmarshal(raw, &rec) == nil && done(rec) {
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond)
	return out
}

// describe names a record for the test's messages: event, key.
func describe(t *testing.T, raw json.RawMessage) (store.StreamRecord, string) {
	t.Helper()
	var rec store.StreamRecord
	require.NoError(t, json.Unmarshal(raw, &rec))
	var pk, sk struct{ S string }
	require.NoError(t, json.Unmarshal(rec.Dynamodb.Keys[store.PartitionKey], &pk))
	require.NoError(t, json.Unmarshal(rec.Dynamodb.Keys[store.SortKey], &sk))
	return rec, rec.EventName + " " + pk.S + " " + sk.S
}

// The stream mapping's filters (the strings the CDK stack deploys,
// evaluated by the local stack's EventBridge pattern matcher) pass exactly
// the records the broadcast function acts on: a connection opened, by its
// handshake or an auth message, a connection closed, a presence topic's
// subscription added or removed. The writes every client frame makes on
// the connection record (a ping's command count, a subscription's count)
// pass nothing, so they invoke nothing.
func TestStreamFilters_PassOnlyWhatLifecycleAndPresenceUse(t *testing.T) {
	f, recs := watchStream(t)
	ctx := context.Background()
	presence := []string{"room"}
	filters, err := eventpattern.CompileAny(store.StreamUse{Lifecycle: true, PresencePrefixes: presence}.Filters())
	require.NoError(t, err)

	c1 := f.conn("c1", "u1")
	require.NoError(t, f.s.PutConnection(ctx, c1, []store.NewSubscription{sub("direct.user.u1")}))
	_, _, err = f.s.CountCommands(ctx, "c1", f.now, 1) // a ping
	require.NoError(t, err)
	_, err = f.s.Subscribe(ctx, c1, sub("room.1"))
	require.NoError(t, err)
	_, err = f.s.Subscribe(ctx, c1, sub("lobby.1"))
	require.NoError(t, err)
	_, err = f.s.Subscribe(ctx, c1, store.NewSubscription{Pattern: topic.MustPattern("room.1"), Filters: filter.Set{"k": {"v"}}, Presence: true})
	require.NoError(t, err, "a re-put subscription: its index entry is modified")
	_, err = f.s.Unsubscribe(ctx, "c1", topic.MustPattern("room.1"))
	require.NoError(t, err)

	require.NoError(t, f.s.PutConnection(ctx, f.pending("p1", "10.0.0.1"), nil))
	_, _, _ = f.s.CountCommands(ctx, "p1", f.now, 1) // a pending connection's frame
	require.NoError(t, f.s.Authenticate(ctx, f.conn("p1", "u2"), []store.NewSubscription{sub("room.2")}))
	require.NoError(t, f.s.PutConnection(ctx, f.pending("p2", "10.0.0.1"), nil))
	_, err = f.s.DeleteConnection(ctx, "p2") // never authenticated
	require.NoError(t, err)
	_, err = f.s.DeleteConnection(ctx, "c1")
	require.NoError(t, err)

	all := recs.until(t, func(r store.StreamRecord) bool {
		l, ok, _ := store.LifecycleOf(r)
		return ok && !l.Opened && l.Conn.ID == "c1"
	})
	var passed []string
	for _, raw := range all {
		rec, name := describe(t, raw)
		_, lifecycle, err := store.LifecycleOf(rec)
		require.NoError(t, err, name)
		change, isChange := store.SubscriptionChangeOf(rec)
		roster := isChange && strings.HasPrefix(change.Topic, "room") && rec.EventName != "MODIFY"
		pass := filters.MatchJSON(raw)
		assert.Equal(t, lifecycle || roster, pass, "%s: passes the filters exactly when broadcast acts on it", name)
		if pass {
			passed = append(passed, name)
		}
	}
	// The mapping keeps order per item only (shards run in parallel).
	assert.ElementsMatch(t, []string{
		"INSERT C#c1 #META",
		"INSERT P#room.1 " + store.EntrySK("c1"),
		"REMOVE P#room.1 " + store.EntrySK("c1"),
		"MODIFY C#p1 #META",
		"INSERT P#room.2 " + store.EntrySK("p1"),
		"REMOVE C#c1 #META",
	}, passed)
	assert.Greater(t, len(all), 3*len(passed), "most writes pass nothing: %d records", len(all))
}

// A presence topic's subscribers on levels above 0 (P#<topic> <L> <b>)
// pass the filters as those on level 0 do, and the buckets' count items
// (B#...) pass nothing.
func TestStreamFilters_BucketedEntriesPassAndCountsDoNot(t *testing.T) {
	f, recs := watchStream(t)
	f.s.Bucketing = store.Bucketing{SplitAt: 1, Sample: func(int) bool { return true }}
	ctx := context.Background()
	filters, err := eventpattern.CompileAny(store.StreamUse{PresencePrefixes: []string{"room"}}.Filters())
	require.NoError(t, err)
	for i := range 6 {
		c := f.conn(fmt.Sprintf("c%d", i), fmt.Sprintf("u%d", i))
		require.NoError(t, f.s.PutConnection(ctx, c, nil))
		_, err := f.s.Subscribe(ctx, c, sub("room.1"))
		require.NoError(t, err)
	}
	last := store.EntrySK("c5")
	all := recs.until(t, func(r store.StreamRecord) bool {
		change, ok := store.SubscriptionChangeOf(r)
		return ok && change.ConnectionID == "c5"
	})
	upper, counts := 0, 0
	for _, raw := range all {
		rec, name := describe(t, raw)
		switch {
		case strings.HasPrefix(name, "INSERT P#room.1"):
			assert.True(t, filters.MatchJSON(raw), "%s passes", name)
			change, ok := store.SubscriptionChangeOf(rec)
			require.True(t, ok, name)
			assert.Equal(t, "room.1", change.Topic)
			if strings.HasPrefix(name, "INSERT P#room.1 ") && strings.Count(name, " ") > 2 {
				upper++
			}
		case strings.Contains(name, " B#"):
			counts++
			assert.False(t, filters.MatchJSON(raw), "%s passes nothing", name)
		}
	}
	assert.Positive(t, upper, "entries on a level above 0 (the last: %s)", last)
	assert.Positive(t, counts, "count items were written")
}

func TestStreamFilters_AllPresencePrefixesInOneFilter(t *testing.T) {
	lifecycle := store.StreamUse{Lifecycle: true}.Filters()
	many := store.StreamUse{Lifecycle: true, PresencePrefixes: []string{"a", "b", "c", "d", "e", "f", "a"}}.Filters()
	assert.Len(t, lifecycle, 3, "opened, closed, opened by an auth message")
	require.Len(t, many, 4, "however many prefixes: within Lambda's 5 filters")
	assert.Equal(t, lifecycle, many[:3])
	assert.Equal(t, many[3:], store.StreamUse{PresencePrefixes: []string{"a", "b", "c", "d", "e", "f"}}.Filters(), "presence without lifecycle events")
	assert.Empty(t, store.StreamUse{}.Filters(), "nothing to read: no mapping")
	filters, err := eventpattern.CompileAny(many)
	require.NoError(t, err)
	entry := func(event, pk string) []byte {
		return []byte(`{"eventName":"` + event + `","dynamodb":{"Keys":{"pk":{"S":"` + pk + `"},"sk":{"S":"c1"}}}}`)
	}
	for _, p := range []string{"a", "b", "c", "d", "e", "f"} {
		assert.True(t, filters.MatchJSON(entry("INSERT", "P#"+p+".x")), p)
		assert.True(t, filters.MatchJSON(entry("REMOVE", "P#"+p+".x")), p)
		assert.False(t, filters.MatchJSON(entry("MODIFY", "P#"+p+".x")), p)
	}
	assert.False(t, filters.MatchJSON(entry("INSERT", "P#g.x")))
	assert.Equal(t, 1, strings.Count(many[3], `"P#a"`), "a prefix once")
}

package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
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

// A storm of subscribes to a new topic lands on its level-0 key until the
// sampled count splits it. Each subscribe writes that key once, a plain
// put (1 write unit), not inside the subscribe's transaction, which
// DynamoDB charges 2 units an item: at API Gateway's 500 connects a
// second, half the key's 1,000, not all of it.
func TestSubscribe_EntryIsOneWriteUnitOnItsBucketsKey(t *testing.T) {
	f, load := newLoadFixture(t)
	const n = 12
	for i := range n {
		f.subscribe(t, f.s, fmt.Sprintf("c%02d", i), "storm.new")
	}
	assert.Equal(t, n, load.Writes()["P#storm.new"], "one write unit a subscribe on the topic's key")
	found, _ := audience(context.Background(), t, f.other(), "e1", "storm.new", 1000)
	assert.Len(t, found, n, "every subscriber found")
}

// beforeEntry is DynamoDB Local that runs hook once, just before the first
// put of a subscriber entry (a P# item) reaches it: between a subscribe's
// transaction and its entry's write. fail, when set, is the put's answer
// instead.
type beforeEntry struct {
	store.DB
	hook func()
	fail error
	once sync.Once
}

func (b *beforeEntry) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	if pk, ok := in.Item["pk"].(*types.AttributeValueMemberS); ok && strings.HasPrefix(pk.Value, "P#") {
		var fail error
		b.once.Do(func() {
			if b.hook != nil {
				b.hook()
			}
			fail = b.fail
		})
		if fail != nil {
			return nil, fail
		}
	}
	return b.DB.PutItem(ctx, in, optFns...)
}

// reverseEntries are the keys of conn's reverse entries (its
// subscriptions) left in the table.
func (f *fixture) reverseEntries(t *testing.T, conn string) []string {
	t.Helper()
	var out []string
	for _, k := range f.items(t) {
		if strings.HasPrefix(k, "C#"+conn+" S#") {
			out = append(out, k)
		}
	}
	return out
}

// An unsubscribe or a disconnect can run between a subscribe's transaction
// and the write of its subscriber entry (two frames of one connection run
// at once, or the client goes): it removes the reverse entry and finds no
// subscriber entry to remove. The subscribe reads its reverse entry back
// and removes the entry it wrote, so no event reaches a subscription that
// is gone, and nothing is left for the connection's TTL.
func TestSubscribe_RemovedBeforeItsEntryIsWrittenLeavesNoEntry(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove func(ctx context.Context, s *store.Store, c store.Connection) error
	}{
		{"unsubscribe", func(ctx context.Context, s *store.Store, c store.Connection) error {
			ok, err := s.Unsubscribe(ctx, c.ID, topic.MustPattern("race.t"))
			if err == nil && !ok {
				err = errors.New("the subscription was not found")
			}
			return err
		}},
		{"disconnect", func(ctx context.Context, s *store.Store, c store.Connection) error {
			_, err := s.DeleteConnection(ctx, c.ID)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			c := f.conn("racer", "u-racer")
			c.Limits.MaxSubscriptions = 10
			require.NoError(t, f.s.PutConnection(ctx, c, nil))
			var removeErr error
			db := &beforeEntry{DB: f.db, hook: func() { removeErr = tc.remove(ctx, f.other(), c) }}
			s := store.New(db, f.table).WithClock(func() time.Time { return f.now })

			created, err := s.Subscribe(ctx, c, sub("race.t"))
			require.NoError(t, err)
			require.NoError(t, removeErr)
			assert.True(t, created, "it was made, then removed")
			assert.Empty(t, f.entries(t, "race.t"), "no subscriber entry left")
			assert.Empty(t, f.reverseEntries(t, "racer"))
			found, _ := audience(ctx, t, f.other(), "e1", "race.t", 1000)
			assert.Empty(t, found, "an event reaches no one")
			if tc.name == "unsubscribe" {
				// The count was given back: the connection may subscribe
				// again, and that subscription is delivered.
				created, err := f.s.Subscribe(ctx, c, sub("race.t"))
				require.NoError(t, err)
				assert.True(t, created)
				found, _ := audience(ctx, t, f.other(), "e2", "race.t", 1000)
				assert.Equal(t, map[string]int{"racer": 1}, found)
			}
		})
	}
}

// Subscribe, unsubscribe and subscribe again (other filters) of one
// connection can meet: the later subscribe's entry is written while the
// first's put is still on its way. The first's put keeps the later entry
// (a later generation), so the entry that stays is the one the reverse
// entry names, with the later filters.
func TestSubscribe_ALaterSubscribeOfTheConnectionKeepsItsEntry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("again", "u-again")
	c.Limits.MaxSubscriptions = 10
	require.NoError(t, f.s.PutConnection(ctx, c, nil))
	later := store.NewSubscription{Pattern: topic.MustPattern("race.t"), Filters: filter.Set{"kind": {"b"}}}
	var hookErr error
	db := &beforeEntry{DB: f.db, hook: func() {
		other := f.other()
		if _, err := other.Unsubscribe(ctx, c.ID, later.Pattern); err != nil {
			hookErr = err
			return
		}
		_, hookErr = other.Subscribe(ctx, c, later)
	}}
	s := store.New(db, f.table).WithClock(func() time.Time { return f.now })
	first := store.NewSubscription{Pattern: topic.MustPattern("race.t"), Filters: filter.Set{"kind": {"a"}}}
	_, err := s.Subscribe(ctx, c, first)
	require.NoError(t, err)
	require.NoError(t, hookErr)

	entries := f.entries(t, "race.t")
	require.Len(t, entries, 1)
	subs, err := f.s.ConnectionSubscriptions(ctx, c.ID)
	require.NoError(t, err)
	require.Len(t, subs, 1)
	assert.Equal(t, later.Filters, subs[0].Filters, "the reverse entry is the later one's")
	for pk := range entries {
		item := f.item(t, pk, store.EntrySK(c.ID))
		assert.Equal(t, f.item(t, "C#again", "S#race.t")["gen"], item["gen"], "the entry is the one the reverse entry names")
		assert.Contains(t, item["f"].(*types.AttributeValueMemberS).Value, `"b"`, "with the later filters")
	}
}

// A subscriber entry that cannot be written (an error that is not a
// throttle) takes the subscription back: no reverse entry, the count given
// back, and the error to the caller.
func TestSubscribe_EntryThatCannotBeWrittenTakesTheSubscriptionBack(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("broken", "u-broken")
	c.Limits.MaxSubscriptions = 1
	require.NoError(t, f.s.PutConnection(ctx, c, nil))
	db := &beforeEntry{DB: f.db, fail: &types.InternalServerError{Message: aws.String("injected")}}
	s := store.New(db, f.table).WithClock(func() time.Time { return f.now })

	_, err := s.Subscribe(ctx, c, sub("fail.t"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "injected")
	assert.Equal(t, 1, strings.Count(err.Error(), "store: subscribe broken to fail.t"), "named once: %v", err)
	assert.Empty(t, f.entries(t, "fail.t"))
	assert.Empty(t, f.reverseEntries(t, "broken"))
	// The connection's one place is free again.
	created, err := f.s.Subscribe(ctx, c, sub("fail.t"))
	require.NoError(t, err)
	assert.True(t, created)
}

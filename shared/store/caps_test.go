package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// capped is a connection of sub under a cap of n connections.
func (f *fixture) capped(id, sub string, n int) store.Connection {
	c := f.conn(id, sub)
	c.Limits.MaxConnectionsPerPrincipal = n
	return c
}

func (f *fixture) pending(id, ip string, perIP, all int) store.Connection {
	return store.Connection{
		ID: id, Principal: auth.Anonymous(), Pending: true, AuthDeadline: f.now.Add(5 * time.Second),
		ConnectedAt: f.now, ExpiresAt: f.now.Add(2 * time.Hour), Limits: limits, SourceIP: ip,
		MaxPendingPerIP: perIP, MaxPending: all,
	}
}

// leftovers are the table's items that mention any of ids.
func (f *fixture) leftovers(t *testing.T, ids []string) []string {
	var out []string
	for _, k := range f.items(t) {
		for _, id := range ids {
			if strings.HasSuffix(k, " "+id) || strings.Contains(k, "#"+id+" ") || strings.HasSuffix(k, "#"+id) {
				out = append(out, k)
			}
		}
	}
	return out
}

// putAll puts conns at once and returns the ids admitted and refused.
func (f *fixture) putAll(t *testing.T, conns []store.Connection, refusal error) (admitted, refused []string) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f.s.PutConnection(context.Background(), c, nil)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				admitted = append(admitted, c.ID)
				return
			}
			assert.ErrorIs(t, err, refusal, c.ID)
			refused = append(refused, c.ID)
		}()
	}
	wg.Wait()
	return admitted, refused
}

// The cap used to be a count read before the write: 20 simultaneous
// handshakes all read "below the cap". The counter is now taken in the
// transaction that writes the record.
func TestConnectionCap_ConcurrentConnectsAdmitExactlyTheCap(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var conns []store.Connection
	for i := range 20 {
		conns = append(conns, f.capped(fmt.Sprintf("c%02d", i), "u1", 2))
	}
	admitted, refused := f.putAll(t, conns, store.ErrConnectionLimit)
	require.Len(t, admitted, 2)
	assert.ErrorIs(t, store.ErrConnectionLimit, store.ErrLimit)
	n, err := f.s.CountConnections(ctx, auth.Identity{Type: "user", Sub: "u1"})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Empty(t, f.leftovers(t, refused), "a refused connection writes nothing")

	// A disconnect frees its place, once however often it runs.
	for range 3 {
		_, err := f.s.DeleteConnection(ctx, admitted[0])
		require.NoError(t, err)
	}
	require.NoError(t, f.s.PutConnection(ctx, f.capped("d1", "u1", 2), nil))
	assert.ErrorIs(t, f.s.PutConnection(ctx, f.capped("d2", "u1", 2), nil), store.ErrConnectionLimit, "given back once")

	// Concurrent disconnects of one connection (API Gateway's $disconnect
	// and a fan-out's 410) give its place back once too.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); _, err := f.s.DeleteConnection(ctx, "d1"); assert.NoError(t, err) }()
	}
	wg.Wait()
	require.NoError(t, f.s.PutConnection(ctx, f.capped("d3", "u1", 2), nil))
	assert.ErrorIs(t, f.s.PutConnection(ctx, f.capped("d4", "u1", 2), nil), store.ErrConnectionLimit)

	assert.NoError(t, f.s.PutConnection(ctx, f.capped("o1", "u2", 2), nil), "the cap is per principal")
}

// $disconnect may never come: a connection whose record expired no longer
// holds its place.
func TestConnectionCap_ExpiredConnectionNoLongerCounts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.capped("c1", "u1", 2), nil))
	f.now = f.now.Add(time.Hour)
	require.NoError(t, f.s.PutConnection(ctx, f.capped("c2", "u1", 2), nil))
	require.ErrorIs(t, f.s.PutConnection(ctx, f.capped("c3", "u1", 2), nil), store.ErrConnectionLimit)

	f.now = f.now.Add(time.Hour + time.Second) // c1 expired, c2 has not
	require.NoError(t, f.s.PutConnection(ctx, f.capped("c4", "u1", 2), nil), "c1's place is reclaimed")
	assert.ErrorIs(t, f.s.PutConnection(ctx, f.capped("c5", "u1", 2), nil), store.ErrConnectionLimit, "c2 still counts")
	n, err := f.s.CountConnections(ctx, auth.Identity{Type: "user", Sub: "u1"})
	require.NoError(t, err)
	assert.Equal(t, 2, n)

	// A late disconnect of the expired connection gives nothing back twice.
	_, err = f.s.DeleteConnection(ctx, "c1")
	require.NoError(t, err)
	assert.ErrorIs(t, f.s.PutConnection(ctx, f.capped("c6", "u1", 2), nil), store.ErrConnectionLimit)
}

// Counting used to read the subscribers of the principal's direct topic:
// an admin watching a user's direct topic counted as one of the user's
// connections.
func TestConnectionCap_WatcherOfADirectTopicDoesNotCount(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	direct := topic.MustPattern("direct.user.u1")
	admin := f.capped("admin", "root", 2)
	require.NoError(t, f.s.PutConnection(ctx, admin, []store.NewSubscription{sub("direct.user.root"), {Pattern: direct}}))
	_, err := f.s.Subscribe(ctx, admin, sub("direct.user.>"))
	require.NoError(t, err)

	require.NoError(t, f.s.PutConnection(ctx, f.capped("u1-a", "u1", 2), []store.NewSubscription{{Pattern: direct}}))
	require.NoError(t, f.s.PutConnection(ctx, f.capped("u1-b", "u1", 2), []store.NewSubscription{{Pattern: direct}}), "the admin is not one of u1's connections")
	n, err := f.s.CountConnections(ctx, auth.Identity{Type: "user", Sub: "u1"})
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}

func TestPendingCaps_PerAddressAndInAll(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	put := func(id, ip string) error { return f.s.PutConnection(ctx, f.pending(id, ip, 2, 3), nil) }
	require.NoError(t, put("a1", "10.0.0.1"))
	require.NoError(t, put("a2", "10.0.0.1"))
	assert.ErrorIs(t, put("a3", "10.0.0.1"), store.ErrPendingIPLimit)
	require.NoError(t, put("b1", "10.0.0.2"))
	assert.ErrorIs(t, put("c1", "10.0.0.3"), store.ErrPendingLimit)
	assert.Empty(t, f.leftovers(t, []string{"a3", "c1"}), "a refused connection writes nothing")

	// Authenticating gives the pending places back.
	require.NoError(t, f.s.Authenticate(ctx, f.conn("a1", "u1"), nil))
	require.NoError(t, put("a4", "10.0.0.1"))
	assert.ErrorIs(t, put("a5", "10.0.0.1"), store.ErrPendingIPLimit)
	// So does a disconnect.
	_, err := f.s.DeleteConnection(ctx, "b1")
	require.NoError(t, err)
	require.NoError(t, put("c2", "10.0.0.3"))
	assert.ErrorIs(t, put("c3", "10.0.0.3"), store.ErrPendingLimit)
	// And the deadline, even when nothing closes the connection.
	f.now = f.now.Add(6 * time.Second)
	require.NoError(t, put("a6", "10.0.0.1"))
	require.NoError(t, put("a7", "10.0.0.1"))
	require.NoError(t, put("c4", "10.0.0.3"))
	assert.ErrorIs(t, put("a8", "10.0.0.1"), store.ErrPendingIPLimit)

	// Authenticated connections hold no pending place.
	_, err = f.s.DeleteConnection(ctx, "a1")
	require.NoError(t, err)
	assert.ErrorIs(t, put("a9", "10.0.0.1"), store.ErrPendingIPLimit)
}

func TestPendingCaps_ConcurrentHandshakesFromOneAddress(t *testing.T) {
	f := newFixture(t)
	var conns []store.Connection
	for i := range 30 {
		conns = append(conns, f.pending(fmt.Sprintf("p%02d", i), "10.0.0.1", 10, 1000))
	}
	admitted, _ := f.putAll(t, conns, store.ErrPendingIPLimit)
	assert.Len(t, admitted, 10)
}

func TestAuthenticate_TakesAPlaceAmongThePrincipalsConnections(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.capped("c1", "u1", 1), nil))
	require.NoError(t, f.s.PutConnection(ctx, f.pending("p1", "10.0.0.1", 1, 10), nil))
	assert.ErrorIs(t, f.s.Authenticate(ctx, f.capped("p1", "u1", 1), nil), store.ErrConnectionLimit)
	got, err := f.s.GetConnection(ctx, "p1")
	require.NoError(t, err)
	assert.True(t, got.Pending, "a refused authentication leaves the connection pending")
	assert.ErrorIs(t, f.s.PutConnection(ctx, f.pending("p2", "10.0.0.1", 1, 10), nil), store.ErrPendingIPLimit, "and its pending place held")

	_, err = f.s.DeleteConnection(ctx, "c1")
	require.NoError(t, err)
	require.NoError(t, f.s.Authenticate(ctx, f.capped("p1", "u1", 1), nil))
	assert.ErrorIs(t, f.s.PutConnection(ctx, f.capped("c2", "u1", 1), nil), store.ErrConnectionLimit, "p1 counts as u1's now")
	require.NoError(t, f.s.PutConnection(ctx, f.pending("p2", "10.0.0.1", 1, 10), nil), "and holds no pending place")
}

// wildcardEntries are the wildcard index entries in the table.
func (f *fixture) wildcardEntries(t *testing.T) []string {
	var out []string
	for _, k := range f.items(t) {
		if strings.HasPrefix(k, "W#") {
			out = append(out, k)
		}
	}
	return out
}

// Subscribing and unsubscribing patterns that never match used to leave
// their index entries for 25 hours, slowing every event under the prefix.
func TestUnsubscribe_RemovesTheIndexEntryWithItsLastSubscriber(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c1, c2 := f.conn("c1", "u1"), f.conn("c2", "u2")
	c1.Limits.MaxSubscriptions = 1000
	require.NoError(t, f.s.PutConnection(ctx, c1, nil))
	require.NoError(t, f.s.PutConnection(ctx, c2, nil))
	for _, c := range []store.Connection{c1, c2} {
		_, err := f.s.Subscribe(ctx, c, sub("a.*"))
		require.NoError(t, err)
	}
	_, err := f.s.Unsubscribe(ctx, "c1", topic.MustPattern("a.*"))
	require.NoError(t, err)
	refs, err := f.s.SubscriberPatterns(ctx, topic.MustPattern("a.b"), store.Layout{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a.*", "a.b"}, patternsOf(refs), "c2 still subscribes")
	_, err = f.s.Unsubscribe(ctx, "c2", topic.MustPattern("a.*"))
	require.NoError(t, err)
	refs, err = f.s.SubscriberPatterns(ctx, topic.MustPattern("a.b"), store.Layout{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a.b"}, patternsOf(refs))

	for i := range 40 {
		p := topic.MustPattern(fmt.Sprintf("a.nothing%d.*", i))
		_, err := f.s.Subscribe(ctx, c1, store.NewSubscription{Pattern: p})
		require.NoError(t, err)
		_, err = f.s.Unsubscribe(ctx, "c1", p)
		require.NoError(t, err)
	}
	assert.Empty(t, f.wildcardEntries(t))
}

func TestDeleteConnection_RemovesIndexEntriesNobodyNeeds(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c1, c2 := f.conn("c1", "u1"), f.conn("c2", "u2")
	require.NoError(t, f.s.PutConnection(ctx, c1, []store.NewSubscription{sub("t.*")}))
	require.NoError(t, f.s.PutConnection(ctx, c2, nil))
	for _, p := range []string{"a.*", "b.>"} {
		_, err := f.s.Subscribe(ctx, c1, sub(p))
		require.NoError(t, err)
	}
	_, err := f.s.Subscribe(ctx, c2, sub("b.>"))
	require.NoError(t, err)
	_, err = f.s.DeleteConnection(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, []string{"W#b b.>"}, f.wildcardEntries(t), "only the pattern c2 still needs")
}

// A principal's distinct wildcard patterns are capped across all its
// connections: each is an index entry every event under its prefix reads.
func TestWildcardCap_DistinctPatternsPerPrincipal(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c1, c2 := f.conn("c1", "u1"), f.conn("c2", "u1")
	for _, c := range []*store.Connection{&c1, &c2} {
		c.Limits.MaxWildcards = 3
		c.Limits.MaxSubscriptions = 10
		require.NoError(t, f.s.PutConnection(ctx, *c, nil))
	}
	subscribe := func(c store.Connection, p string) error { _, err := f.s.Subscribe(ctx, c, sub(p)); return err }
	require.NoError(t, subscribe(c1, "x1.*"))
	require.NoError(t, subscribe(c1, "x2.*"))
	require.NoError(t, subscribe(c2, "x1.*"), "a pattern the principal holds counts once")
	require.NoError(t, subscribe(c2, "x3.>"))
	require.NoError(t, subscribe(c1, "x3.>"))
	err := subscribe(c2, "x4.*")
	assert.ErrorIs(t, err, store.ErrWildcardLimit)
	assert.ErrorIs(t, err, store.ErrLimit)
	assert.NotContains(t, f.items(t), "P#x4.* c2", "refused before writing")
	assert.NotContains(t, f.wildcardEntries(t), "W#x4 x4.*")
	got, err := f.s.GetConnection(ctx, "c2")
	require.NoError(t, err)
	assert.Equal(t, 2, got.Subscriptions)
	require.NoError(t, subscribe(c2, "x4.literal"), "exact topics are not capped")
	other := f.conn("o1", "u2")
	other.Limits.MaxWildcards = 3
	require.NoError(t, f.s.PutConnection(ctx, other, nil))
	require.NoError(t, subscribe(other, "x4.*"), "the cap is per principal")

	// The place goes with the pattern's last holder.
	_, err = f.s.Unsubscribe(ctx, "c1", topic.MustPattern("x2.*"))
	require.NoError(t, err)
	_, err = f.s.Unsubscribe(ctx, "c1", topic.MustPattern("x1.*"))
	require.NoError(t, err)
	require.NoError(t, subscribe(c2, "x4.*"))
	assert.ErrorIs(t, subscribe(c1, "x5.*"), store.ErrWildcardLimit, "c2 still holds x1.*")
	_, err = f.s.DeleteConnection(ctx, "c2")
	require.NoError(t, err)
	require.NoError(t, subscribe(c1, "x5.*"), "a disconnect lets go of its patterns")

	// Holders whose $disconnect never came count until they expire.
	f.now = f.now.Add(3 * time.Hour)
	c3 := f.conn("c3", "u1")
	c3.Limits.MaxWildcards = 3
	require.NoError(t, f.s.PutConnection(ctx, c3, nil))
	for _, p := range []string{"y1.*", "y2.*", "y3.*"} {
		require.NoError(t, subscribe(c3, p))
	}
	assert.ErrorIs(t, subscribe(c3, "y4.*"), store.ErrWildcardLimit)
}

func TestWildcardCap_HoldsUnderConcurrentSubscribes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var conns []store.Connection
	for i := range 4 {
		c := f.conn(fmt.Sprintf("c%d", i), "u1")
		c.Limits.MaxWildcards = 3
		c.Limits.MaxSubscriptions = 20
		require.NoError(t, f.s.PutConnection(ctx, c, nil))
		conns = append(conns, c)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	held := map[string]bool{}
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("z%d.*", i%8)
			_, err := f.s.Subscribe(ctx, conns[i%4], sub(p))
			if err == nil {
				mu.Lock()
				held[p] = true
				mu.Unlock()
				return
			}
			assert.ErrorIs(t, err, store.ErrWildcardLimit)
		}()
	}
	wg.Wait()
	assert.Len(t, held, 3)
	assert.Len(t, f.wildcardEntries(t), 3)
}

// Removing an index entry with its last subscriber must never remove it
// from under a subscriber that came at the same moment.
func TestWildcardIndex_ConcurrentSubscribeAndUnsubscribeKeepTheLiveEntry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	conns := []store.Connection{f.conn("a", "u1"), f.conn("b", "u2")}
	for _, c := range conns {
		require.NoError(t, f.s.PutConnection(ctx, c, nil))
	}
	p := topic.MustPattern("dev.*.temp")
	matching := topic.MustPattern("dev.7.temp")
	_, err := f.s.Subscribe(ctx, conns[1], store.NewSubscription{Pattern: p})
	require.NoError(t, err)
	for round := range 40 {
		// joining subscribes while leaving, subscribed since the last
		// round, unsubscribes.
		joining, leaving := conns[round%2], conns[(round+1)%2]
		var wg sync.WaitGroup
		wg.Add(2)
		// Random starts vary which steps of the two interleave.
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(40)) * time.Millisecond)
			_, err := f.s.Subscribe(ctx, joining, store.NewSubscription{Pattern: p})
			assert.NoError(t, err)
		}()
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			_, err := f.s.Unsubscribe(ctx, leaving.ID, p)
			assert.NoError(t, err)
		}()
		wg.Wait()
		refs, err := f.s.SubscriberPatterns(ctx, matching, store.Layout{})
		require.NoError(t, err)
		require.Equal(t, []string{"dev.*.temp", "dev.7.temp"}, patternsOf(refs), "round %d: %s's subscription is not found", round, joining.ID)
	}
}

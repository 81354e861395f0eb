package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/topic"
)

func TestMain(m *testing.M) { storetest.Main(m) }

type fixture struct {
	db    *dynamodb.Client
	table string
	s     *store.Store
	now   time.Time
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{db: storetest.Client(t), now: time.Unix(1_800_000_000, 0)}
	f.table = storetest.NewTable(t, f.db)
	f.s = store.New(f.db, f.table).WithClock(func() time.Time { return f.now })
	return f
}

var limits = config.Limits{MaxMessageBytes: 1024, MessagesPerSecond: 3, MaxConnectionsPerPrincipal: 5, MaxSubscriptions: 4}

func (f *fixture) conn(id, sub string) store.Connection {
	return store.Connection{
		ID:          id,
		Principal:   auth.Principal{Identity: auth.Identity{Sub: sub, Type: "user", Orgs: []string{"acme"}}, Topics: []string{">"}},
		ConnectedAt: f.now, ExpiresAt: f.now.Add(2 * time.Hour), Limits: limits,
	}
}

func sub(p string) store.NewSubscription { return store.NewSubscription{Pattern: topic.MustPattern(p)} }

// items returns every item key in the table. Tests may scan; the store never does.
func (f *fixture) items(t *testing.T) []string {
	out, err := f.db.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true)})
	require.NoError(t, err)
	var keys []string
	for _, it := range out.Items {
		keys = append(keys, it["pk"].(*types.AttributeValueMemberS).Value+" "+it["sk"].(*types.AttributeValueMemberS).Value)
	}
	sort.Strings(keys)
	return keys
}

func TestConnection_PutGetAndDeleteRemovesEverything(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("c1", "u1")
	c.Envelope = true
	require.NoError(t, f.s.PutConnection(ctx, c, []store.NewSubscription{sub("direct.user.u1"), sub("a.*"), sub("b.c")}))
	require.Error(t, f.s.PutConnection(ctx, c, nil), "connection ids are unique")

	got, err := f.s.GetConnection(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, "u1", got.Principal.Sub)
	assert.Equal(t, []string{">"}, got.Principal.Topics)
	assert.True(t, got.Envelope)
	assert.Equal(t, 3, got.Subscriptions)
	assert.Equal(t, limits, got.Limits)

	subs, err := f.s.ConnectionSubscriptions(ctx, "c1")
	require.NoError(t, err)
	assert.Len(t, subs, 3)

	// Another connection's items must survive c1's disconnect.
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c2", "u2"), []store.NewSubscription{sub("a.*")}))
	before := len(f.items(t))
	n, err := f.s.DeleteConnection(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, 8, n, "record + 3 reverse + 3 forward entries + its place in u1's count")
	assert.Len(t, f.items(t), before-8)
	for _, k := range f.items(t) {
		assert.NotContains(t, k, "c1")
	}
	_, err = f.s.GetConnection(ctx, "c1")
	assert.ErrorIs(t, err, store.ErrNotFound)
	n, err = f.s.DeleteConnection(ctx, "c1")
	require.NoError(t, err)
	assert.Zero(t, n, "idempotent")
}

func TestConnection_ExpiredRecordIsNotFound(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil))
	f.now = f.now.Add(3 * time.Hour)
	_, err := f.s.GetConnection(ctx, "c1")
	assert.ErrorIs(t, err, store.ErrNotFound)
	_, err = countOne(ctx, f, "c1", f.now)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

func TestCountCommands_RateLimitPerSecondWindow(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil))
	for i := range 3 {
		_, err := countOne(ctx, f, "c1", f.now)
		require.NoError(t, err, "message %d", i)
	}
	c, err := countOne(ctx, f, "c1", f.now)
	assert.ErrorIs(t, err, store.ErrRateLimited)
	assert.Equal(t, "u1", c.Principal.Sub, "the record comes back with the refusal")
	f.now = f.now.Add(time.Second)
	_, err = countOne(ctx, f, "c1", f.now)
	assert.NoError(t, err, "a new second opens a new window")
	_, err = countOne(ctx, f, "nope", f.now)
	assert.ErrorIs(t, err, store.ErrNotFound)
}

// Frames of one connection run at once on API Gateway, so a frame may be
// counted after one that arrived a second later: it counts in that later
// window instead of failing.
func TestCountCommands_FrameCountedAfterALaterOne(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.PutConnection(ctx, f.conn("c1", "u1"), nil))
	_, err := countOne(ctx, f, "c1", f.now.Add(time.Second))
	require.NoError(t, err)
	_, err = countOne(ctx, f, "c1", f.now)
	require.NoError(t, err, "counted in the later window")
	_, err = countOne(ctx, f, "c1", f.now.Add(time.Second))
	require.NoError(t, err)
	_, err = countOne(ctx, f, "c1", f.now)
	assert.ErrorIs(t, err, store.ErrRateLimited, "the later window is full (3 a second)")
}

func TestCountCommands_LimitHoldsAcrossConcurrentInstances(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("c1", "u1")
	c.Limits.MessagesPerSecond = 10
	require.NoError(t, f.s.PutConnection(ctx, c, nil))
	var wg sync.WaitGroup
	var mu sync.Mutex
	accepted := 0
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := countOne(ctx, f, "c1", f.now)
			if err == nil {
				mu.Lock()
				accepted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 10, accepted, "exactly the limit is accepted within one second")
}

func TestSubscribe_CreateReplaceLimitAndGone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("c1", "u1")
	require.NoError(t, f.s.PutConnection(ctx, c, []store.NewSubscription{sub("direct.user.u1")}))

	created, err := f.s.Subscribe(ctx, c, store.NewSubscription{Pattern: topic.MustPattern("alerts.*"), Filters: filter.Set{"severity": {"critical"}}})
	require.NoError(t, err)
	assert.True(t, created)
	created, err = f.s.Subscribe(ctx, c, store.NewSubscription{Pattern: topic.MustPattern("alerts.*"), Filters: filter.Set{"severity": {"warning"}}})
	require.NoError(t, err)
	assert.False(t, created, "second subscribe replaces the filters")
	subs, _, err := f.s.Subscribers(ctx, "alerts.*", "", 100)
	require.NoError(t, err)
	require.Len(t, subs, 1)
	assert.Equal(t, filter.Set{"severity": {"warning"}}, subs[0].Filters)
	assert.Equal(t, "u1", subs[0].Identity.Sub)
	assert.Equal(t, []string{"acme"}, subs[0].Identity.Orgs)

	for _, p := range []string{"a", "b"} {
		_, err := f.s.Subscribe(ctx, c, sub(p))
		require.NoError(t, err)
	}
	_, err = f.s.Subscribe(ctx, c, sub("z"))
	assert.ErrorIs(t, err, store.ErrLimit, "4 subscriptions is the limit")
	got, err := f.s.GetConnection(ctx, "c1")
	require.NoError(t, err)
	assert.Equal(t, 4, got.Subscriptions)

	removed, err := f.s.Unsubscribe(ctx, "c1", topic.MustPattern("a"))
	require.NoError(t, err)
	assert.True(t, removed)
	removed, err = f.s.Unsubscribe(ctx, "c1", topic.MustPattern("a"))
	require.NoError(t, err)
	assert.False(t, removed)
	_, err = f.s.Subscribe(ctx, c, sub("z"))
	assert.NoError(t, err, "room again after unsubscribe")

	_, err = f.s.Subscribe(ctx, f.conn("ghost", "u9"), sub("a"))
	assert.ErrorIs(t, err, store.ErrNotFound)
	assert.NotContains(t, f.items(t), "P#a ghost", "a refused subscribe writes nothing")
}

func TestAuthenticate_PendingConnection(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	pending := store.Connection{ID: "p1", Principal: auth.Anonymous(), Pending: true, AuthDeadline: f.now.Add(10 * time.Second), ConnectedAt: f.now, ExpiresAt: f.now.Add(time.Hour), Limits: limits}
	require.NoError(t, f.s.PutConnection(ctx, pending, nil))
	_, err := f.s.Subscribe(ctx, pending, sub("a"))
	assert.ErrorIs(t, err, store.ErrNotFound, "a pending connection cannot subscribe")

	authed := f.conn("p1", "u1")
	require.NoError(t, f.s.Authenticate(ctx, authed, []store.NewSubscription{sub("direct.user.u1")}))
	got, err := f.s.GetConnection(ctx, "p1")
	require.NoError(t, err)
	assert.False(t, got.Pending)
	assert.Equal(t, "u1", got.Principal.Sub)
	assert.Equal(t, 1, got.Subscriptions)
	assert.ErrorIs(t, f.s.Authenticate(ctx, authed, nil), store.ErrNotFound, "only once")

	late := store.Connection{ID: "p2", Principal: auth.Anonymous(), Pending: true, AuthDeadline: f.now.Add(time.Second), ConnectedAt: f.now, ExpiresAt: f.now.Add(time.Hour), Limits: limits}
	require.NoError(t, f.s.PutConnection(ctx, late, nil))
	f.now = f.now.Add(2 * time.Second)
	c := f.conn("p2", "u1")
	assert.ErrorIs(t, f.s.Authenticate(ctx, c, nil), store.ErrExpired)
}

func TestCountConnections(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d := topic.MustPattern("direct.user.u1")
	for i := range 3 {
		require.NoError(t, f.s.PutConnection(ctx, f.conn(fmt.Sprintf("c%d", i), "u1"), []store.NewSubscription{{Pattern: d}}))
	}
	n, err := f.s.CountConnections(ctx, auth.Identity{Type: "user", Sub: "u1"})
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	f.now = f.now.Add(3 * time.Hour)
	n, err = f.s.CountConnections(ctx, auth.Identity{Type: "user", Sub: "u1"})
	require.NoError(t, err)
	assert.Zero(t, n, "expired connections do not count")
}

func patternsOf(refs []store.PatternRef) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Pattern)
	}
	sort.Strings(out)
	return out
}

func TestSubscriberPatterns_ExactAndWildcard(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("c1", "u1")
	c.Limits.MaxSubscriptions = 100
	require.NoError(t, f.s.PutConnection(ctx, c, nil))
	for _, p := range []string{"a.b.c", "a.*.c", "a.b.*", "a.>", ">", "*.*.*", "a.b", "a.*", "x.>", "*.b.d", "a.b.c.>"} {
		_, err := f.s.Subscribe(ctx, c, sub(p))
		require.NoError(t, err)
	}
	refs, err := f.s.SubscriberPatterns(ctx, topic.MustPattern("a.b.c"), store.Layout{})
	require.NoError(t, err)
	assert.Equal(t, []string{"*.*.*", ">", "a.*.c", "a.>", "a.b.*", "a.b.c"}, patternsOf(refs))
}

func TestSubscriberPatterns_QueryCountIndependentOfTableSize(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("c0", "u0")
	c.Limits.MaxSubscriptions = 10
	require.NoError(t, f.s.PutConnection(ctx, c, nil))
	for _, p := range []string{"telemetry.7", "telemetry.*", "*.7"} {
		_, err := f.s.Subscribe(ctx, c, sub(p))
		require.NoError(t, err)
	}
	event := topic.MustPattern("telemetry.7")

	measure := func() (calls map[string]int, read float64, subs int) {
		m := &store.Meter{}
		mctx := store.WithMeter(ctx, m)
		refs, err := f.s.SubscriberPatterns(mctx, event, store.Layout{})
		require.NoError(t, err)
		for _, r := range refs {
			page, _, err := f.s.Subscribers(mctx, r.Pattern, "", 1000)
			require.NoError(t, err)
			subs += len(page)
		}
		read, _, calls = m.Snapshot()
		return calls, read, subs
	}
	unrelated := func(i int) string {
		switch i % 4 {
		case 0:
			return fmt.Sprintf("telemetry.%d", 1000+i) // same namespace, other device
		case 1:
			return fmt.Sprintf("alerts.%d.*", i) // wildcard under another prefix
		case 2:
			return fmt.Sprintf("devices.%d", i)
		}
		return fmt.Sprintf("x%d.>", i%50) // wildcard under 50 other prefixes
	}
	// addUnrelated adds subscriptions [from, to), 100 per connection.
	addUnrelated := func(from, to int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 6)
		for start := from; start < to; start += 100 {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				uc := f.conn(fmt.Sprintf("u%05d", start), fmt.Sprintf("user%d", start))
				var subs []store.NewSubscription
				for i := start; i < min(start+100, to); i++ {
					subs = append(subs, sub(unrelated(i)))
				}
				assert.NoError(t, f.s.PutConnection(ctx, uc, subs))
			}()
		}
		wg.Wait()
	}

	addUnrelated(0, 10)
	calls10, read10, subs10 := measure()
	addUnrelated(10, 10_000)
	calls10k, read10k, subs10k := measure()

	assert.Equal(t, 3, subs10)
	assert.Equal(t, 3, subs10k)
	assert.Equal(t, calls10, calls10k, "the same queries with 10 and 10,000 unrelated subscriptions")
	assert.Equal(t, map[string]int{"Query": 5}, calls10k, "2 prefix lookups + 3 patterns")
	assert.InDelta(t, read10, read10k, 0.01, "and the same read units")
	t.Logf("per event: %v, %.1f RCU with 10,000 unrelated subscriptions", calls10k, read10k)
}

func TestForgetPattern_OnlyWhenUnchangedAndUnused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	c := f.conn("c1", "u1")
	require.NoError(t, f.s.PutConnection(ctx, c, nil))
	_, err := f.s.Subscribe(ctx, c, sub("a.*"))
	require.NoError(t, err)
	refs, err := f.s.SubscriberPatterns(ctx, topic.MustPattern("a.b"), store.Layout{})
	require.NoError(t, err)
	require.Len(t, refs, 2)
	stale := refs[1]

	// A subscriber keeps the entry, whatever the reference.
	require.NoError(t, f.s.ForgetPattern(ctx, stale))
	refs, err = f.s.SubscriberPatterns(ctx, topic.MustPattern("a.b"), store.Layout{})
	require.NoError(t, err)
	require.Len(t, refs, 2)

	// The entry removed with its last subscriber and written anew by the
	// next: a reference from before is stale and removes nothing, even once
	// the new subscriber has expired.
	_, err = f.s.Unsubscribe(ctx, "c1", topic.MustPattern("a.*"))
	require.NoError(t, err)
	assert.Empty(t, f.wildcardEntries(t))
	_, err = f.s.Subscribe(ctx, f.conn("c1", "u1"), store.NewSubscription{Pattern: topic.MustPattern("a.*"), Filters: filter.Set{"k": {"v"}}})
	require.NoError(t, err)
	f.now = f.now.Add(3 * time.Hour)
	require.NoError(t, f.s.ForgetPattern(ctx, stale))
	refs, err = f.s.SubscriberPatterns(ctx, topic.MustPattern("a.b"), store.Layout{})
	require.NoError(t, err)
	require.Len(t, refs, 2)

	require.NoError(t, f.s.ForgetPattern(ctx, refs[1]))
	refs, err = f.s.SubscriberPatterns(ctx, topic.MustPattern("a.b"), store.Layout{})
	require.NoError(t, err)
	assert.Len(t, refs, 1)
}

func TestSubscribers_Pages(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 25 {
		require.NoError(t, f.s.PutConnection(ctx, f.conn(fmt.Sprintf("c%02d", i), fmt.Sprintf("u%02d", i)), []store.NewSubscription{sub("t")}))
	}
	seen := map[string]bool{}
	var cur store.Cursor
	pages := 0
	for {
		page, next, err := f.s.Subscribers(ctx, "t", cur, 10)
		require.NoError(t, err)
		pages++
		for _, s := range page {
			assert.False(t, seen[s.ConnectionID])
			seen[s.ConnectionID] = true
		}
		if next == "" {
			break
		}
		cur = next
	}
	assert.Len(t, seen, 25)
	assert.Equal(t, 3, pages)
}

func event(t *testing.T, id, tp, detail string) publish.Event {
	t.Helper()
	if detail == "" {
		detail = `{"topic":"` + tp + `","payload":{"n":"` + id + `"}}`
	}
	ev, err := publish.Parse(id, time.Unix(1_800_000_000, 0), []byte(detail), false)
	require.NoError(t, err)
	return ev
}

func TestBeginEvent_SequenceAndDedupe(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const lease = time.Minute
	r1, err := f.s.BeginEvent(ctx, event(t, "e1", "t.x", ""), "w1", lease, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, store.EventRecord{Seq: 1, Layout: &store.Layout{Levels: []int{0}}}, r1, "with the topic's layout: one level")
	r2, err := f.s.BeginEvent(ctx, event(t, "e2", "t.x", ""), "w1", lease, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), r2.Seq)
	other, err := f.s.BeginEvent(ctx, event(t, "e3", "t.y", ""), "w1", lease, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), other.Seq, "sequences are per topic")

	// Redelivery while the first attempt holds the lease.
	_, err = f.s.BeginEvent(ctx, event(t, "e1", "t.x", ""), "w2", lease, time.Hour)
	assert.ErrorIs(t, err, store.ErrInProgress)
	// After the lease, another attempt takes over with the same number.
	f.now = f.now.Add(2 * lease)
	again, err := f.s.BeginEvent(ctx, event(t, "e1", "t.x", ""), "w2", lease, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, store.EventRecord{Seq: 1, Retry: true}, again)
	require.NoError(t, f.s.FinishEvent(ctx, "e1"))
	done, err := f.s.BeginEvent(ctx, event(t, "e1", "t.x", ""), "w3", lease, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, store.EventRecord{Seq: 1, Done: true}, done)

	// No redelivery drew a number: the topic's numbers stay dense.
	seq, err := f.s.CurrentSeq(ctx, topic.MustPattern("t.x"))
	require.NoError(t, err)
	h, err := f.s.History(ctx, topic.MustPattern("t.x"), 0, 100)
	require.NoError(t, err)
	assert.Empty(t, h, "nothing marked skipped")
	assert.Equal(t, uint64(2), seq)
}

// An attempt that claimed an event and died before drawing its number
// leaves a record without one: the retry that takes it over numbers it.
func TestBeginEvent_ClaimWithoutANumberIsNumberedByTheRetry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "E#e1"}, "sk": &types.AttributeValueMemberS{Value: "#EVENT"},
		"owner": &types.AttributeValueMemberS{Value: "dead"}, "done": &types.AttributeValueMemberBOOL{Value: false},
		"lease": &types.AttributeValueMemberN{Value: fmt.Sprint(f.now.Add(time.Minute).UnixMilli())},
	}})
	require.NoError(t, err)
	ev := event(t, "e1", "", `{"topic":"t.x","payload":1,"history":true}`)
	_, err = f.s.BeginEvent(ctx, ev, "w1", time.Minute, time.Hour)
	require.ErrorIs(t, err, store.ErrInProgress, "the lease still runs")
	f.now = f.now.Add(2 * time.Minute)
	rec, err := f.s.BeginEvent(ctx, ev, "w1", time.Minute, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), rec.Seq)
	h, err := f.s.History(ctx, topic.MustPattern("t.x"), 0, 10)
	require.NoError(t, err)
	require.Len(t, h, 1)
	assert.False(t, h[0].Skip)
	again, err := f.s.BeginEvent(ctx, ev, "w1", time.Minute, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), again.Seq, "numbered once")
}

func TestReleaseEvent_OnlyTheHolderReleasesAndARetryTakesOverAtOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r, err := f.s.BeginEvent(ctx, event(t, "e1", "t.x", ""), "w1", time.Minute, time.Hour)
	require.NoError(t, err)
	require.NoError(t, f.s.ReleaseEvent(ctx, "e1", "w2"), "not the holder: nothing happens")
	_, err = f.s.BeginEvent(ctx, event(t, "e1", "t.x", ""), "w3", time.Minute, time.Hour)
	assert.ErrorIs(t, err, store.ErrInProgress, "w1 still holds it")

	require.NoError(t, f.s.ReleaseEvent(ctx, "e1", "w1"))
	got, err := f.s.BeginEvent(ctx, event(t, "e1", "t.x", ""), "w3", time.Minute, time.Hour)
	require.NoError(t, err, "released: taken over without waiting out the lease")
	assert.Equal(t, r.Seq, got.Seq, "with the number the first attempt drew")
	assert.ErrorIs(t, f.s.RenewEvent(ctx, "e1", "w1", time.Minute), store.ErrInProgress, "the old holder cannot renew it back")
}

func TestBeginEvent_ConcurrentEventsGetContiguousNumbers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 30
	seqs := make([]uint64, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := f.s.BeginEvent(ctx, event(t, fmt.Sprintf("e%d", i), "hot", ""), "w", time.Minute, time.Hour)
			assert.NoError(t, err)
			seqs[i] = r.Seq
		}()
	}
	wg.Wait()
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for i, s := range seqs {
		assert.Equal(t, uint64(i+1), s)
	}
}

// beginWithState numbers an event and stores its state, as broadcast does.
func beginWithState(t *testing.T, f *fixture, ev publish.Event) uint64 {
	t.Helper()
	ctx := context.Background()
	r, err := f.s.BeginEvent(ctx, ev, "w", time.Minute, time.Hour)
	require.NoError(t, err)
	if ev.ReplaceState {
		require.NoError(t, f.s.ReplaceState(ctx, ev, r.Seq))
	}
	return r.Seq
}

func TestState_ReplaceReadAndClear(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tp := topic.MustPattern("firmware.device.d1")
	_, err := f.s.GetState(ctx, tp)
	assert.ErrorIs(t, err, store.ErrNotFound)

	beginWithState(t, f, event(t, "e1", "", `{"topic":"firmware.device.d1","state":[{"a":1},{"b":2}],"audience":{"orgs":["acme"]}}`))
	st, err := f.s.GetState(ctx, tp)
	require.NoError(t, err)
	require.Len(t, st.Frames, 2)
	assert.JSONEq(t, `{"b":2}`, string(st.Frames[1]))
	assert.Equal(t, &auth.Audience{Orgs: []string{"acme"}}, st.Audience)
	assert.Equal(t, uint64(1), st.Seq)

	beginWithState(t, f, event(t, "e2", "firmware.device.d1", ""))
	st, err = f.s.GetState(ctx, tp)
	require.NoError(t, err)
	assert.Len(t, st.Frames, 2, "an event without state leaves it alone")

	beginWithState(t, f, event(t, "e3", "", `{"topic":"firmware.device.d1","state":[]}`))
	_, err = f.s.GetState(ctx, tp)
	assert.ErrorIs(t, err, store.ErrNotFound, "an empty state list clears it")
}

// Events carrying state on one hot topic, processed in parallel, all
// succeed at once (no transaction shares an item between them), and the
// state left is the highest-numbered event's, whatever order they finished in.
func TestState_ParallelEventsOnOneTopicKeepTheLatest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := event(t, fmt.Sprintf("s%d", i), "", fmt.Sprintf(`{"topic":"hot.state","state":[{"i":%d}]}`, i))
			r, err := f.s.BeginEvent(ctx, ev, "w", time.Minute, time.Hour)
			if !assert.NoError(t, err) {
				return
			}
			assert.NoError(t, f.s.ReplaceState(ctx, ev, r.Seq))
		}()
	}
	wg.Wait()
	st, err := f.s.GetState(ctx, topic.MustPattern("hot.state"))
	require.NoError(t, err)
	assert.Equal(t, uint64(n), st.Seq, "the last number's state wins")

	// An older event's state arriving late changes nothing.
	old := event(t, "late", "", `{"topic":"hot.state","state":[{"late":true}]}`)
	require.NoError(t, f.s.ReplaceState(ctx, old, 3))
	st, err = f.s.GetState(ctx, topic.MustPattern("hot.state"))
	require.NoError(t, err)
	assert.Equal(t, uint64(n), st.Seq)
}

func TestHistory_AfterSinceInOrderAndExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tp := topic.MustPattern("h.t")
	for i := 1; i <= 5; i++ {
		history := i != 3 // event 3 is not kept
		d, _ := json.Marshal(map[string]any{"topic": "h.t", "payload": map[string]int{"i": i}, "history": history, "audience": map[string]any{"orgs": []string{"acme"}}})
		_, err := f.s.BeginEvent(ctx, event(t, fmt.Sprintf("e%d", i), "", string(d)), "w", time.Minute, time.Hour)
		require.NoError(t, err)
	}
	h, err := f.s.History(ctx, tp, 1, 100)
	require.NoError(t, err)
	var seqs []uint64
	for _, e := range h {
		seqs = append(seqs, e.Seq)
	}
	assert.Equal(t, []uint64{2, 4, 5}, seqs)
	assert.JSONEq(t, `{"i":2}`, string(h[0].Payload))
	assert.Equal(t, []string{"acme"}, h[0].Audience.Orgs)
	assert.Equal(t, "e2", h[0].ID)

	h, err = f.s.History(ctx, tp, 0, 2)
	require.NoError(t, err)
	assert.Len(t, h, 2, "limit")

	f.now = f.now.Add(2 * time.Hour)
	h, err = f.s.History(ctx, tp, 0, 100)
	require.NoError(t, err)
	assert.Empty(t, h, "entries past retention are not served")
}

func TestClaimTicket_SecondUseRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.NoError(t, f.s.ClaimTicket(ctx, "j1", f.now.Add(time.Minute)))
	assert.ErrorIs(t, f.s.ClaimTicket(ctx, "j1", f.now.Add(time.Minute)), auth.ErrTicketUsed)
	require.NoError(t, f.s.ClaimTicket(ctx, "j2", f.now.Add(time.Minute)))
}

func TestBeginEvent_ConcurrentDuplicatesTakeOneNumberAndSkipNone(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ev := event(t, "dup", "", `{"topic":"d.t","payload":{"x":1},"history":true}`)
	const n = 8
	var wg sync.WaitGroup
	results := make([]error, n)
	seqs := make([]uint64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := f.s.BeginEvent(ctx, ev, fmt.Sprintf("w%d", i), time.Minute, time.Hour)
			results[i], seqs[i] = err, r.Seq
		}()
	}
	wg.Wait()
	won := 0
	var seq uint64
	for i, err := range results {
		if err == nil {
			won++
			seq = seqs[i]
		} else {
			assert.ErrorIs(t, err, store.ErrInProgress)
		}
	}
	require.Equal(t, 1, won, "exactly one attempt holds the event")
	cur, err := f.s.CurrentSeq(ctx, topic.MustPattern("d.t"))
	require.NoError(t, err)
	h, err := f.s.History(ctx, topic.MustPattern("d.t"), 0, 100)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), cur, "the duplicates drew no number")
	require.Len(t, h, 1)
	assert.Equal(t, seq, h[0].Seq)
	assert.False(t, h[0].Skip)
}

// An event numbered after one published later says by how much, and its
// record keeps when it was published and numbered (the soak checks the
// wait between the two).
func TestBeginEvent_ReportsOvertakingAndTimes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	later := event(t, "later", "order.t", "")
	later.Time = later.Time.Add(5 * time.Second)
	r, err := f.s.BeginEvent(ctx, later, "w", time.Minute, time.Hour)
	require.NoError(t, err)
	assert.Zero(t, r.Overtaken, "the first event overtakes nothing")

	r, err = f.s.BeginEvent(ctx, event(t, "earlier", "order.t", ""), "w", time.Minute, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, 5*time.Second, r.Overtaken)

	rec, ok, err := f.s.Event(ctx, "earlier")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, time.Unix(1_800_000_000, 0), rec.Published)
	assert.Equal(t, f.now.UnixMilli(), rec.Numbered.UnixMilli())
}

// countOne counts one client message, as a frame of one command does.
func countOne(ctx context.Context, f *fixture, id string, at time.Time) (store.Connection, error) {
	c, _, err := f.s.CountCommands(ctx, id, at, 1)
	return c, err
}

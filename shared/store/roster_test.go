package store_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/store"
)

// rosterChanges is one principal's history in a topic: c1 subscribes,
// c2 subscribes (watching), c1 goes, c1 subscribes again (a new
// generation), c2 goes, c1 goes: at the end nobody is left.
func rosterChanges(f *fixture, topicName string, id auth.Identity) []store.SubscriptionChange {
	exp := f.now.Add(time.Hour)
	c := func(conn string, gen int64, added, watch bool) store.SubscriptionChange {
		return store.SubscriptionChange{Topic: topicName, ConnectionID: conn, Identity: id, Added: added, Gen: gen, Watch: watch, ExpiresAt: exp}
	}
	return []store.SubscriptionChange{
		c("c1", 1, true, false), c("c2", 2, true, true), c("c1", 1, false, false),
		c("c1", 3, true, false), c("c2", 2, false, true), c("c1", 3, false, false),
	}
}

// A stream batch may be applied twice, halves of it in either order, and
// records of different items in any order: whatever the order, the roster
// ends with what the last record of each subscription says, and the
// announcements alternate and end agreeing with it.
func TestRoster_EndsRightWhateverTheOrderAndRepeats(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := auth.Identity{Sub: "alice", Type: "user"}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 12 {
		topicName := "room." + string(rune('a'+round))
		changes := rosterChanges(f, topicName, alice)
		// Every record at least once, some twice, in a shuffled order.
		order := append([]store.SubscriptionChange{}, changes...)
		order = append(order, changes[rng.IntN(len(changes))], changes[rng.IntN(len(changes))])
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var anns []store.Announcement
		for _, c := range order {
			_, err := f.s.ApplyToRoster(ctx, c)
			require.NoError(t, err)
			a, due, err := f.s.DueAnnouncement(ctx, topicName, alice)
			require.NoError(t, err)
			if due {
				anns = append(anns, a)
			}
		}
		for i, a := range anns {
			assert.Equal(t, i%2 == 0, a.Present, "round %d: announcements alternate join, leave, ...", round)
			assert.Equal(t, int64(i+1), a.Seq)
		}
		// Removals applied before their adds may leave nothing to
		// announce at all; whatever was announced ends with a leave.
		assert.Equal(t, 0, len(anns)%2, "round %d: every join has its leave: %+v", round, anns)
		watchers, _, err := f.s.Watchers(ctx, topicName, "", 0)
		require.NoError(t, err)
		assert.Empty(t, watchers, "round %d: c2's watch went with it", round)
	}
}

// A change applied again, or an older one after a newer, changes nothing,
// and a principal still present is not announced gone.
func TestRoster_LateRecordsChangeNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	bob := auth.Identity{Sub: "bob", Type: "user"}
	ch := rosterChanges(f, "room.1", bob)
	apply := func(c store.SubscriptionChange) bool {
		t.Helper()
		changed, err := f.s.ApplyToRoster(ctx, c)
		require.NoError(t, err)
		return changed
	}
	due := func() (store.Announcement, bool) {
		t.Helper()
		a, ok, err := f.s.DueAnnouncement(ctx, "room.1", bob)
		require.NoError(t, err)
		return a, ok
	}
	assert.True(t, apply(ch[0]))
	a, ok := due()
	require.True(t, ok)
	assert.True(t, a.Present)
	_, ok = due()
	assert.False(t, ok, "claimed once")
	assert.False(t, apply(ch[0]), "a repeat changes nothing")

	assert.True(t, apply(ch[3]), "c1's second subscription (generation 3)")
	assert.False(t, apply(ch[2]), "the removal of generation 1, late, does not remove generation 3")
	_, ok = due()
	assert.False(t, ok, "still present: no leave")
	assert.False(t, apply(ch[0]), "nor does generation 1's add come back")

	assert.True(t, apply(ch[5]))
	a, ok = due()
	require.True(t, ok)
	assert.False(t, a.Present)
	assert.Equal(t, int64(2), a.Seq)
	assert.False(t, apply(ch[3]), "a removed subscription's own add, late, does not revive it")
	_, ok = due()
	assert.False(t, ok)
}

// An announcement that could not be handed on is given back, and the next
// look claims it again under a new number.
func TestRoster_UnannouncedIsDueAgain(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	carol := auth.Identity{Sub: "carol", Type: "user"}
	_, err := f.s.ApplyToRoster(ctx, rosterChanges(f, "room.2", carol)[1])
	require.NoError(t, err)
	a, ok, err := f.s.DueAnnouncement(ctx, "room.2", carol)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, f.s.Unannounce(ctx, a))
	b, ok, err := f.s.DueAnnouncement(ctx, "room.2", carol)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, b.Present)
	assert.Equal(t, a.Seq+1, b.Seq)
	watchers, _, err := f.s.Watchers(ctx, "room.2", "", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"c2"}, watchers)
}

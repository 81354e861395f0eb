package store_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/store"
)

// The roster folds subscription changes idempotently: a change applied
// twice (a retried stream batch) announces nothing new, and an
// announcement is due until it is recorded.
func TestRoster_JoinsAndLeavesAreDueOnceWhateverTheRetries(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	alice := auth.Identity{Sub: "alice", Type: "user"}
	change := func(conn string, added bool) store.SubscriptionChange {
		return store.SubscriptionChange{Topic: "room.1", ConnectionID: conn, Identity: alice, Added: added}
	}
	apply := func(c store.SubscriptionChange) (bool, bool) {
		t.Helper()
		announce, present, err := f.s.ApplyToRoster(ctx, c)
		require.NoError(t, err)
		return announce, present
	}

	announce, present := apply(change("c1", true))
	assert.True(t, announce && present, "the first connection: a join is due")
	announce, _ = apply(change("c1", true))
	assert.True(t, announce, "applied again (a retry): still due, as nothing was announced")
	claimed, err := f.s.Announced(ctx, "room.1", alice, true)
	require.NoError(t, err)
	assert.True(t, claimed)
	again, err := f.s.Announced(ctx, "room.1", alice, true)
	require.NoError(t, err)
	assert.False(t, again, "one announcement claims it")

	announce, _ = apply(change("c2", true))
	assert.False(t, announce, "a second connection is no news")
	announce, present = apply(change("c1", false))
	assert.False(t, announce || !present, "c2 is still there")
	announce, present = apply(change("c2", false))
	assert.True(t, announce && !present, "the last one went: a leave is due")
	announce, present = apply(change("c2", false))
	assert.True(t, announce && !present, "a retried removal changes nothing")
	claimed, err = f.s.Announced(ctx, "room.1", alice, false)
	require.NoError(t, err)
	assert.True(t, claimed)
	announce, _ = apply(change("c2", false))
	assert.False(t, announce, "announced")
}

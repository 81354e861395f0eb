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
	"github.com/wsgate/wsgate/shared/store"
)

// sweepTTL does what DynamoDB's TTL process does (DynamoDB Local does not):
// it deletes every item whose TTL is before now. It returns how many.
func (f *fixture) sweepTTL(t *testing.T) int {
	t.Helper()
	ctx := context.Background()
	out, err := f.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true)})
	require.NoError(t, err)
	n := 0
	for _, it := range out.Items {
		ttl, ok := it[store.TTLAttribute].(*types.AttributeValueMemberN)
		if !ok {
			continue
		}
		s, err := strconv.ParseInt(ttl.Value, 10, 64)
		require.NoError(t, err)
		if s >= f.now.Unix() {
			continue
		}
		_, err = f.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(f.table), Key: map[string]types.AttributeValue{
			store.PartitionKey: it[store.PartitionKey], store.SortKey: it[store.SortKey],
		}})
		require.NoError(t, err)
		n++
	}
	return n
}

func (f *fixture) withToken(id, sub, jti string) store.Connection {
	c := f.conn(id, sub)
	c.Principal.TokenID = jti
	return c
}

// Issue 23, "a ban disappears early": the bans lived on the principal's
// connection counter, whose TTL every later revocation and every connection
// overwrote. A 30-day ban's item TTL fell to about 2 days after one later
// token revocation of the same principal, and a token ban to the TTL of the
// principal's next connection; DynamoDB's TTL then deleted the ban with the
// counter. A ban now lasts until its until, whatever is written after it.
func TestRevoke_ABanLastsUntilItsUntilWhateverIsWrittenAfterIt(t *testing.T) {
	user := auth.Identity{Type: "user", Sub: "u1"}
	cases := []struct {
		name string
		ban  store.Revocation // its Until is set to 30 days from now
		// later writes to the same principal
		later func(f *fixture) error
		// refusedJTI is the token id of a connection the ban refuses.
		refusedJTI string
	}{{
		name: "a principal ban, then a short token ban",
		ban:  store.Revocation{Principal: user},
		later: func(f *fixture) error {
			_, err := f.s.Revoke(context.Background(), store.Revocation{Principal: user, TokenID: "t-9", Until: f.now.Add(time.Hour)})
			return err
		},
		refusedJTI: "t-1",
	}, {
		name: "a token ban, then connections of the principal",
		ban:  store.Revocation{Principal: user, TokenID: "t-stolen"},
		later: func(f *fixture) error {
			return f.s.PutConnection(context.Background(), f.withToken("other", "u1", "t-kept"), nil)
		},
		refusedJTI: "t-stolen",
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			r := tc.ban
			r.Until = f.now.Add(30 * 24 * time.Hour)
			_, err := f.s.Revoke(ctx, r)
			require.NoError(t, err)
			require.NoError(t, tc.later(f))

			// Three days on, DynamoDB's TTL has removed what expired.
			f.now = f.now.Add(3 * 24 * time.Hour)
			f.sweepTTL(t)
			late := f.withToken("late", "u1", tc.refusedJTI)
			assert.ErrorIs(t, f.s.PutConnection(ctx, late, nil), store.ErrRevoked, "the 30-day ban still holds on day 3")

			// And it ends at its until, not later.
			f.now = r.Until.Add(time.Second)
			f.sweepTTL(t)
			late.ID, late.ConnectedAt, late.ExpiresAt = "after", f.now, f.now.Add(2*time.Hour)
			assert.NoError(t, f.s.PutConnection(ctx, late, nil), "the ban is over")
		})
	}
}

// Issue 25, "revocation cannot be lifted": a lift ends a ban before its
// until; a revocation issued before the lift, delivered late or again as
// EventBridge may, does not ban again; one issued after it does.
func TestLift_EndsABanEarlyAndAStaleRevocationDoesNotRestoreIt(t *testing.T) {
	user := auth.Identity{Type: "user", Sub: "u1"}
	for _, jti := range []string{"", "t-stolen"} {
		t.Run("token "+jti, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			ban := store.Revocation{Principal: user, TokenID: jti, Until: f.now.Add(30 * 24 * time.Hour), Issued: f.now}
			_, err := f.s.Revoke(ctx, ban)
			require.NoError(t, err)
			c := f.withToken("c1", "u1", "t-stolen")
			require.ErrorIs(t, f.s.PutConnection(ctx, c, nil), store.ErrRevoked)

			f.now = f.now.Add(time.Minute)
			require.NoError(t, f.s.Lift(ctx, store.Revocation{Principal: user, TokenID: jti, Issued: f.now}))
			assert.NoError(t, f.s.PutConnection(ctx, c, nil), "the ban is lifted")

			// The first revocation, delivered again after the lift.
			closed, err := f.s.Revoke(ctx, ban)
			require.NoError(t, err)
			assert.Empty(t, closed, "a stale revocation closes nothing")
			c2 := f.withToken("c2", "u1", "t-stolen")
			assert.NoError(t, f.s.PutConnection(ctx, c2, nil), "a stale revocation does not ban again")

			// A new revocation after the lift bans again.
			f.now = f.now.Add(time.Minute)
			again := ban
			again.Issued = f.now
			closed, err = f.s.Revoke(ctx, again)
			require.NoError(t, err)
			assert.Len(t, closed, 2)
			c3 := f.withToken("c3", "u1", "t-stolen")
			assert.ErrorIs(t, f.s.PutConnection(ctx, c3, nil), store.ErrRevoked)
		})
	}
}

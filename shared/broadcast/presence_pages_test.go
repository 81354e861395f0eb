package broadcast_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// An announcement used to post to every watcher of its topic from one
// invocation, page after page: a topic's 100,000 watchers were one
// invocation's wall. Each task now posts one page and hands on the next.
func TestPresence_AnnouncementPostsOnePageOfWatchersPerTask(t *testing.T) {
	const page, watchers = 3, 8
	h := gatewaytest.New(t, func(c *config.Config) { c.FanoutPageSize = page })
	ctx := context.Background()
	var ids []string
	for i := range watchers {
		id := fmt.Sprintf("w%02d", i)
		h.MustConnect(id, h.Token(auth.Grant{Sub: id, Topics: []string{"room.>"}}), nil)
		_, err := h.Store.ApplyToRoster(ctx, store.SubscriptionChange{
			Topic: "room.1", ConnectionID: id, Identity: auth.Identity{Sub: id, Type: "user"},
			Added: true, Watch: true, Gen: time.Now().UnixNano(), ExpiresAt: h.Now.Add(time.Hour),
		})
		require.NoError(t, err)
		ids = append(ids, id)
	}
	h.Tasks.Take() // the token-expiry checks of the connections

	tasks := []queue.Task{{Kind: queue.KindPresence, Topic: "room.1", Announce: &queue.Announce{Identity: auth.Identity{Sub: "joiner", Type: "user"}, Present: true, Seq: 1}}}
	posted, rounds := 0, 0
	for len(tasks) > 0 {
		require.Len(t, tasks, 1, "one task hands on one next page")
		runTasks(t, h, tasks)
		rounds++
		total := 0
		for _, id := range ids {
			total += len(h.Received(id))
		}
		assert.LessOrEqual(t, total-posted, page, "round %d posts at most a page", rounds)
		posted = total
		tasks, _ = h.Tasks.Take()
	}
	assert.Equal(t, (watchers+page-1)/page, rounds)
	for _, id := range ids {
		got := h.Received(id)
		require.Len(t, got, 1, "%s exactly once", id)
		assert.Contains(t, got[0], `"joiner"`)
	}
}

package broadcast_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/publish/publishtest"
	"github.com/wsgate/wsgate/shared/topic"
)

const bigTopic = "room.big"

// subscribers connects n subscribers of bigTopic, every other one asking
// for the envelope.
func subscribers(t *testing.T, h *gatewaytest.Harness, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		id := fmt.Sprintf("b%02d", i)
		q := map[string]string{}
		if i%2 == 0 {
			q["envelope"] = "1"
		}
		h.MustConnect(id, h.Token(auth.Grant{Sub: id, Topics: []string{"room.>"}}), q)
		h.Send(id, `{"type":"subscribe","topic":"`+bigTopic+`"}`)
		ids = append(ids, id)
	}
	h.Tasks.Take() // the token-expiry checks of the connections
	return ids
}

func detailJSON(t *testing.T, d publish.Detail) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	require.NoError(t, err)
	return b
}

// The largest event the gateway accepts, with state and history, reaches
// every subscriber of an audience in several shards, and its state and
// history entry are stored: none of its items passes DynamoDB's 400 KB.
func TestBroadcast_EventAtTheCapReachesEveryShardWithStateAndHistory(t *testing.T) {
	h := sharded(t)
	ids := subscribers(t, h, 5)
	d := publishtest.DetailOfSize(bigTopic, publish.MaxDetailBytes)
	require.NoError(t, h.Publish("cap", detailJSON(t, d)))
	tasks := shardTasks(t, h)
	require.NotEmpty(t, tasks, "5 subscribers over several buckets: the first range here, the others queued")
	for _, task := range tasks {
		assert.Equal(t, "cap", task.DetailRef, "the detail is stored once, not carried by each shard")
	}
	runTasks(t, h, tasks)
	blob := string(d.Payload)[len(`{"blob":"`) : len(d.Payload)-len(`"}`)]
	for _, id := range ids {
		got := h.Received(id)
		require.Len(t, got, 1, "%s exactly once", id)
		assert.Contains(t, got[0], blob)
	}

	ctx := context.Background()
	st, err := h.Store.GetState(ctx, topic.MustPattern(bigTopic))
	require.NoError(t, err)
	require.Len(t, st.Frames, len(d.State))
	for i := range d.State {
		assert.Equal(t, []byte(d.State[i]), st.Frames[i])
	}
	hist, err := h.Store.History(ctx, topic.MustPattern(bigTopic), 0, 10)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	assert.Equal(t, []byte(d.Payload), hist[0].Payload)
}

// refusedChangesNothing publishes a small state event, then detail, and
// checks that detail was refused for its size, not retried, and left the
// topic as the first event made it: state, number, history, deliveries.
func refusedChangesNothing(t *testing.T, detail []byte) {
	h := sharded(t)
	ids := subscribers(t, h, 3)
	require.NoError(t, h.Publish("first", `{"topic":"`+bigTopic+`","payload":1,"state":[{"v":1}],"history":true}`))
	runTasks(t, h, shardTasks(t, h))

	require.NoError(t, h.Publish("too-big", detail), "refused, not retried")
	assert.Equal(t, 1.0, h.Metrics.Last("RejectedTooLarge"))
	tasks, _ := h.Tasks.Take()
	assert.Empty(t, tasks, "no shard queued")
	for _, id := range ids {
		assert.Len(t, h.Received(id), 1, "%s got the first event only", id)
	}
	ctx := context.Background()
	st, err := h.Store.GetState(ctx, topic.MustPattern(bigTopic))
	require.NoError(t, err)
	assert.Equal(t, [][]byte{[]byte(`{"v":1}`)}, st.Frames, "the state is the first event's")
	seq, err := h.Store.CurrentSeq(ctx, topic.MustPattern(bigTopic))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), seq, "no number taken")
	hist, err := h.Store.History(ctx, topic.MustPattern(bigTopic), 1, 10)
	require.NoError(t, err)
	assert.Empty(t, hist, "nothing kept, not even a skipped number")
}

// An event over the cap is refused before it is numbered or its state
// replaced, whatever its audience: one byte over, and one whose detail
// would not fit the item its shards read (which used to fail on every
// retry after replacing the state).
func TestBroadcast_EventOverTheCapIsRefusedBeforeItsStateOrNumber(t *testing.T) {
	for _, n := range []int{publish.MaxDetailBytes + 1, publish.MaxItemBytes + 1024} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			refusedChangesNothing(t, detailJSON(t, publishtest.DetailOfSize(bigTopic, n)))
		})
	}
}

// A state within its own limit whose item, with the event's audience,
// would pass DynamoDB's 400 KB (and so fail on every retry) is refused,
// whether the audience is large or only grows when stored.
func TestBroadcast_StateThatWouldOverflowItsItemIsRefused(t *testing.T) {
	frames := func(n int) string {
		var fs []string
		for ; n > 0; n -= 100 * 1024 {
			fs = append(fs, `"`+strings.Repeat("s", min(n, 100*1024)-2)+`"`)
		}
		return `[` + strings.Join(fs, ",") + `]`
	}
	audience := func(entry string, n int) string {
		var es []string
		for size := 0; size < n; size += len(entry) + 3 {
			es = append(es, `"`+entry+`"`)
		}
		return `{"orgs":[` + strings.Join(es, ",") + `]}`
	}
	t.Run("state at its limit and a 60 KB audience", func(t *testing.T) {
		refusedChangesNothing(t, []byte(`{"topic":"`+bigTopic+`","payload":2,"state":`+frames(publish.MaxStateBytes)+`,"audience":`+audience(strings.Repeat("o", 200), 60*1024)+`}`))
	})
	t.Run("state and audience under the cap that grow stored", func(t *testing.T) {
		refusedChangesNothing(t, []byte(`{"topic":"`+bigTopic+`","payload":2,"state":`+frames(250*1024)+`,"audience":`+audience(strings.Repeat("<", 200), 60*1024)+`}`))
	})
}

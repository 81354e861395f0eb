package apigw

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A sink connection is open to @connections without a socket: posts reach
// the observer, GET describes it, DELETE ends it, and the injected faults
// apply to it as to a real connection.
func TestSink_PostsReachTheObserverUntilDeleted(t *testing.T) {
	t.Parallel()
	tg := start(t, Options{}, newFunctions())
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	tg.AddSinks([]string{"Sink000000000001", "Sink000000000002"}, at)
	var mu sync.Mutex
	got := map[string][]string{}
	tg.SetSinkObserver(func(id string, body []byte) {
		mu.Lock()
		defer mu.Unlock()
		got[id] = append(got[id], string(body))
	})

	require.NoError(t, tg.post("Sink000000000001", "a"))
	require.NoError(t, tg.post("Sink000000000001", "b"))
	require.NoError(t, tg.post("Sink000000000002", "c"))
	assert.Equal(t, map[string][]string{"Sink000000000001": {"a", "b"}, "Sink000000000002": {"c"}}, got)
	assert.Equal(t, int64(3), tg.SinkPosts())

	out, err := tg.get("Sink000000000001")
	require.NoError(t, err)
	require.NotNil(t, out.ConnectedAt)
	assert.True(t, at.Equal(*out.ConnectedAt))

	require.NoError(t, tg.delete("Sink000000000001"))
	assert.True(t, isGone(tg.post("Sink000000000001", "after")), "deleted: gone")
	assert.True(t, isGone(tg.post("Nope000000000001", "x")), "never a sink: gone")

	tg.SetFaults(Faults{ThrottleRate: 1})
	assert.Error(t, tg.post("Sink000000000002", "throttled"))
	tg.SetFaults(Faults{})
	assert.Equal(t, []string{"c"}, got["Sink000000000002"], "a throttled post is not delivered")
	assert.Equal(t, int64(3), tg.SinkPosts())
}

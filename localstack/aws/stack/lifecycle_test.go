package stack_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/ddbstreams"
	"github.com/wsgate/wsgate/localstack/aws/eventbus"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
)

// lifecycle collects the lifecycle events the stack's bus receives, by
// an ordinary rule, as a backend would.
type lifecycle struct {
	mu     sync.Mutex
	events []lifecycleEvent
	seen   map[string]bool // EventBridge ids: its redeliveries are dropped
}

type lifecycleEvent struct {
	ID         string                  `json:"id"`
	DetailType string                  `json:"detail-type"`
	Source     string                  `json:"source"`
	Detail     publish.ConnectionEvent `json:"detail"`
}

func watchLifecycle(t *testing.T, s *stack.Stack) *lifecycle {
	t.Helper()
	l := &lifecycle{seen: map[string]bool{}}
	require.NoError(t, s.Bus.PutRule(eventbus.Rule{
		Name: "test-lifecycle", Bus: s.BusName,
		Pattern: `{"source":["wsgate"],"detail-type":["` + publish.ConnectionOpened + `","` + publish.ConnectionClosed + `"]}`,
		Target: func(_ context.Context, event []byte) error {
			var e lifecycleEvent
			if err := json.Unmarshal(event, &e); err != nil {
				return err
			}
			l.mu.Lock()
			if !l.seen[e.ID] {
				l.seen[e.ID] = true
				l.events = append(l.events, e)
			}
			l.mu.Unlock()
			return nil
		},
	}))
	return l
}

// lifecycleWait is how long a lifecycle event may take from the table's
// stream through the broadcast function to the bus: these tests assert
// that it arrives, not how fast, and under the whole suite's parallel
// stacks on two cores it has taken over 15 s (a fresh-clone CI run).
const lifecycleWait = 45 * time.Second

// of returns the events about sub so far, waiting until there are n.
func (l *lifecycle) of(t *testing.T, sub string, n int) []lifecycleEvent {
	t.Helper()
	var out []lifecycleEvent
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		out = out[:0]
		for _, e := range l.events {
			if e.Detail.Sub == sub {
				out = append(out, e)
			}
		}
		return len(out) >= n
	}, lifecycleWait, 20*time.Millisecond, "%d lifecycle events of %s", n, sub)
	return out
}

func (l *lifecycle) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// Every connection opened (at the handshake, or by an auth message) and
// closed reaches the bus as wsgate.connection.opened / .closed, with who,
// the scope, when, how long and why; a connection that never
// authenticated was never opened and is not announced.
func TestLifecycle_ConnectionsOpenedAndClosedReachTheBus(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvAnonymousTopics: "public.*"}
	})
	l := watchLifecycle(t, s)

	alice := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "alice", Type: "participant", Orgs: []string{"acme"}, Topics: []string{"t.>"}})})
	opened := l.of(t, "alice", 1)[0]
	assert.Equal(t, publish.ConnectionOpened, opened.DetailType)
	assert.Equal(t, "wsgate", opened.Source)
	assert.Equal(t, "participant", opened.Detail.PType)
	assert.Equal(t, []string{"acme"}, opened.Detail.Orgs)
	assert.Equal(t, "handshake", opened.Detail.Auth)
	assert.NotEmpty(t, opened.Detail.ConnectionID)
	assert.WithinDuration(t, time.Now(), opened.Detail.ConnectedAt, 10*time.Second)

	bob := stacktest.MustDial(t, s.WebSocketURL, nil) // auth-message mode
	time.Sleep(300 * time.Millisecond)
	bob.SendJSON(map[string]string{"type": "auth", "token": token(t, s, auth.Grant{Sub: "bob", Topics: []string{"t.>"}})})
	require.Equal(t, true, bob.Expect("auth_response", 10*time.Second)["success"])
	assert.Equal(t, "message", l.of(t, "bob", 1)[0].Detail.Auth)

	scoped := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"topic": "public.news"})
	_ = scoped

	never := stacktest.MustDial(t, s.WebSocketURL, nil) // pending, then gone
	time.Sleep(1200 * time.Millisecond)                 // durations of a second or more
	require.NoError(t, never.WS.Close(websocket.StatusNormalClosure, ""))
	require.NoError(t, alice.WS.Close(websocket.StatusNormalClosure, "bye"))
	closed := l.of(t, "alice", 2)[1]
	assert.Equal(t, publish.ConnectionClosed, closed.DetailType)
	assert.Equal(t, opened.Detail.ConnectionID, closed.Detail.ConnectionID)
	assert.Equal(t, publish.CloseDisconnected, closed.Detail.Reason)
	require.NotNil(t, closed.Detail.ClosedAt)
	assert.GreaterOrEqual(t, closed.Detail.DurationMS, int64(0), "to the stream's second")
	assert.NotEqual(t, opened.Detail.ID, closed.Detail.ID)

	require.NoError(t, scoped.WS.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, e := range l.events {
			if e.Detail.Scope == "public.news" && e.DetailType == publish.ConnectionClosed {
				return e.Detail.PType == "anonymous"
			}
		}
		return false
	}, lifecycleWait, 20*time.Millisecond, "the anonymous scoped connection's close, with its scope")
	time.Sleep(time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	assert.Len(t, l.events, 5, "alice opened and closed, bob opened, the scoped one opened and closed; the pending one nothing: %v", l.events)
}

// A storm of connections costs few invocations and PutEvents calls: each
// of the stream's shards batches its records (up to 100, for up to the
// batching window), and a batch's events go out 10 entries a call.
func TestLifecycle_AConnectionStormIsBatched(t *testing.T) {
	var invocations, announced, calls atomic.Int64
	s := stacktest.Start(t, func(o *stack.Options) {
		o.FunctionLog = func(fn string, line []byte) {
			var rec struct {
				Msg    string `json:"msg"`
				Events int64  `json:"events"`
			}
			if fn == stack.FnBroadcast && json.Unmarshal(line, &rec) == nil && rec.Msg == "lifecycle events" {
				invocations.Add(1)
				announced.Add(rec.Events)
				calls.Add((rec.Events + 9) / 10) // AnnounceAll's calls of 10
			}
		}
	})
	l := watchLifecycle(t, s)
	const n = 60
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: fmt.Sprint("storm-", i), Topics: []string{"t.>"}})})
		}()
	}
	wg.Wait()
	storm := time.Since(start)
	// The function logs its line after the bus took the events: wait for both.
	require.Eventually(t, func() bool { return l.count() >= n && announced.Load() >= n }, 20*time.Second, 20*time.Millisecond)
	t.Logf("%d connections in %v: %d lifecycle events in %d invocations, %d PutEvents calls",
		n, storm.Round(time.Millisecond), announced.Load(), invocations.Load(), calls.Load())
	assert.Equal(t, int64(n), announced.Load())
	// Shards run in parallel, each invoking at most once a window while
	// records come (and once more for the last ones), however slow the
	// machine makes the storm.
	most := int64(ddbstreams.DefaultShards) * (int64(storm/store.StreamBatchWindow) + 2)
	assert.LessOrEqual(t, invocations.Load(), most, "batched per shard and window")
	assert.Less(t, invocations.Load(), int64(n), "not one invocation a connection")
	assert.LessOrEqual(t, calls.Load(), invocations.Load()+n/10, "a batch's events in PutEvents calls of 10")
}

package stack_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/store"
)

// A cut of every connection at once is a burst of $disconnects far over
// the account's Lambda concurrency. Integrated with the function directly,
// most are throttled and lost (API Gateway does not retry them); through
// the disconnect queue, the function drains them in batches at its
// mapping's concurrency: none is throttled and every connection's records
// go.
func TestDisconnect_CutOfEveryConnectionIsQueuedNotThrottled(t *testing.T) {
	const clients = 40
	s := stacktest.Start(t, func(o *stack.Options) { o.AccountConcurrency = 4 })
	st := storeOf(s)
	ids := make([]string, 0, clients)
	for i := range clients {
		sub := fmt.Sprintf("cut%02d", i)
		c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: sub, Topics: []string{"cut.>"}})})
		c.SendJSON(map[string]string{"type": "subscribe", "topic": "cut.all"})
		c.Expect("subscribed", 10*time.Second)
		ids = append(ids, connectionID(t, st, sub))
	}
	before := s.Host.Stats(stack.FnDisconnect)
	require.Equal(t, clients, s.Gateway.Drop(), "every connection cut at once")

	for _, id := range ids {
		waitGone(t, st, id)
	}
	assert.Zero(t, s.Host.Stats(stack.FnDisconnect).Throttles-before.Throttles, "no $disconnect throttled")
	assert.Less(t, s.Host.Stats(stack.FnDisconnect).Invocations-before.Invocations, clients, "the queue's batches, not one invocation per connection")
	subs, _, err := st.Subscribers(context.Background(), "cut.all", "", 100)
	require.NoError(t, err)
	assert.Empty(t, subs, "every subscriber entry removed")
	assertNoneDeadLettered(t, s)
}

// A message the disconnect queue repeats (SQS delivers at least once)
// removes nothing twice and fails nothing.
func TestDisconnect_RepeatedQueueMessageIsHarmless(t *testing.T) {
	s := stacktest.Start(t)
	st := storeOf(s)
	c := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "twice", Topics: []string{"t.>"}})})
	c.SendJSON(map[string]string{"type": "subscribe", "topic": "t.x"})
	c.Expect("subscribed", 5*time.Second)
	id := connectionID(t, st, "twice")
	require.NoError(t, c.WS.CloseNow())
	waitGone(t, st, id)
	before := s.Host.Stats(stack.FnDisconnect)
	require.NoError(t, s.SQS.SendMessage(s.DisconnectQueueURL, id), "the same connection again")
	require.NoError(t, s.SQS.SendMessage(s.DisconnectQueueURL, "not a connection id"), "a message that is no connection id")
	require.Eventually(t, func() bool {
		visible, inFlight, delayed, err := s.SQS.Depth(s.DisconnectQueueURL)
		return err == nil && visible+inFlight+delayed == 0
	}, 10*time.Second, 20*time.Millisecond, "the queue drained")
	after := s.Host.Stats(stack.FnDisconnect)
	assert.Positive(t, after.Invocations-before.Invocations)
	assert.Zero(t, after.Errors-before.Errors)
	_, err := st.GetConnection(context.Background(), id)
	assert.ErrorIs(t, err, store.ErrNotFound)
	assertNoneDeadLettered(t, s)
}

// assertNoneDeadLettered checks the disconnect queue's DLQ is empty.
func assertNoneDeadLettered(t *testing.T, s *stack.Stack) {
	t.Helper()
	visible, inFlight, _, err := s.SQS.Depth(s.DisconnectDeadLetterURL)
	require.NoError(t, err)
	assert.Zero(t, visible+inFlight, "nothing dead-lettered")
}

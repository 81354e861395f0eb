package sqslocal

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSendMessage_FromInsideTheStackObeysSQSRules(t *testing.T) {
	h := newHarness(t, Options{})
	q := h.createQueue(t, "events-dlq", nil)
	require.NoError(t, h.svc.SendMessage(q, `{"requestContext":{}}`))
	assert.Equal(t, [3]int{1, 0, 0}, h.depth(t, q))

	assert.ErrorIs(t, h.svc.SendMessage(q+"-missing", "x"), ErrQueueDoesNotExist)
	assert.ErrorIs(t, h.svc.SendMessage(q, ""), ErrInvalidParameterValue)
	assert.ErrorIs(t, h.svc.SendMessage(q, strings.Repeat("x", maxMessageSize+1)), ErrInvalidParameterValue)
}

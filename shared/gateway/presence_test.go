package gateway_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/topic"
)

// The presence cursor was the last listed connection's id in base64:
// another principal's connection id, readable by anyone who may list the
// topic, and any id (or a changed byte) was taken as a cursor. Now a
// cursor reveals nothing, works on every instance, and one the gateway
// did not give for this topic is refused.
func TestPresence_CursorIsOpaqueAndCannotBeForged(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.PresenceTopics = []topic.Pattern{topic.MustPattern("room.*")}
	})
	n := gateway.PresencePage + 5
	var ids []string
	for i := range n {
		id := fmt.Sprintf("Vx%03dConnQ=", i)
		ids = append(ids, id)
		h.MustConnect(id, h.Token(auth.Grant{Sub: fmt.Sprintf("u%03d", i), Topics: []string{"room.*"}}), nil)
		one(t, h.Send(id, `{"type":"subscribe","topic":"room.1"}`), "subscribed")
	}
	h.MustConnect("spy", h.Token(auth.Grant{Sub: "spy", Topics: []string{"room.*"}}), nil)
	ask := func(topic, cursor string) []string {
		return h.SendJSON("spy", map[string]any{"type": "presence", "id": "w", "topic": topic, "cursor": cursor})
	}

	first := one(t, ask("room.1", ""), "presence")
	cursor, _ := first["cursor"].(string)
	require.NotEmpty(t, cursor, "more than a page")
	decoded, _ := base64.RawURLEncoding.DecodeString(cursor)
	for _, id := range ids {
		assert.NotContains(t, cursor, id)
		assert.NotContains(t, string(decoded), id, "the cursor names a connection")
	}
	assert.NotEqual(t, cursor, one(t, ask("room.1", ""), "presence")["cursor"], "sealed afresh each time")

	// Paging goes on, on either instance (the harness alternates).
	listed := len(first["members"].([]any))
	second := one(t, ask("room.1", cursor), "presence")
	listed += len(second["members"].([]any))
	assert.Equal(t, n, listed, "every subscriber once, over two pages")
	assert.Empty(t, second["cursor"])

	b, err := base64.RawURLEncoding.DecodeString(cursor)
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	for name, forged := range map[string]string{
		"a changed byte":         base64.RawURLEncoding.EncodeToString(b),
		"a connection id":        base64.RawURLEncoding.EncodeToString([]byte(ids[50])),
		"not base64":             "%%%",
		"too long":               strings.Repeat("A", 2000),
		"cut short":              cursor[:10],
		"another topic's cursor": "",
	} {
		topic := "room.1"
		if forged == "" {
			forged, topic = cursor, "room.2"
		}
		m := one(t, ask(topic, forged), "error")
		assert.Equal(t, "bad_request", m["code"], "%s: %v", name, m)
	}
}

package protocol

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

// A request written by a client is read back by Parse into the command it
// stands for: the encoder and the parser agree on every field name.
func TestRequests_ParseBack(t *testing.T) {
	cases := []struct {
		name string
		req  any
		want Command
	}{
		{"subscribe", SubscribeRequest{ID: "sub:a.*", Topic: "a.*", Filters: map[string][]any{"severity": {"critical", 2}}},
			Subscribe{ID: json.RawMessage(`"sub:a.*"`), Patterns: patternsOf(t, "a.*"), Filters: filter.Set{"severity": {"2", "critical"}}}}, // canonical: sorted strings
		{"subscribe without filters", SubscribeRequest{Topic: "a.b"},
			Subscribe{Patterns: patternsOf(t, "a.b")}},
		{"unsubscribe", UnsubscribeRequest{ID: "u1", Topic: "a.>"},
			Unsubscribe{ID: json.RawMessage(`"u1"`), Patterns: patternsOf(t, "a.>")}},
		{"resume from zero, enveloped", ResumeRequest{ID: "resume:a.b", Topic: "a.b", Since: 0, Envelope: true},
			Resume{ID: json.RawMessage(`"resume:a.b"`), Topic: patternsOf(t, "a.b")[0], Since: 0, Envelope: true}},
		{"resume", ResumeRequest{Topic: "a.b", Since: 41},
			Resume{Topic: patternsOf(t, "a.b")[0], Since: 41}},
		{"ping", PingRequest{}, Ping{}},
		{"ping with timestamp", PingRequest{ID: "p", Timestamp: "2026-11-23T10:00:00Z"},
			Ping{ID: json.RawMessage(`"p"`), Timestamp: "2026-11-23T10:00:00Z"}},
		{"auth", AuthRequest{ID: "a", Token: "tok"}, Auth{ID: json.RawMessage(`"a"`), Token: "tok"}},
		{"publish", PublishRequest{ID: "p1", Topic: "chat.r1", Payload: json.RawMessage(`{"text":"hi"}`), Attributes: map[string]any{"lang": "en"}},
			Publish{ID: json.RawMessage(`"p1"`), Topic: patternsOf(t, "chat.r1")[0], Payload: json.RawMessage(`{"text":"hi"}`), Attributes: json.RawMessage(`{"lang":"en"}`)}},
		{"presence", PresenceRequest{ID: "w", Topic: "room.1", Cursor: "QUJD"},
			Presence{ID: json.RawMessage(`"w"`), Topic: patternsOf(t, "room.1")[0], Cursor: "QUJD"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := json.Marshal(c.req)
			require.NoError(t, err)
			got, err := Parse(b, 50)
			require.NoError(t, err, "%s", b)
			if s, ok := got.(Subscribe); ok && len(s.Filters) == 0 {
				s.Filters = nil // no filters parse as an empty set
				got = s
			}
			assert.Equal(t, c.want, got, "%s", b)
		})
	}
}

func TestRequests_MarshalWithTheirType(t *testing.T) {
	cases := []struct {
		req  any
		want string
	}{
		{PingRequest{}, `{"type":"ping"}`},
		{SubscribeRequest{ID: "sub:a.b", Topic: "a.b"}, `{"type":"subscribe","id":"sub:a.b","topic":"a.b"}`},
		{ResumeRequest{ID: "resume:a.b", Topic: "a.b"}, `{"type":"resume","id":"resume:a.b","topic":"a.b","since":0}`},
		{UnsubscribeRequest{Topic: "a.b"}, `{"type":"unsubscribe","topic":"a.b"}`},
		{AuthRequest{Token: "t"}, `{"type":"auth","token":"t"}`},
	}
	for _, c := range cases {
		b, err := json.Marshal(c.req)
		require.NoError(t, err)
		assert.Equal(t, c.want, string(b))
	}
}

func TestHeader_ReadsTypeAndIDOfEveryMessage(t *testing.T) {
	for typ, msg := range map[string]any{
		TypeResumed: Resumed{Type: TypeResumed, ID: json.RawMessage(`"resume:a.b"`), Topic: "a.b", Seq: 3},
		TypeError:   Errorf(json.RawMessage(`"resume:a.b"`), CodeHistoryExpired, "gone"),
	} {
		var h Header
		require.NoError(t, json.Unmarshal(Encode(msg), &h))
		assert.Equal(t, Header{Type: typ, ID: json.RawMessage(`"resume:a.b"`)}, h)
	}
}

func patternsOf(t *testing.T, ps ...string) []topic.Pattern {
	t.Helper()
	out := make([]topic.Pattern, len(ps))
	for i, p := range ps {
		var err error
		out[i], err = topic.ParsePattern(p)
		require.NoError(t, err)
	}
	return out
}

// A request marshalled with Marshal keeps '>' as written (json.Marshal
// sends \u003e, which the server echoes back in the reply's id), and so
// does an error's message.
func TestRequests_KeepGreaterThanAsWritten(t *testing.T) {
	b, err := Marshal(SubscribeRequest{ID: "sub:demo.>", Topic: "demo.>"})
	require.NoError(t, err)
	assert.Equal(t, `{"type":"subscribe","id":"sub:demo.>","topic":"demo.>"}`, string(b))
	e := Encode(&Error{Code: "bad_request", Message: "a.> is not allowed"})
	assert.Contains(t, string(e), `"a.> is not allowed"`)
}

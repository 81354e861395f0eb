package protocol

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/filter"
)

func patterns(c Command) []string {
	var ps []string
	switch x := c.(type) {
	case Subscribe:
		for _, p := range x.Patterns {
			ps = append(ps, p.String())
		}
	case Unsubscribe:
		for _, p := range x.Patterns {
			ps = append(ps, p.String())
		}
	case Register:
		ps = append(ps, x.Pattern.String())
	}
	return ps
}

func TestParse_Commands(t *testing.T) {
	cases := []struct {
		name     string
		in       string
		typ      string
		patterns []string
		check    func(t *testing.T, c Command)
	}{
		{"subscribe topic with filters", `{"type":"subscribe","id":7,"topic":"a.*","filters":{"severity":["critical"]}}`, TypeSubscribe, []string{"a.*"}, func(t *testing.T, c Command) {
			assert.Equal(t, filter.Set{"severity": {"critical"}}, c.(Subscribe).Filters)
			assert.Equal(t, "7", string(c.RequestID()))
		}},
		{"subscribe channel + device", `{"type":"subscribe","channel":"telemetry","device_id":1,"filters":{"metrics":["temperature"]}}`, TypeSubscribe, []string{"telemetry.1"}, nil},
		{"subscribe channel + device list", `{"type":"subscribe","channel":"devices","device_id":[3,1,2]}`, TypeSubscribe, []string{"devices.1", "devices.2", "devices.3"}, nil},
		{"subscribe channel only", `{"type":"subscribe","channel":"system","filters":{"metrics":["cpu_usage"],"frequency":"30s"}}`, TypeSubscribe, []string{"system.*"}, nil},
		{"device_id inside filters is lifted", `{"type":"subscribe","channel":"alerts","filters":{"severity":["critical","warning"],"device_id":1}}`, TypeSubscribe, []string{"alerts.1"}, func(t *testing.T, c Command) {
			assert.Equal(t, filter.Set{"severity": {"critical", "warning"}}, c.(Subscribe).Filters)
		}},
		{"filters spread next to channel (Valtronics' JS client)", `{"type":"subscribe","channel":"alerts","severity":["critical","warning"]}`, TypeSubscribe, []string{"alerts.*"}, func(t *testing.T, c Command) {
			assert.Equal(t, filter.Set{"severity": {"critical", "warning"}}, c.(Subscribe).Filters)
		}},
		{"nested filters win over spread ones", `{"type":"subscribe","channel":"alerts","severity":"info","filters":{"severity":["critical"]}}`, TypeSubscribe, []string{"alerts.*"}, func(t *testing.T, c Command) {
			assert.Equal(t, filter.Set{"severity": {"critical"}}, c.(Subscribe).Filters)
		}},
		{"unsubscribe a whole channel", `{"type":"unsubscribe","channel":"telemetry"}`, TypeUnsubscribe, []string{"telemetry.*"}, func(t *testing.T, c Command) {
			assert.True(t, c.(Unsubscribe).Covering)
		}},
		{"device id with a dot is encoded", `{"type":"subscribe","channel":"devices","device_id":"a.b"}`, TypeSubscribe, []string{"devices.a%2Eb"}, nil},
		{"unsubscribe channel", `{"type":"unsubscribe","channel":"telemetry","device_id":1}`, TypeUnsubscribe, []string{"telemetry.1"}, func(t *testing.T, c Command) {
			assert.False(t, c.(Unsubscribe).Covering)
		}},
		{"ping with timestamp", `{"type":"ping","timestamp":"2024-01-01T12:00:00Z"}`, TypePing, nil, func(t *testing.T, c Command) {
			assert.Equal(t, "2024-01-01T12:00:00Z", c.(Ping).Timestamp)
		}},
		{"request_current_state by operation_id", `{"type":"request_current_state","operation_id":"6a0e"}`, TypeRequestCurrentState, nil, func(t *testing.T, c Command) {
			assert.Equal(t, "6a0e", c.(RequestCurrentState).ScopeID)
		}},
		{"request_current_state by topic", `{"type":"request_current_state","topic":"x.y"}`, TypeRequestCurrentState, nil, func(t *testing.T, c Command) {
			assert.Equal(t, "x.y", c.(RequestCurrentState).Topic)
		}},
		{"resume", `{"type":"resume","topic":"x.y","since":41}`, TypeResume, nil, func(t *testing.T, c Command) {
			assert.Equal(t, uint64(41), c.(Resume).Since)
		}},
		{"auth", `{"type":"auth","token":"abc"}`, TypeAuth, nil, nil},
		{"register text", "register profiles.*.*", TypeRegister, []string{"profiles.*.*"}, nil},
		{"register key with dots", "register machines.update.m1.example.com", TypeRegister, []string{"machines.update.m1%2Eexample%2Ecom"}, nil},
		{"deregister text", "deregister *.*.*", TypeDeregister, []string{"*.*.*"}, nil},
		{"several lines are a batch", "register a.b.c\nregister d.*.*\n", TypeBatch, nil, func(t *testing.T, c Command) {
			assert.Len(t, c.(Batch).Items, 2)
		}},
		{"batch", `{"type":"batch","messages":[{"type":"ping"},{"type":"nope"},{"type":"subscribe","topic":"a"}]}`, TypeBatch, nil, func(t *testing.T, c Command) {
			b := c.(Batch)
			require.Len(t, b.Items, 3)
			assert.Equal(t, TypePing, b.Items[0].Command.Type())
			assert.Equal(t, CodeBadRequest, b.Items[1].Err.Code)
			assert.Equal(t, TypeSubscribe, b.Items[2].Command.Type())
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd, err := Parse([]byte(c.in), 50)
			require.NoError(t, err)
			assert.Equal(t, c.typ, cmd.Type())
			if c.patterns != nil {
				assert.Equal(t, c.patterns, patterns(cmd))
			}
			if c.check != nil {
				c.check(t, cmd)
			}
		})
	}
}

func TestParse_Errors(t *testing.T) {
	many := make([]string, 51)
	for i := range many {
		many[i] = `{"type":"ping"}`
	}
	cases := []struct {
		name, in, code string
		unknown        bool
	}{
		{"empty", "  ", CodeBadRequest, false},
		{"bad JSON", `{"type":`, CodeBadRequest, false},
		{"not an object", `[1]`, CodeBadRequest, false},
		{"missing type", `{"topic":"a"}`, CodeBadRequest, false},
		{"unknown type", `{"type":"launch"}`, CodeBadRequest, true},
		{"type not a string", `{"type":1}`, CodeBadRequest, false},
		{"subscribe without target", `{"type":"subscribe"}`, CodeBadRequest, false},
		{"subscribe both forms", `{"type":"subscribe","topic":"a","channel":"b"}`, CodeBadRequest, false},
		{"bad pattern", `{"type":"subscribe","topic":"a..b"}`, CodeBadRequest, false},
		{"channel with a dot", `{"type":"subscribe","channel":"a.b"}`, CodeBadRequest, false},
		{"nested filter", `{"type":"subscribe","topic":"a","filters":{"x":{"y":1}}}`, CodeBadRequest, false},
		{"resume without since", `{"type":"resume","topic":"a"}`, CodeBadRequest, false},
		{"resume negative since", `{"type":"resume","topic":"a","since":-1}`, CodeBadRequest, false},
		{"resume on a pattern", `{"type":"resume","topic":"a.*","since":1}`, CodeBadRequest, false},
		{"auth without token", `{"type":"auth"}`, CodeBadRequest, false},
		{"publish without topic", `{"type":"publish","payload":{}}`, CodeBadRequest, false},
		{"presence without topic", `{"type":"presence"}`, CodeBadRequest, false},
		{"presence of a pattern", `{"type":"presence","topic":"room.*"}`, CodeBadRequest, false},
		{"publish to a pattern", `{"type":"publish","topic":"chat.*","payload":{}}`, CodeBadRequest, false},
		{"publish without payload", `{"type":"publish","topic":"chat.r1"}`, CodeBadRequest, false},
		{"publish a null payload", `{"type":"publish","topic":"chat.r1","payload":null}`, CodeBadRequest, false},
		{"publish attributes not an object", `{"type":"publish","topic":"chat.r1","payload":1,"attributes":[1]}`, CodeBadRequest, false},
		{"request_current_state without target", `{"type":"request_current_state"}`, CodeBadRequest, false},
		{"id of a bad kind", `{"type":"ping","id":{"a":1}}`, CodeBadRequest, false},
		{"batch too long", `{"type":"batch","messages":[` + strings.Join(many, ",") + `]}`, CodeTooLarge, false},
		{"nested batch is an item error not a parse error", "", "", false},
		{"empty batch", `{"type":"batch","messages":[]}`, CodeBadRequest, false},
		{"register without fields", "register profiles", CodeBadRequest, false},
		{"unknown text", "hello there", CodeBadRequest, true},
		{"binary junk", "\xff\xfe", CodeBadRequest, false},
	}
	for _, c := range cases {
		if c.in == "" && c.code == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in), 50)
			var pe *Error
			require.ErrorAs(t, err, &pe)
			assert.Equal(t, c.code, pe.Code)
			assert.Equal(t, c.unknown, pe.Unknown)
			assert.NotEmpty(t, pe.Message)
		})
	}
	// A batch inside a batch is refused item by item.
	cmd, err := Parse([]byte(`{"type":"batch","messages":[{"type":"batch","messages":[{"type":"ping"}]}]}`), 50)
	require.NoError(t, err)
	assert.Equal(t, CodeBadRequest, cmd.(Batch).Items[0].Err.Code)
}

// A misspelt "filters" would leave a subscription unfiltered: refused,
// naming the key; spread filters next to "channel" still work.
func TestParse_SubscribeRefusesUnknownFields(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"filter for filters", `{"type":"subscribe","id":1,"topic":"a.*","filter":{"severity":["critical"]}}`, `unknown field "filter" in subscribe; filters go in "filters"`},
		{"any other field on a topic subscribe", `{"type":"subscribe","topic":"a.*","severity":"critical"}`, `unknown field "severity" in subscribe`},
		{"an object next to channel", `{"type":"subscribe","channel":"alerts","filtres":{"severity":["critical"]}}`, `unknown field "filtres" in subscribe; filters go in "filters"`},
		{"unsubscribe too", `{"type":"unsubscribe","topic":"a.*","topics":["b"]}`, `unknown field "topics" in unsubscribe`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in), 50)
			var perr *Error
			require.ErrorAs(t, err, &perr)
			assert.Equal(t, CodeBadRequest, perr.Code)
			assert.Contains(t, perr.Message, c.want)
		})
	}
	cmd, err := Parse([]byte(`{"type":"subscribe","channel":"alerts","severity":["critical"]}`), 50)
	require.NoError(t, err)
	assert.Equal(t, filter.Set{"severity": {"critical"}}, cmd.(Subscribe).Filters)
}

func TestMessages_Encode(t *testing.T) {
	b := Encode(Errorf(json.RawMessage(`"r1"`), CodeForbidden, "no"))
	assert.JSONEq(t, `{"type":"error","id":"r1","code":"forbidden","message":"no"}`, string(b))
	b = Encode(Pong{Type: TypePong, Time: "t"})
	assert.JSONEq(t, `{"type":"pong","time":"t"}`, string(b))
	b = Encode(AuthResponse{Type: TypeAuthResponse, Success: false, Error: AuthInvalidToken, Message: "bad"})
	assert.JSONEq(t, `{"type":"auth_response","success":false,"error":"invalid_token","message":"bad"}`, string(b))
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{"type":"subscribe","topic":"a.*","filters":{"x":[1,"2"]}}`,
		`{"type":"subscribe","channel":"telemetry","device_id":[1,2]}`,
		`{"type":"batch","messages":[{"type":"ping"},{"type":"auth","token":"x"}]}`,
		`{"type":"resume","topic":"a.b","since":3}`,
		`{"type":"request_current_state","batch_id":"b1"}`,
		"register a.b.c.d\nderegister *.*.*",
		`{"type":"ping","id":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := Parse(data, 50)
		if err != nil {
			var pe *Error
			if !asErr(err, &pe) || pe.Code == "" {
				t.Fatalf("error %v is not a protocol error with a code", err)
			}
			// Every error reply encodes.
			if !json.Valid(Encode(pe)) {
				t.Fatal("error reply is not JSON")
			}
			return
		}
		if cmd == nil || cmd.Type() == "" {
			t.Fatal("nil command without error")
		}
		for _, p := range patterns(cmd) {
			if p == "" {
				t.Fatal("empty pattern")
			}
		}
	})
}

func TestEncode_LeavesTopicCharactersReadable(t *testing.T) {
	assert.Equal(t, `{"type":"subscribed","topics":["demo.>"]}`, string(Encode(Subscribed{Type: TypeSubscribed, Topics: []string{"demo.>"}})))
}

// A publish's payload and attributes nest at most MaxPublishDepth levels:
// 5,000 levels (which subscribers' parsers refuse or overflow on) are
// refused, in a batch too, by the command's id; brackets inside strings do
// not count.
func TestParse_PublishNestingIsBounded(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	nestObj := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	refused := []string{
		`{"type":"publish","id":"p","topic":"chat.r1","payload":` + nest(5000) + `}`,
		`{"type":"publish","id":"p","topic":"chat.r1","payload":` + nestObj(5000) + `}`,
		`{"type":"publish","id":"p","topic":"chat.r1","payload":` + nest(MaxPublishDepth+1) + `}`,
		`{"type":"publish","id":"p","topic":"chat.r1","payload":1,"attributes":` + nestObj(5000) + `}`,
	}
	for _, in := range refused {
		_, err := Parse([]byte(in), 50)
		var pe *Error
		require.ErrorAs(t, err, &pe, "%.80s", in)
		assert.Equal(t, CodeBadRequest, pe.Code)
		assert.JSONEq(t, `"p"`, string(pe.ID))
		assert.Contains(t, pe.Message, "64 deep")
	}
	cmd, err := Parse([]byte(`{"type":"batch","messages":[{"type":"publish","id":"p","topic":"chat.r1","payload":`+nest(5000)+`}]}`), 50)
	require.NoError(t, err)
	require.NotNil(t, cmd.(Batch).Items[0].Err)
	assert.Equal(t, CodeBadRequest, cmd.(Batch).Items[0].Err.Code)

	deepest := `{"s":"[[[[{{\"]]]]","a":` + nest(MaxPublishDepth-1) + `}`
	cmd, err = Parse([]byte(`{"type":"publish","topic":"chat.r1","payload":`+deepest+`}`), 50)
	require.NoError(t, err)
	assert.JSONEq(t, deepest, string(cmd.(Publish).Payload))
}

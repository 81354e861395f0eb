package frame

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/event"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/topic"
)

func TestEncoder_EncodesEachFormOnce(t *testing.T) {
	it := Item{Seq: 7, Event: event.Event{
		Topic: topic.MustPattern("telemetry.1"), ID: "e1", Time: time.Unix(1700000000, 0),
		Payload:    json.RawMessage(`{"telemetry":{"t":1,"h":2}}`),
		Attributes: filter.Attributes{"metrics": {"h", "t"}},
		Project:    filter.Projection{"metrics": "telemetry"},
	}}
	e := NewEncoder(it)
	id := auth.Identity{Sub: "u"}
	raw1, ok, err := e.For(Recipient{Identity: id, Filters: []filter.Set{nil}})
	require.NoError(t, err)
	require.True(t, ok)
	raw2, _, _ := e.For(Recipient{Identity: id, Filters: []filter.Set{nil}})
	assert.Same(t, &raw1[0], &raw2[0], "the same bytes, not a second encoding")
	env, _, _ := e.For(Recipient{Identity: id, Envelope: true, Filters: []filter.Set{nil}})
	assert.JSONEq(t, `{"type":"event","topic":"telemetry.1","seq":7,"id":"e1","time":"2023-11-14T22:13:20Z","data":{"telemetry":{"t":1,"h":2}}}`, string(env))
	trimmed, _, _ := e.For(Recipient{Identity: id, Filters: []filter.Set{{"metrics": {"t"}}}})
	assert.JSONEq(t, `{"telemetry":{"t":1}}`, string(trimmed))
	assert.Len(t, e.cache, 3)

	_, ok, _ = e.For(Recipient{Identity: id, Filters: []filter.Set{{"metrics": {"x"}}}})
	assert.False(t, ok, "a filter that rejects the event")
	it.Audience = &auth.Audience{Orgs: []string{"o"}}
	_, ok, _ = NewEncoder(it).For(Recipient{Identity: id, Filters: []filter.Set{nil}})
	assert.False(t, ok, "outside the audience")
}

// An event a principal published reaches a raw connection in the envelope
// too, with its "from": its payload never arrives as if it were one of the
// gateway's own frames or a backend's event.
func TestEncoder_APrincipalsEventIsAlwaysEnveloped(t *testing.T) {
	forged := `{"type":"error","code":"revoked","message":"x"}`
	e := NewEncoder(Item{Seq: 3, Event: event.Event{
		Topic: topic.MustPattern("chat.r1"), ID: "e3", Time: time.Unix(1700000000, 0), Payload: json.RawMessage(forged), From: "user:mallory",
	}})
	raw, ok, err := e.For(Recipient{Identity: auth.Identity{Sub: "bob"}, Filters: []filter.Set{nil}})
	require.NoError(t, err)
	require.True(t, ok)
	assert.JSONEq(t, `{"type":"event","topic":"chat.r1","seq":3,"id":"e3","time":"2023-11-14T22:13:20Z","from":"user:mallory","data":`+forged+`}`, string(raw))
	env, _ := e.Frame(Form{Envelope: true})
	assert.Equal(t, raw, env)
	assert.Equal(t, Form{Envelope: true}, e.Form(false, nil), "one form for raw and enveloped connections")
	assert.Len(t, e.cache, 1)
}

package publish

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
)

func TestParse_RefusesAmbiguousKeys(t *testing.T) {
	cases := []struct{ name, detail, says string }{
		{"null audience", `{"topic":"a","payload":1,"audience":null}`, "null"},
		{"audience then a case variant set to null", `{"topic":"a","payload":1,"audience":{"orgs":["acme"]},"AUDIENCE":null}`, `must be spelt "audience"`},
		{"capitalised audience", `{"topic":"a","payload":1,"Audience":{"orgs":["acme"]}}`, `must be spelt "audience"`},
		{"audience twice", `{"topic":"a","payload":1,"audience":{"orgs":["acme"]},"audience":null}`, "twice"},
		{"audience twice, both objects", `{"topic":"a","payload":1,"audience":{"orgs":["acme"]},"audience":{"orgs":["globex"]}}`, "twice"},
		{"topic twice", `{"topic":"a","payload":1,"topic":"b"}`, "twice"},
		{"topic case variant", `{"topic":"a","TOPIC":"b","payload":1}`, `must be spelt "topic"`},
		{"payload twice", `{"topic":"a","payload":1,"payload":2}`, "twice"},
		{"state case variant", `{"topic":"a","payload":1,"State":[]}`, `must be spelt "state"`},
		{"history case variant", `{"topic":"a","payload":1,"hIstory":true}`, `must be spelt "history"`},
		{"published_at case variant", `{"topic":"a","payload":1,"Published_At":"2026-01-01T00:00:00Z"}`, `must be spelt "published_at"`},
		{"unicode fold of state", `{"topic":"a","payload":1,"ſtate":[]}`, "state"},
		{"roles case variant inside the audience", `{"topic":"a","payload":1,"audience":{"roles":["admin"],"ROLES":["user"]}}`, `must be spelt "roles"`},
		{"subs twice inside the audience", `{"topic":"a","payload":1,"audience":{"subs":["u1"],"subs":["u2"]}}`, "twice"},
		{"orgs case variant inside the audience", `{"topic":"a","payload":1,"audience":{"Orgs":["acme"]}}`, `must be spelt "orgs"`},
		{"attribute twice", `{"topic":"a","payload":1,"attributes":{"k":"x","k":"y"}}`, "twice"},
		{"projection twice", `{"topic":"a","payload":{},"project":{"m":"a","m":"b"}}`, "twice"},
		{"empty subs entry", `{"topic":"a","payload":1,"audience":{"subs":[""]}}`, "subs"},
		{"typed subs entry without id", `{"topic":"a","payload":1,"audience":{"subs":["device:"]}}`, "subs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("e", time.Now(), []byte(c.detail), false)
			require.ErrorIs(t, err, ErrInvalid)
			assert.Contains(t, err.Error(), c.says)
		})
	}
}

func TestParse_AudienceSubsKeepTheirType(t *testing.T) {
	ev, err := Parse("e", time.Now(), []byte(`{"topic":"a","payload":1,"audience":{"subs":["device:42"]}}`), false)
	require.NoError(t, err)
	assert.True(t, ev.Audience.Allows(auth.Identity{Sub: "42", Type: "device"}))
	assert.False(t, ev.Audience.Allows(auth.Identity{Sub: "42", Type: "user"}), "user 42 is not device 42")
	ev, err = Parse("e", time.Now(), []byte(`{"topic":"a","payload":1,"audience":{"subs":["42"]}}`), false)
	require.NoError(t, err)
	assert.True(t, ev.Audience.Allows(auth.Identity{Sub: "42", Type: "user"}))
	assert.False(t, ev.Audience.Allows(auth.Identity{Sub: "42", Type: "device"}), "a bare sub names a user")
}

// jsonNames lists the json names of a struct's fields.
func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		out = append(out, name)
	}
	return out
}

func TestCheckKeys_KnowsEveryField(t *testing.T) {
	assert.ElementsMatch(t, jsonNames(reflect.TypeFor[wireDetail]()), detailKeys())
	assert.ElementsMatch(t, jsonNames(reflect.TypeFor[Detail]()), detailKeys())
	assert.ElementsMatch(t, jsonNames(reflect.TypeFor[auth.Audience]()), audienceKeys())
}

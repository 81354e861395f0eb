package auth

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestAudience_SubsMatchTypeAndID(t *testing.T) {
	user42 := Identity{Sub: "42", Type: "user"}
	device42 := Identity{Sub: "42", Type: "device"}
	cases := []struct {
		name string
		subs []string
		id   Identity
		want bool
	}{
		{"bare sub names the default type", []string{"42"}, user42, true},
		{"bare sub does not name a device with that id", []string{"42"}, device42, false},
		{"typed entry for the device", []string{"device:42"}, device42, true},
		{"typed entry for the device does not name the user", []string{"device:42"}, user42, false},
		{"typed entry for the user", []string{"user:42"}, user42, true},
		{"identity without a type is of the default type", []string{"user:42"}, Identity{Sub: "42"}, true},
		{"a sub holding colons", []string{"user:auth0:abc"}, Identity{Sub: "auth0:abc", Type: "user"}, true},
		{"a bare sub holding a colon is read as typed", []string{"auth0:abc"}, Identity{Sub: "auth0:abc", Type: "user"}, false},
		{"AudienceSub builds the entry", []string{AudienceSub("participant", "p1")}, Identity{Sub: "p1", Type: "participant"}, true},
		{"other id", []string{"device:43"}, device42, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := &Audience{Subs: c.subs}
			assert.Equal(t, c.want, a.Allows(c.id))
		})
	}
}

func TestAudience_Validate(t *testing.T) {
	cases := []struct {
		name string
		a    Audience
		ok   bool
	}{
		{"orgs, subs and roles", Audience{Orgs: []string{"acme"}, Subs: []string{"42", "device:7"}, Roles: []string{"admin"}}, true},
		{"nobody", Audience{}, false},
		{"empty org", Audience{Orgs: []string{""}}, false},
		{"empty sub", Audience{Subs: []string{""}}, false},
		{"type without sub", Audience{Subs: []string{"device:"}}, false},
		{"sub without type", Audience{Subs: []string{":42"}}, false},
		{"empty role", Audience{Roles: []string{"admin", ""}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.a.Validate()
			if c.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

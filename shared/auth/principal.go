// Package auth extracts and verifies connection tokens, turns their claims
// into a Principal, decides what a principal may subscribe to and see, and
// mints tokens and single-use tickets for backends.
package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wsgate/wsgate/shared/topic"
)

// DefaultPrincipalType is the ptype of a token that names none.
const DefaultPrincipalType = "user"

// ModePush marks a connection whose client commands, other than ping and
// request_current_state, are ignored.
const ModePush = "push"

// Identity is what delivery decisions need to know about a principal. It is
// copied onto every subscription so fan-out never reads connection records.
type Identity struct {
	Sub       string   `json:"sub,omitempty"`
	Type      string   `json:"ptype,omitempty"`
	Orgs      []string `json:"org,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	Superuser bool     `json:"su,omitempty"`
	Anonymous bool     `json:"anon,omitempty"`
}

// Principal is an authenticated (or anonymous) client.
type Principal struct {
	Identity
	// Topics are capability patterns: what the principal may subscribe to.
	Topics []string `json:"topics,omitempty"`
	// Subscribe are patterns subscribed at connect; they are granted too.
	Subscribe []string `json:"subscribe,omitempty"`
	// Publish are the patterns the principal may publish to over its
	// connection (the publish command). Nothing else grants publishing,
	// not even su.
	Publish []string `json:"publish,omitempty"`
	Mode    string   `json:"mode,omitempty"`
	Profile string   `json:"profile,omitempty"`
	// TicketID is the jti of a single-use ticket, empty for reusable tokens.
	TicketID string `json:"-"`
	// TokenID is the token's jti (empty when it has none): what a backend
	// names to revoke that one token.
	TokenID string `json:"jti,omitempty"`
	// ExpiresAt is the token's exp: the connection closes then unless the
	// client sends a fresh token first.
	ExpiresAt time.Time `json:"-"`
}

// Anonymous returns the principal of a client admitted without a token.
func Anonymous() Principal {
	return Principal{Identity: Identity{Type: "anonymous", Anonymous: true}}
}

// Key identifies the principal across connections, for per-principal caps.
func (p Principal) Key() string { return p.Type + "/" + p.Sub }

// DirectTopic is the principal's own topic, direct.<ptype>.<sub>; false for
// anonymous principals.
func (p Principal) DirectTopic() (topic.Pattern, bool) {
	if p.Anonymous || p.Sub == "" {
		return topic.Pattern{}, false
	}
	d, err := topic.Direct(p.Type, p.Sub)
	return d, err == nil
}

func (p Principal) grants() []topic.Pattern {
	out := make([]topic.Pattern, 0, len(p.Topics)+len(p.Subscribe)+1)
	for _, list := range [][]string{p.Topics, p.Subscribe} {
		for _, s := range list {
			if c, err := topic.ParsePattern(s); err == nil {
				out = append(out, c)
			}
		}
	}
	if d, ok := p.DirectTopic(); ok {
		out = append(out, d)
	}
	return out
}

// MaySubscribe reports whether the principal may subscribe to pattern:
// superusers may read everything; others need a granted pattern (topics,
// subscribe, or their direct topic) that covers it.
func (p Principal) MaySubscribe(pattern topic.Pattern) bool {
	if p.Superuser {
		return true
	}
	for _, g := range p.grants() {
		if g.Covers(pattern) {
			return true
		}
	}
	return false
}

// MayPublish reports whether a publish claim pattern covers topic t.
func (p Principal) MayPublish(t topic.Pattern) bool {
	if p.Anonymous {
		return false
	}
	for _, s := range p.Publish {
		if g, err := topic.ParsePattern(s); err == nil && g.Covers(t) {
			return true
		}
	}
	return false
}

// Narrow returns the patterns that together match exactly the topics of
// pattern the principal may read: the intersections of pattern with every
// grant, with any pattern already covered by another dropped. It serves
// Digital Rebar's "register *.*.*", which means "everything I may see".
func (p Principal) Narrow(pattern topic.Pattern) []topic.Pattern {
	if p.MaySubscribe(pattern) {
		return []topic.Pattern{pattern}
	}
	var parts []topic.Pattern
	for _, g := range p.grants() {
		if in, ok := topic.Intersect(pattern, g); ok {
			parts = append(parts, in)
		}
	}
	var out []topic.Pattern
	for i, a := range parts {
		covered := false
		for j, b := range parts {
			if i != j && b.Covers(a) && (!a.Covers(b) || j < i) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, a)
		}
	}
	return out
}

// Audience restricts an event to principals matching any listed org, sub or
// role. Superusers always match; anonymous principals never do.
type Audience struct {
	Orgs []string `json:"orgs,omitempty"`
	// Subs name principals by type and id, "device:42" (AudienceSub); a
	// bare "42" names the principal of the default type (user) only, so
	// device 42 never receives what was meant for user 42.
	Subs  []string `json:"subs,omitempty"`
	Roles []string `json:"roles,omitempty"`
}

// AudienceSub is the Audience.Subs entry naming one principal.
func AudienceSub(ptype, sub string) string { return ptype + ":" + sub }

// splitAudienceSub reads a Subs entry: "<ptype>:<sub>", split at the first
// colon (a ptype never holds one; a sub may), or a bare sub of the default
// type.
func splitAudienceSub(entry string) (ptype, sub string) {
	if t, s, ok := strings.Cut(entry, ":"); ok {
		return t, s
	}
	return DefaultPrincipalType, entry
}

// Empty reports whether the audience lists nobody.
func (a Audience) Empty() bool { return len(a.Orgs)+len(a.Subs)+len(a.Roles) == 0 }

// Validate refuses an audience that lists nobody or holds an entry no
// principal can match, so a publisher's mistake is reported rather than
// silently delivering to nobody (or, for a bad subs entry, to the wrong
// principal).
func (a Audience) Validate() error {
	if a.Empty() {
		return errors.New("lists nobody")
	}
	for _, l := range []struct {
		name string
		list []string
	}{{"orgs", a.Orgs}, {"subs", a.Subs}, {"roles", a.Roles}} {
		for _, s := range l.list {
			if s == "" || len(s) > 2*maxClaimString+1 {
				return fmt.Errorf("%s has an empty or overlong entry", l.name)
			}
		}
	}
	for _, s := range a.Subs {
		if t, sub := splitAudienceSub(s); t == "" || sub == "" {
			return fmt.Errorf("subs entry %q is neither <ptype>:<sub> nor a bare <sub>", s)
		}
	}
	return nil
}

// Allows reports whether the identity is in the audience. A nil audience
// allows everyone.
func (a *Audience) Allows(id Identity) bool {
	if a == nil {
		return true
	}
	if id.Superuser {
		return true
	}
	if id.Anonymous {
		return false
	}
	if id.Sub != "" && a.namesSub(id) {
		return true
	}
	for _, o := range id.Orgs {
		if slices.Contains(a.Orgs, o) {
			return true
		}
	}
	for _, r := range id.Roles {
		if slices.Contains(a.Roles, r) {
			return true
		}
	}
	return false
}

// namesSub reports whether a Subs entry names the identity's type and sub.
func (a *Audience) namesSub(id Identity) bool {
	ptype := id.Type
	if ptype == "" {
		ptype = DefaultPrincipalType
	}
	for _, e := range a.Subs {
		if t, s := splitAudienceSub(e); t == ptype && s == id.Sub {
			return true
		}
	}
	return false
}

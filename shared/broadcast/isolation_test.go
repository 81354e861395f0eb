package broadcast_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/topic"
)

// modelSub is a subscription the gateway accepted, as the test saw it.
type modelSub struct {
	pattern topic.Pattern
	filters filter.Set
}

type modelConn struct {
	id        string
	principal auth.Principal
	subs      []modelSub
}

// TestIsolation_RandomTenantsReceiveExactlyWhatTheyMaySee publishes random
// events with random audiences to random principals of several orgs with
// random (wildcard) subscriptions, and checks every delivery against an
// independent model: each delivery is allowed, and each allowed delivery
// happens, exactly once.
func TestIsolation_RandomTenantsReceiveExactlyWhatTheyMaySee(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) { isolationRun(t, seed) })
	}
}

func isolationRun(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 99))
	h := gatewaytest.New(t, func(c *config.Config) { c.Limits.MaxSubscriptions = 50; c.Limits.MessagesPerSecond = 10000 })
	orgs := []string{"acme", "globex", "initech"}
	roles := []string{"admin", "viewer"}
	namespaces := []string{"acme", "globex", "initech", "shared"}
	ids := []string{"1", "2", "3"}
	kinds := []string{"alert", "status"}
	pick := func(list []string) string { return list[r.IntN(len(list))] }
	randomTopic := func() string {
		tp := pick(namespaces) + "." + pick(kinds) + "." + pick(ids)
		return tp
	}
	randomPattern := func() string {
		segs := []string{pick(namespaces), pick(kinds), pick(ids)}
		for i := range segs {
			if r.IntN(3) == 0 {
				segs[i] = "*"
			}
		}
		if r.IntN(6) == 0 {
			return segs[0] + ".>"
		}
		if r.IntN(12) == 0 {
			return ">"
		}
		return segs[0] + "." + segs[1] + "." + segs[2]
	}

	var conns []*modelConn
	for i := range 24 {
		org := orgs[i%len(orgs)]
		g := auth.Grant{Sub: fmt.Sprintf("p%d", i), Type: pick([]string{"user", "device"}), Orgs: []string{org}}
		// Capabilities: the org's own namespace, sometimes "shared", rarely another's kind.
		g.Topics = []string{org + ".>"}
		if r.IntN(2) == 0 {
			g.Topics = append(g.Topics, "shared.*.*")
		}
		if r.IntN(4) == 0 {
			g.Topics = append(g.Topics, "*.status.*")
		}
		if r.IntN(3) == 0 {
			g.Roles = []string{pick(roles)}
		}
		if i == 23 {
			g = auth.Grant{Sub: "root", Superuser: true}
		}
		tok := h.Token(g)
		p, err := h.Verifier.Verify(t.Context(), tok)
		require.NoError(t, err)
		for c := range 1 + r.IntN(2) {
			mc := &modelConn{id: fmt.Sprintf("c%d-%d", i, c), principal: p}
			h.MustConnect(mc.id, tok, nil)
			d, _ := p.DirectTopic()
			mc.subs = append(mc.subs, modelSub{pattern: d})
			for range 1 + r.IntN(5) {
				pat := randomPattern()
				cmd := map[string]any{"type": "subscribe", "topic": pat}
				var fs filter.Set
				if r.IntN(3) == 0 {
					fs = filter.Set{"k": {pick([]string{"x", "y"})}}
					cmd["filters"] = map[string]any{"k": fs["k"]}
				}
				replies := h.SendJSON(mc.id, cmd)
				require.Len(t, replies, 1)
				var rep map[string]any
				require.NoError(t, json.Unmarshal([]byte(replies[0]), &rep))
				switch rep["type"] {
				case "subscribed":
					mc.subs = slices.DeleteFunc(mc.subs, func(s modelSub) bool { return s.pattern.String() == pat })
					mc.subs = append(mc.subs, modelSub{pattern: topic.MustPattern(pat), filters: fs})
				case "error":
					assert.Equal(t, "forbidden", rep["code"], "%s -> %s", pat, replies[0])
					assert.False(t, p.MaySubscribe(topic.MustPattern(pat)), "refused %s although allowed", pat)
				default:
					t.Fatalf("unexpected reply %s", replies[0])
				}
			}
			conns = append(conns, mc)
		}
	}

	type delivery struct{ conn, event string }
	want := map[delivery]bool{}
	for e := range 150 {
		id := fmt.Sprintf("ev%d", e)
		tp := randomTopic()
		if r.IntN(10) == 0 {
			// a direct message to a random principal
			victim := conns[r.IntN(len(conns))].principal
			d, _ := victim.DirectTopic()
			tp = d.String()
		}
		detail := map[string]any{"topic": tp, "payload": map[string]string{"e": id}}
		var aud *auth.Audience
		switch r.IntN(4) {
		case 0:
			aud = &auth.Audience{Orgs: []string{pick(orgs)}}
		case 1:
			sub := fmt.Sprintf("p%d", r.IntN(24))
			if r.IntN(2) == 0 {
				sub = auth.AudienceSub(pick([]string{"user", "device"}), sub)
			}
			aud = &auth.Audience{Subs: []string{sub}, Roles: []string{pick(roles)}}
		}
		if aud != nil {
			detail["audience"] = aud
		}
		attrs := filter.Attributes{}
		if r.IntN(2) == 0 {
			k := pick([]string{"x", "y"})
			detail["attributes"] = map[string]string{"k": k}
			attrs["k"] = []string{k}
		}
		require.NoError(t, h.Publish(id, detail))

		for _, c := range conns {
			for _, s := range c.subs {
				if modelMatch(s.pattern.String(), tp) && modelFilter(s.filters, attrs) && modelAudience(aud, c.principal.Identity) {
					want[delivery{c.id, id}] = true
				}
			}
		}
	}

	got := map[delivery]int{}
	for _, c := range conns {
		for _, frame := range h.Received(c.id) {
			var m map[string]string
			require.NoError(t, json.Unmarshal([]byte(frame), &m), frame)
			got[delivery{c.id, m["e"]}]++
		}
	}
	var extra, missing, dup []string
	for d, n := range got {
		if n > 1 {
			dup = append(dup, fmt.Sprint(d))
		}
		if !want[d] {
			extra = append(extra, fmt.Sprint(d))
		}
	}
	for d := range want {
		if got[d] == 0 {
			missing = append(missing, fmt.Sprint(d))
		}
	}
	sort.Strings(extra)
	sort.Strings(missing)
	assert.Empty(t, extra, "deliveries the model does not allow")
	assert.Empty(t, missing, "allowed deliveries that did not happen")
	assert.Empty(t, dup, "duplicates")
	// Every delivery is allowed by capability, independently of the model.
	for d := range got {
		for _, c := range conns {
			if c.id != d.conn {
				continue
			}
			ok := false
			for _, s := range c.subs {
				ok = ok || c.principal.MaySubscribe(s.pattern)
			}
			assert.True(t, ok, "%v", d)
		}
	}
	require.NotEmpty(t, want, "the run must deliver something")
	t.Logf("seed %d: %d connections, %d deliveries checked", seed, len(conns), len(got))
}

// The model's own rules, written independently of the gateway's code.

func modelMatch(pattern, tp string) bool {
	ps, ts := strings.Split(pattern, "."), strings.Split(tp, ".")
	for i, p := range ps {
		if p == ">" {
			return len(ts) > i
		}
		if i >= len(ts) || (p != "*" && p != ts[i]) {
			return false
		}
	}
	return len(ps) == len(ts)
}

func modelFilter(f filter.Set, attrs filter.Attributes) bool {
	for k, want := range f {
		have, ok := attrs[k]
		if !ok {
			continue
		}
		shared := false
		for _, w := range want {
			shared = shared || slices.Contains(have, w)
		}
		if !shared {
			return false
		}
	}
	return true
}

func modelAudience(a *auth.Audience, id auth.Identity) bool {
	if a == nil || id.Superuser {
		return true
	}
	for _, s := range a.Subs {
		// "<ptype>:<sub>", or a bare sub of a user
		ptype, sub, typed := strings.Cut(s, ":")
		if !typed {
			ptype, sub = "user", s
		}
		if ptype == id.Type && sub == id.Sub {
			return true
		}
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

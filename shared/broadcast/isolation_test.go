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

// Random choices of the runs.
var (
	isoOrgs       = []string{"acme", "globex", "initech"}
	isoRoles      = []string{"admin", "viewer"}
	isoNamespaces = []string{"acme", "globex", "initech", "shared"}
	isoIDs        = []string{"1", "2", "3"}
	isoKinds      = []string{"alert", "status"}
)

// modelDelivery is one event delivered to one connection.
type modelDelivery struct{ conn, event string }

// isolation is one run: its random source, the gateway and the model.
type isolation struct {
	t     *testing.T
	r     *rand.Rand
	h     *gatewaytest.Harness
	conns []*modelConn
}

func isolationRun(t *testing.T, seed uint64) {
	x := &isolation{t: t, r: rand.New(rand.NewPCG(seed, 99))}
	x.h = gatewaytest.New(t, func(c *config.Config) { c.Limits.MaxSubscriptions = 50; c.Limits.MessagesPerSecond = 10000 })
	for i := range 24 {
		x.connect(i)
	}
	want := map[modelDelivery]bool{}
	for e := range 150 {
		x.publish(fmt.Sprintf("ev%d", e), want)
	}
	got := x.received()
	x.check(want, got)
	require.NotEmpty(t, want, "the run must deliver something")
	t.Logf("seed %d: %d connections, %d deliveries checked", seed, len(x.conns), len(got))
}

func (x *isolation) pick(list []string) string { return list[x.r.IntN(len(list))] }

func (x *isolation) randomTopic() string {
	return x.pick(isoNamespaces) + "." + x.pick(isoKinds) + "." + x.pick(isoIDs)
}

func (x *isolation) randomPattern() string {
	segs := []string{x.pick(isoNamespaces), x.pick(isoKinds), x.pick(isoIDs)}
	for i := range segs {
		if x.r.IntN(3) == 0 {
			segs[i] = "*"
		}
	}
	if x.r.IntN(6) == 0 {
		return segs[0] + ".>"
	}
	if x.r.IntN(12) == 0 {
		return ">"
	}
	return segs[0] + "." + segs[1] + "." + segs[2]
}

// connect makes principal i, of a random org with random capabilities
// (the last one a superuser), and connects it once or twice, each
// connection with random subscriptions.
func (x *isolation) connect(i int) {
	org := isoOrgs[i%len(isoOrgs)]
	g := auth.Grant{Sub: fmt.Sprintf("p%d", i), Type: x.pick([]string{"user", "device"}), Orgs: []string{org}}
	// Capabilities: the org's own namespace, sometimes "shared", rarely another's kind.
	g.Topics = []string{org + ".>"}
	if x.r.IntN(2) == 0 {
		g.Topics = append(g.Topics, "shared.*.*")
	}
	if x.r.IntN(4) == 0 {
		g.Topics = append(g.Topics, "*.status.*")
	}
	if x.r.IntN(3) == 0 {
		g.Roles = []string{x.pick(isoRoles)}
	}
	if i == 23 {
		g = auth.Grant{Sub: "root", Superuser: true}
	}
	tok := x.h.Token(g)
	p, err := x.h.Verifier.Verify(x.t.Context(), tok)
	require.NoError(x.t, err)
	for c := range 1 + x.r.IntN(2) {
		mc := &modelConn{id: fmt.Sprintf("c%d-%d", i, c), principal: p}
		x.h.MustConnect(mc.id, tok, nil)
		d, _ := p.DirectTopic()
		mc.subs = append(mc.subs, modelSub{pattern: d})
		for range 1 + x.r.IntN(5) {
			x.subscribe(mc)
		}
		x.conns = append(x.conns, mc)
	}
}

// subscribe sends a random subscribe, sometimes filtered, and records it
// in the model if the gateway accepted it; a refusal must be one the
// principal's capabilities call for.
func (x *isolation) subscribe(mc *modelConn) {
	t := x.t
	pat := x.randomPattern()
	cmd := map[string]any{"type": "subscribe", "topic": pat}
	var fs filter.Set
	if x.r.IntN(3) == 0 {
		fs = filter.Set{"k": {x.pick([]string{"x", "y"})}}
		cmd["filters"] = map[string]any{"k": fs["k"]}
	}
	replies := x.h.SendJSON(mc.id, cmd)
	require.Len(t, replies, 1)
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(replies[0]), &rep))
	switch rep["type"] {
	case "subscribed":
		mc.subs = slices.DeleteFunc(mc.subs, func(s modelSub) bool { return s.pattern.String() == pat })
		mc.subs = append(mc.subs, modelSub{pattern: topic.MustPattern(pat), filters: fs})
	case "error":
		assert.Equal(t, "forbidden", rep["code"], "%s -> %s", pat, replies[0])
		assert.False(t, mc.principal.MaySubscribe(topic.MustPattern(pat)), "refused %s although allowed", pat)
	default:
		t.Fatalf("unexpected reply %s", replies[0])
	}
}

// publish publishes event id to a random topic (sometimes a principal's
// direct topic) with a random audience and attributes, and adds the
// deliveries the model allows to want.
func (x *isolation) publish(id string, want map[modelDelivery]bool) {
	tp := x.randomTopic()
	if x.r.IntN(10) == 0 {
		// a direct message to a random principal
		victim := x.conns[x.r.IntN(len(x.conns))].principal
		d, _ := victim.DirectTopic()
		tp = d.String()
	}
	detail := map[string]any{"topic": tp, "payload": map[string]string{"e": id}}
	var aud *auth.Audience
	switch x.r.IntN(4) {
	case 0:
		aud = &auth.Audience{Orgs: []string{x.pick(isoOrgs)}}
	case 1:
		sub := fmt.Sprintf("p%d", x.r.IntN(24))
		if x.r.IntN(2) == 0 {
			sub = auth.AudienceSub(x.pick([]string{"user", "device"}), sub)
		}
		aud = &auth.Audience{Subs: []string{sub}, Roles: []string{x.pick(isoRoles)}}
	}
	if aud != nil {
		detail["audience"] = aud
	}
	attrs := filter.Attributes{}
	if x.r.IntN(2) == 0 {
		k := x.pick([]string{"x", "y"})
		detail["attributes"] = map[string]string{"k": k}
		attrs["k"] = []string{k}
	}
	require.NoError(x.t, x.h.Publish(id, detail))

	for _, c := range x.conns {
		for _, s := range c.subs {
			if modelMatch(s.pattern.String(), tp) && modelFilter(s.filters, attrs) && modelAudience(aud, c.principal.Identity) {
				want[modelDelivery{c.id, id}] = true
			}
		}
	}
}

// received counts the frames each connection got of each event.
func (x *isolation) received() map[modelDelivery]int {
	got := map[modelDelivery]int{}
	for _, c := range x.conns {
		for _, frame := range x.h.Received(c.id) {
			var m map[string]string
			require.NoError(x.t, json.Unmarshal([]byte(frame), &m), frame)
			got[modelDelivery{c.id, m["e"]}]++
		}
	}
	return got
}

// check compares what was delivered with what the model wants, and each
// delivery with the connection's capabilities.
func (x *isolation) check(want map[modelDelivery]bool, got map[modelDelivery]int) {
	t := x.t
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
		for _, c := range x.conns {
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

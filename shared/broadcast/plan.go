package broadcast

import (
	"github.com/wsgate/wsgate/shared/frame"
	"github.com/wsgate/wsgate/shared/queue"
)

// plan is an event's decided audience: each connection and the variant of
// the frame it gets.
type plan struct {
	variants  []queue.Variant
	index     map[string]int
	conns     []string
	variantOf []int
}

// newPlan decides, in a's order, which connections get the event and in
// which form.
func newPlan(enc *frame.Encoder, a *audience) *plan {
	p := &plan{index: map[string]int{}}
	for _, id := range a.order {
		t := a.targets[id]
		if keep, ok := enc.Decide(t.sub.Identity, t.sets); ok {
			f := enc.Form(t.sub.Envelope, keep)
			p.add(id, queue.Variant{Envelope: f.Envelope, Keep: f.Keep})
		}
	}
	return p
}

// add gives connection conn variant v, numbering v if it is new.
func (p *plan) add(conn string, v queue.Variant) {
	k := frame.Form{Envelope: v.Envelope, Keep: v.Keep}.Key()
	i, ok := p.index[k]
	if !ok {
		i = len(p.variants)
		p.index[k] = i
		p.variants = append(p.variants, v)
	}
	p.conns = append(p.conns, conn)
	p.variantOf = append(p.variantOf, i)
}

// shard is one slice of a plan.
type shard struct {
	conns     []string
	variantOf []int // nil when there is one variant
}

// split cuts the plan into shards of at most size connections.
func (p *plan) split(size int) []shard {
	var out []shard
	for start := 0; start < len(p.conns); start += size {
		end := min(start+size, len(p.conns))
		sh := shard{conns: p.conns[start:end]}
		if len(p.variants) > 1 {
			sh.variantOf = p.variantOf[start:end]
		}
		out = append(out, sh)
	}
	return out
}

// variant is the index of the variant of the shard's i-th connection.
func (sh shard) variant(i int) int {
	if sh.variantOf == nil {
		return 0
	}
	return sh.variantOf[i]
}

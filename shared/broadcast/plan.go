package broadcast

import (
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/frame"
)

// plan is a range's decided audience: each connection, its hash, and the
// variant of the frame it gets.
type plan struct {
	variants  []frame.Form
	index     map[string]int
	conns     []string
	hashes    []uint64
	variantOf []int
}

// newPlan decides, in a's order, which connections get the event and in
// which form.
func newPlan(enc *frame.Encoder, a *audience) *plan {
	p := &plan{index: map[string]int{}}
	for _, id := range a.order {
		t := a.targets[id]
		if keep, ok := enc.Decide(t.sub.Identity, t.sets); ok {
			p.add(id, t.sub.Hash, enc.Form(t.sub.Envelope, keep))
		}
	}
	return p
}

// add gives connection conn (hash h) form f, numbering f if it is new.
func (p *plan) add(conn string, h uint64, f frame.Form) {
	k := f.Key()
	i, ok := p.index[k]
	if !ok {
		i = len(p.variants)
		p.index[k] = i
		p.variants = append(p.variants, f)
	}
	p.conns = append(p.conns, conn)
	p.hashes = append(p.hashes, h)
	p.variantOf = append(p.variantOf, i)
}

// frames encodes each variant of the event's frame once.
func (p *plan) frames(enc *frame.Encoder) ([][]byte, error) {
	frames := make([][]byte, len(p.variants))
	for i, v := range p.variants {
		f, err := enc.Frame(v)
		if err != nil {
			return nil, err
		}
		frames[i] = f
	}
	return frames, nil
}

// pending lists the deliveries to the plan's connections not yet
// delivered; hs[k] is the hash of ds[k]'s connection.
func (p *plan) pending(frames [][]byte, done *progress) (ds []fanout.Delivery, hs []uint64) {
	for i, id := range p.conns {
		if done.delivered(p.hashes[i]) {
			continue
		}
		ds = append(ds, fanout.Delivery{ConnectionID: id, Data: frames[p.variantOf[i]]})
		hs = append(hs, p.hashes[i])
	}
	return ds, hs
}

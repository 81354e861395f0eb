package client

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/coder/websocket"
)

// topicState is the client's position in one topic.
type topicState struct {
	last     uint64
	known    bool    // last is a position the gateway or the caller gave, or an event set
	held     []Event // received past a hole or during a resume, by seq
	resuming bool    // a resume is in flight, or waits for its subscription
	// waiting: the resume is not sent yet; it goes once the subscription
	// covering the topic is confirmed on this connection. A resume run
	// before it (API Gateway runs a connection's frames at once) could
	// answer before an event that fan-out then misses, the subscription
	// not being written yet: that event would be lost without a trace.
	waiting bool
	// until is where this connection's subscription to the topic started
	// (Subscribed.Seqs): every later event comes live, so the resume after
	// a reconnect asks only up to it. 0 when unknown (a wildcard).
	until uint64
	// owed: a resume must be asked again (the gateway stopped one at its
	// replay cap, or could not do it now), even with nothing held.
	owed bool
	// settling: the topic's start is not known (a wildcard subscription
	// gives none), so its first events wait GapWait for earlier-numbered
	// ones, parallel fan-outs overtaking each other; then the lowest held
	// starts it. Taking the first to arrive as the start would drop an
	// earlier one arriving next as a repeat.
	settling bool
	gapSince time.Time
}

// receive takes one event off the wire.
func (c *Client) receive(e Event) {
	c.mu.Lock()
	ts := c.topic(e.Topic)
	if e.Seq <= ts.last || slices.ContainsFunc(ts.held, func(h Event) bool { return h.Seq == e.Seq }) {
		c.stats.Duplicates++
		c.mu.Unlock()
		return
	}
	if !ts.known && !ts.resuming && c.o.GapWait >= 0 {
		ts.settling = true
	}
	if !ts.known && c.o.GapWait < 0 {
		ts.last, ts.known = e.Seq-1, true // no waiting: the first event sets the start
	}
	i, _ := slices.BinarySearchFunc(ts.held, e.Seq, func(h Event, s uint64) int { return cmp.Compare(h.Seq, s) })
	ts.held = slices.Insert(ts.held, i, e)
	if ts.gapSince.IsZero() {
		ts.gapSince = time.Now()
	}
	var out []Event
	switch {
	case ts.settling: // held until checkGaps settles it
	case c.o.GapWait < 0:
		out = ts.flush() // no waiting for holes
	default:
		out = ts.release()
	}
	c.mu.Unlock()
	c.deliver(out)
}

// resumed ends a resume of topic t: the gateway has sent everything up to
// seq meant for this connection, so held events up to there are complete.
func (c *Client) resumed(t string, seq uint64) {
	c.mu.Lock()
	ts := c.topic(t)
	ts.resuming = false
	var out []Event
	// Events up to seq not replayed were never meant for us (filtered).
	for len(ts.held) > 0 && ts.held[0].Seq <= seq {
		out = append(out, ts.held[0])
		ts.last = ts.held[0].Seq
		ts.held = ts.held[1:]
	}
	ts.last, ts.known = max(ts.last, seq), true
	ts.settling = false
	out = append(out, ts.release()...)
	c.mu.Unlock()
	c.deliver(out)
}

// lost ends a resume of topic t the gateway cannot do (its history no
// longer holds the events): what is missing is lost, so what is held is
// delivered, and OnGap told.
func (c *Client) lost(t string, err error) {
	c.mu.Lock()
	ts := c.topic(t)
	after := ts.last
	ts.resuming, ts.settling = false, false
	out := ts.flush()
	c.stats.Gaps++
	c.mu.Unlock()
	if c.o.OnGap != nil {
		c.o.OnGap(Gap{Topic: t, After: after, Err: err})
	}
	c.deliver(out)
}

// settle ends the wait of a topic without a start: the lowest event held
// starts it. The caller holds c.mu.
func (ts *topicState) settle() []Event {
	ts.settling, ts.known = false, true
	if len(ts.held) > 0 {
		ts.last = ts.held[0].Seq - 1
	}
	return ts.release()
}

// release takes the held events that follow the position without a hole,
// unless a resume is in flight. The caller holds c.mu.
func (ts *topicState) release() []Event {
	return ts.take(func(seq uint64) bool { return seq == ts.last+1 })
}

// flush takes every held event, holes and all, unless a resume is in
// flight: for when what is missing will not come, or order is not wanted.
// The caller holds c.mu.
func (ts *topicState) flush() []Event {
	return ts.take(func(uint64) bool { return true })
}

// take takes held events from the first while next accepts their number.
func (ts *topicState) take(next func(seq uint64) bool) []Event {
	if ts.resuming {
		return nil
	}
	var out []Event
	for len(ts.held) > 0 && next(ts.held[0].Seq) {
		out = append(out, ts.held[0])
		ts.last = ts.held[0].Seq
		ts.held = ts.held[1:]
	}
	if len(ts.held) == 0 {
		ts.held = nil
		ts.gapSince = time.Time{}
	} else if len(out) > 0 {
		ts.gapSince = time.Now() // a new hole starts waiting now
	}
	return out
}

// checkGaps asks the gateway about holes that waited GapWait.
func (c *Client) checkGaps(ctx context.Context, ws *websocket.Conn, now time.Time) {
	if c.o.GapWait < 0 {
		return
	}
	c.mu.Lock()
	var ask []string
	var settled []Event
	for t, ts := range c.topics {
		if (len(ts.held) > 0 || ts.owed) && !ts.resuming && now.Sub(ts.gapSince) >= c.o.GapWait {
			if ts.settling {
				settled = append(settled, ts.settle()...)
				continue
			}
			ts.resuming, ts.owed = true, false
			ask = append(ask, t)
		}
	}
	c.mu.Unlock()
	c.deliver(settled)
	for _, t := range ask {
		if err := c.resume(ctx, ws, t); err != nil {
			return // the connection is going; the next one resumes
		}
	}
}

func (c *Client) deliver(out []Event) {
	if len(out) == 0 {
		return
	}
	c.mu.Lock()
	c.stats.Delivered += len(out)
	c.mu.Unlock()
	for _, e := range out {
		c.o.OnEvent(e)
	}
}

func (c *Client) topic(t string) *topicState {
	ts := c.topics[t]
	if ts == nil {
		ts = &topicState{}
		c.topics[t] = ts
	}
	return ts
}

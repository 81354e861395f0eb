package client

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/topic"
)

// The ids of the client's commands name what they are about, so that an
// answer (subscribed, resumed, an error) is tied to its pattern or topic
// without a table of requests in flight.
const (
	subscribeID = "sub:"    // + the pattern subscribed
	resumeID    = "resume:" // + the topic resumed
)

// start subscribes and resumes on a new connection.
func (c *Client) start(ctx context.Context, ws *websocket.Conn) error {
	if c.o.Scope != "" {
		c.mu.Lock()
		ts := c.topic(c.o.Scope)
		ts.resuming = ts.last > 0 // the replay of ?since= ends with resumed
		c.mu.Unlock()
	}
	for _, p := range c.o.Topics {
		if err := c.subscribe(ctx, ws, p); err != nil {
			return err
		}
	}
	// Each topic with a known position resumes once the subscription
	// covering it answers (see topicState.waiting); meanwhile its events
	// are held. A position of 0 (the topic had no event when this client
	// subscribed) counts: what was published while the client was away
	// reaches it only by resume.
	c.mu.Lock()
	for t, ts := range c.topics {
		if t != c.o.Scope && ts.known && c.covered(t) {
			ts.resuming, ts.waiting = true, true
		}
	}
	c.mu.Unlock()
	return nil
}

// resumeUnder sends the resumes waiting for pattern p's subscription: it
// answered (subscribed, or refused for good).
func (c *Client) resumeUnder(ctx context.Context, ws *websocket.Conn, p string) {
	pat, err := topic.ParsePattern(p)
	if err != nil {
		return
	}
	c.mu.Lock()
	var resume []string
	for t, ts := range c.topics {
		if tp, err := topic.ParseTopic(t); ts.waiting && err == nil && pat.Match(tp) {
			ts.waiting = false
			resume = append(resume, t)
		}
	}
	c.mu.Unlock()
	slices.Sort(resume)
	for _, t := range resume {
		if err := c.resume(ctx, ws, t); err != nil {
			return // the connection is going; the next one resumes
		}
	}
}

func (c *Client) subscribe(ctx context.Context, ws *websocket.Conn, p string) error {
	c.ask(subscribeID + p)
	return c.write(ctx, ws, protocol.SubscribeRequest{ID: subscribeID + p, Topic: p, Filters: c.o.Filters})
}

// retrySubscribe sends pattern p's subscribe again after a backoff, on the
// same connection (a new connection subscribes anyway), unless a resend of
// p is already scheduled: integration errors name no command, and each
// one resending every pending pattern again multiplied the frames an
// overloaded gateway had to refuse.
func (c *Client) retrySubscribe(ctx context.Context, ws *websocket.Conn, p string) {
	c.mu.Lock()
	if c.resending[p] {
		c.mu.Unlock()
		return
	}
	c.resending[p] = true
	n := c.retries[p]
	c.retries[p] = n + 1
	c.stats.Retries++
	c.mu.Unlock()
	wait := c.backoff(n)
	c.log.Info("subscribe unavailable; retrying", "pattern", p, "in", wait.String())
	time.AfterFunc(wait, func() {
		c.mu.Lock()
		delete(c.resending, p)
		current := c.ws == ws
		c.mu.Unlock()
		if current && ctx.Err() == nil {
			_ = c.subscribe(ctx, ws, p)
		}
	})
}

// covered reports whether one of Topics matches topic t.
func (c *Client) covered(t string) bool {
	tp, err := topic.ParseTopic(t)
	if err != nil {
		return false
	}
	for _, p := range c.o.Topics {
		if pat, err := topic.ParsePattern(p); err == nil && pat.Match(tp) {
			return true
		}
	}
	return false
}

// resume asks for topic t's events after the last delivered one; the
// caller marked it resuming.
func (c *Client) resume(ctx context.Context, ws *websocket.Conn, t string) error {
	c.mu.Lock()
	ts := c.topic(t)
	since, until := ts.last, ts.until
	ts.until = 0 // only the first resume after subscribing is bounded
	c.stats.Resumes++
	c.mu.Unlock()
	if until < since {
		until = 0
	}
	c.ask(resumeID + t)
	c.log.Debug("resuming", "topic", t, "since", since, "until", until)
	return c.write(ctx, ws, protocol.ResumeRequest{ID: resumeID + t, Topic: t, Since: since, Until: until})
}

// write sends one request (New checked that Filters marshal).
func (c *Client) write(ctx context.Context, ws *websocket.Conn, req any) error {
	b, err := protocol.Marshal(req)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

// interrupted forgets resumes in flight: the next connection starts them
// again from the same positions. Held events stay held.
func (c *Client) interrupted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ts := range c.topics {
		ts.resuming, ts.waiting = false, false
	}
}

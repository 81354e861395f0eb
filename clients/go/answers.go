package client

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// A subscribe or resume whose $default invocation failed (a Lambda timeout
// or crash) gets no answer: API Gateway sends the client only
// {"message":"Internal server error","connectionId":...,"requestId":...},
// naming no command. Left alone, the subscription would stay missing, or
// the topic's events held forever behind a resume, and nothing would tell.
// So the client remembers what it asked and has not heard back about: at
// an integration error it sends the unanswered subscribes again (they are
// idempotent), and whatever stays unanswered for ReplyTimeout, past API
// Gateway's 29 s, is asked again.

// integrationError is API Gateway's message for a failed invocation.
const integrationError = "Internal server error"

func (c *Client) ask(id string) {
	c.mu.Lock()
	c.asked[id] = time.Now()
	c.mu.Unlock()
}

func (c *Client) answered(id string) {
	if id == "" {
		return
	}
	c.mu.Lock()
	delete(c.asked, id)
	c.mu.Unlock()
}

// onIntegrationError handles a frame without a type: API Gateway's answer
// to a frame whose invocation failed.
func (c *Client) onIntegrationError(ctx context.Context, ws *websocket.Conn, data []byte) {
	var m struct{ Message string }
	if json.Unmarshal(data, &m) != nil || m.Message != integrationError {
		return
	}
	c.mu.Lock()
	var again []string
	for id := range c.asked {
		if strings.HasPrefix(id, subscribeID) {
			again = append(again, strings.TrimPrefix(id, subscribeID))
		}
	}
	c.mu.Unlock()
	slices.Sort(again)
	for _, p := range again {
		c.log.Info("subscribe may have failed (integration error); sending it again", "pattern", p)
		c.retrySubscribe(ctx, ws, p)
	}
}

// checkAnswers asks again what stayed unanswered for ReplyTimeout.
func (c *Client) checkAnswers(ctx context.Context, ws *websocket.Conn, now time.Time) {
	c.mu.Lock()
	var late []string
	for id, at := range c.asked {
		if now.Sub(at) >= c.o.ReplyTimeout {
			late = append(late, id)
			delete(c.asked, id)
		}
	}
	c.mu.Unlock()
	slices.Sort(late)
	for _, id := range late {
		c.log.Info("no answer; asking again", "command", id)
		var err error
		if p, ok := strings.CutPrefix(id, subscribeID); ok {
			err = c.subscribe(ctx, ws, p)
		} else if t, ok := strings.CutPrefix(id, resumeID); ok {
			err = c.resume(ctx, ws, t)
		}
		if err != nil {
			return // the connection is going; the next one asks again
		}
	}
}

package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgate/wsgate/shared/protocol"
)

// handle reads one frame from the gateway: the events, and the answers to
// the client's own subscribes and resumes, it acts on; the rest, and the
// answers it acted on but the application may want to see, go to OnReply.
func (c *Client) handle(ctx context.Context, ws *websocket.Conn, data []byte) {
	var h protocol.Header
	if json.Unmarshal(data, &h) == nil && c.consume(ctx, ws, h, data) {
		return
	}
	c.onReply(data)
}

// consume acts on a frame by its type and reports whether it is used up
// (not for OnReply). A frame that does not decode as its type is not.
func (c *Client) consume(ctx context.Context, ws *websocket.Conn, h protocol.Header, data []byte) bool {
	// The id is an event's own on an event, else the id of the command
	// answered: "sub:<pattern>" or "resume:<topic>" for the client's own.
	var id string
	_ = json.Unmarshal(h.ID, &id)
	if h.Type != protocol.TypeEvent {
		c.answered(id)
	}
	switch h.Type {
	case protocol.TypeEvent:
		return c.onEvent(data)
	case protocol.TypeSubscribed:
		c.onSubscribed(ctx, ws, id, data)
	case protocol.TypeResumed:
		return c.onResumed(id, data)
	case protocol.TypeError:
		return c.onError(ctx, ws, id, data)
	case "":
		c.onIntegrationError(ctx, ws, data)
	}
	return false
}

func (c *Client) onEvent(data []byte) bool {
	var m protocol.Event
	if json.Unmarshal(data, &m) != nil || m.Topic == "" || m.Seq == 0 {
		return false
	}
	e := Event{Topic: m.Topic, Seq: m.Seq, ID: m.ID, Data: m.Data, From: m.From}
	e.Time, _ = time.Parse(time.RFC3339Nano, m.Time)
	if m.DataBase64 != "" {
		e.Data = nil
		e.Binary, _ = base64.StdEncoding.DecodeString(m.DataBase64)
	}
	c.receive(e)
	return true
}

// onSubscribed takes the subscription's starting points and sends the
// resumes that waited for it.
func (c *Client) onSubscribed(ctx context.Context, ws *websocket.Conn, id string, data []byte) {
	var m protocol.Subscribed
	if json.Unmarshal(data, &m) != nil {
		return
	}
	pattern := strings.TrimPrefix(id, subscribeID)
	var out []Event
	c.mu.Lock()
	delete(c.retries, pattern)
	for t, seq := range m.Seqs {
		ts := c.topic(t)
		if ts.waiting {
			ts.until = seq
		}
		if !ts.known && !ts.resuming {
			// Events after this number are ours: a hole before the
			// first one, or a drop, resumes from here. Events held
			// already are ours too, whatever their number.
			if len(ts.held) > 0 {
				seq = min(seq, ts.held[0].Seq-1)
			}
			ts.last, ts.known, ts.settling = seq, true, false
			out = append(out, ts.release()...)
		}
	}
	c.mu.Unlock()
	c.deliver(out)
	c.resumeUnder(ctx, ws, pattern)
}

// onResumed ends one of the client's resumes, or the replay of a scoped
// connection's ?since= (which has no id).
func (c *Client) onResumed(id string, data []byte) bool {
	var m protocol.Resumed
	if json.Unmarshal(data, &m) != nil {
		return false
	}
	scoped := id == "" && c.o.Scope != "" && m.Topic == c.o.Scope
	if !strings.HasPrefix(id, resumeID) && !scoped {
		return false
	}
	c.resumed(m.Topic, m.Seq)
	if !m.More {
		return true
	}
	// The replay cap stopped it short of the topic's number: ask for the
	// rest, at once (a scoped connection cannot resume: it reconnects with
	// since).
	if id == "" {
		go c.Drop()
		return true
	}
	c.mu.Lock()
	ts := c.topic(m.Topic)
	ts.owed, ts.gapSince = true, time.Time{}
	c.mu.Unlock()
	return true
}

// onError handles the refusals of the client's subscribes and resumes.
func (c *Client) onError(ctx context.Context, ws *websocket.Conn, id string, data []byte) bool {
	var e protocol.Error
	if json.Unmarshal(data, &e) != nil {
		return false
	}
	switch {
	case e.Code == protocol.CodeUnavailable && strings.HasPrefix(id, subscribeID):
		c.retrySubscribe(ctx, ws, strings.TrimPrefix(id, subscribeID))
	case strings.HasPrefix(id, subscribeID):
		// Refused for good (forbidden, a limit): resume what it covers
		// anyway, from history.
		c.resumeUnder(ctx, ws, strings.TrimPrefix(id, subscribeID))
	case e.Code == protocol.CodeHistoryExpired && (strings.HasPrefix(id, resumeID) || (id == "" && c.o.Scope != "")):
		t := strings.TrimPrefix(id, resumeID)
		if id == "" {
			t = c.o.Scope
		}
		c.lost(t, fmt.Errorf("client: %w", &e))
		return true
	case strings.HasPrefix(id, resumeID):
		// Not replayed now (rate limited, unavailable): ask again later.
		c.mu.Lock()
		ts := c.topic(strings.TrimPrefix(id, resumeID))
		ts.resuming = false
		ts.owed = true
		ts.gapSince = time.Now()
		if len(ts.held) == 0 {
			ts.held = nil
		}
		c.mu.Unlock()
	}
	return false
}

func (c *Client) onReply(data []byte) {
	if c.o.OnReply != nil {
		c.o.OnReply(data)
	}
}

package stacktest

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Message is one frame a Client received.
type Message struct {
	Type websocket.MessageType
	Data []byte
}

// Client is a real WebSocket client for tests. A goroutine reads all the
// time (as a browser does), so waiting for a message never closes the
// connection, and the close handshake is always answered.
type Client struct {
	t    testing.TB
	WS   *websocket.Conn
	msgs chan Message
	done chan struct{}
	err  error // why reading stopped, once done is closed
}

// ErrTimeout: no message arrived in time.
var ErrTimeout = errors.New("no message in time")

// Dial connects to the stack's WebSocket URL with query parameters.
func Dial(t testing.TB, base string, query map[string]string, opts *websocket.DialOptions) (*Client, *http.Response, error) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	for k, v := range query {
		q.Set(k, v)
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u.String(), opts)
	if err != nil {
		return nil, resp, err
	}
	ws.SetReadLimit(1 << 20)
	c := &Client{t: t, WS: ws, msgs: make(chan Message, 4096), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { ws.CloseNow() })
	return c, resp, nil
}

func (c *Client) read() {
	defer close(c.done)
	for {
		typ, data, err := c.WS.Read(context.Background())
		if err != nil {
			c.err = err
			return
		}
		c.msgs <- Message{Type: typ, Data: data}
	}
}

// MustDial connects or fails the test.
func MustDial(t testing.TB, base string, query map[string]string) *Client {
	t.Helper()
	c, resp, err := Dial(t, base, query, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	return c
}

// Send writes a text frame.
func (c *Client) Send(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WS.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// SendJSON writes v as a JSON text frame.
func (c *Client) SendJSON(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.Send(string(b))
}

// Read waits up to timeout for the next message; the error is ErrTimeout
// or why the connection ended.
func (c *Client) Read(timeout time.Duration) (Message, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	default:
	}
	select {
	case m := <-c.msgs:
		return m, nil
	case <-c.done:
		select {
		case m := <-c.msgs:
			return m, nil
		default:
			return Message{}, c.err
		}
	case <-time.After(timeout):
		return Message{}, ErrTimeout
	}
}

// Next returns the next message or fails the test after timeout.
func (c *Client) Next(timeout time.Duration) []byte {
	c.t.Helper()
	m, err := c.Read(timeout)
	if err != nil {
		c.t.Fatalf("no message within %s: %v", timeout, err)
	}
	return m.Data
}

// NextJSON returns the next message decoded as a JSON object.
func (c *Client) NextJSON(timeout time.Duration) map[string]any {
	c.t.Helper()
	b := c.Next(timeout)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("message is not a JSON object: %s", b)
	}
	return m
}

// Expect returns the next message, which must have the given type.
func (c *Client) Expect(typ string, timeout time.Duration) map[string]any {
	c.t.Helper()
	m := c.NextJSON(timeout)
	if m["type"] != typ {
		c.t.Fatalf("want a %q message, got %v", typ, m)
	}
	return m
}

// Quiet asserts no message arrives for d (the connection stays open).
func (c *Client) Quiet(d time.Duration) {
	c.t.Helper()
	m, err := c.Read(d)
	switch {
	case err == nil:
		c.t.Fatalf("unexpected message: %s", m.Data)
	case !errors.Is(err, ErrTimeout):
		c.t.Fatalf("the connection ended: %v", err)
	}
}

// CloseStatus waits for the connection to end and returns its close code
// (-1 when it did not close within timeout, or closed without a code).
// Messages received meanwhile are dropped.
func (c *Client) CloseStatus(timeout time.Duration) websocket.StatusCode {
	deadline := time.After(timeout)
	for {
		select {
		case <-c.msgs:
		case <-c.done:
			return websocket.CloseStatus(c.err)
		case <-deadline:
			return -1
		}
	}
}

// Closed reports whether the connection has ended.
func (c *Client) Closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

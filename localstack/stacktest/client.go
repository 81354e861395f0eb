package stacktest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Client is a real WebSocket client for tests.
type Client struct {
	t  testing.TB
	WS *websocket.Conn
}

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
	c := &Client{t: t, WS: ws}
	t.Cleanup(func() { ws.CloseNow() })
	return c, resp, nil
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

// Read waits up to timeout for the next message.
func (c *Client) Read(timeout time.Duration) (websocket.MessageType, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.WS.Read(ctx)
}

// Next returns the next message or fails the test after timeout.
func (c *Client) Next(timeout time.Duration) []byte {
	c.t.Helper()
	_, b, err := c.Read(timeout)
	if err != nil {
		c.t.Fatalf("no message within %s: %v", timeout, err)
	}
	return b
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

// Quiet asserts no message arrives for d.
func (c *Client) Quiet(d time.Duration) {
	c.t.Helper()
	if _, b, err := c.Read(d); err == nil {
		c.t.Fatalf("unexpected message: %s", b)
	}
}

// CloseStatus reads until the connection closes and returns its close
// code (-1 when it did not close within timeout).
func (c *Client) CloseStatus(timeout time.Duration) websocket.StatusCode {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		_, _, err := c.Read(time.Until(deadline))
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
	return -1
}

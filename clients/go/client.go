// Package client is a Go client for wsgate that keeps a subscription
// whole across reconnects: it reconnects with jittered backoff,
// subscribes again, resumes every topic from the last sequence number it
// delivered, and hands the application each event once, in sequence order.
//
// The gateway delivers at least once (a fan-out retried after a crash
// re-sends what it sent in its last moments) and parallel fan-outs of one
// topic may overtake each other. The client receives every event in the
// gateway envelope, with its topic sequence number, and uses it: an event
// at or below the topic's position is a duplicate and dropped; an event
// past a hole in the sequence waits up to GapWait for the missing one, then
// the client asks the gateway (resume) for what it should have had, which
// also tells holes of filtered-out events from lost ones.
//
// It speaks the protocol of shared/protocol: the requests it writes and the
// messages it reads are that package's types and names.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/wsgate/wsgate/shared/protocol"
)

// Defaults for zero Options fields.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
	// DefaultPingEvery keeps the connection well inside API Gateway's
	// 10-minute idle timeout.
	DefaultPingEvery = 4 * time.Minute
	// DefaultMaxAge reconnects, and resumes, before API Gateway's 2-hour cut.
	DefaultMaxAge = 110 * time.Minute
	// DefaultGapWait is how long an event after a hole waits for the
	// missing one before the client asks the gateway.
	DefaultGapWait = time.Second
	// DefaultReplyTimeout is past API Gateway's 29-second integration
	// timeout: a command unanswered by then never will be.
	DefaultReplyTimeout = 30 * time.Second
)

// Options configure a Client.
type Options struct {
	// URL is the WebSocket endpoint, wss://{api}.execute-api.{region}.amazonaws.com/{stage}.
	URL string
	// Token returns the token for each connection attempt (a fresh
	// single-use ticket, say); nil connects without one.
	Token func(ctx context.Context) (string, error)
	// Topics are the patterns subscribed after every connect.
	Topics []string
	// Filters apply to every subscription in Topics.
	Filters map[string][]any
	// Scope connects scoped to one topic (?topic=), push-only; it resumes
	// with ?since=.
	Scope string
	// Positions are sequence numbers already delivered, per topic (from a
	// previous run): the first connect resumes after them.
	Positions map[string]uint64
	// Header is sent with every handshake (Authorization, Cookie, ...).
	Header http.Header

	MinBackoff, MaxBackoff time.Duration
	PingEvery              time.Duration
	MaxAge                 time.Duration
	// GapWait: how long to hold events behind a hole; negative delivers at
	// once (duplicates are still dropped, order is not restored).
	GapWait time.Duration
	// ReplyTimeout: a subscribe or resume unanswered this long is sent
	// again (the function running it failed: API Gateway then sends only
	// {"message":"Internal server error"}, which names no command).
	ReplyTimeout time.Duration

	// OnEvent receives each event once, in sequence order per topic. The
	// callbacks run on the client's own goroutine, one at a time: they
	// must not block for long, nor call Run.
	OnEvent func(Event)
	// OnGap reports events the gateway could no longer replay (older than
	// its history, or never kept): the application should reload state.
	OnGap func(Gap)
	// OnState reports connection changes.
	OnState func(StateChange)
	// OnReply receives every other frame: pong, subscribed, errors to
	// commands sent with Send, ...
	OnReply func([]byte)
	Log     *slog.Logger
}

// Event is one delivered event.
type Event struct {
	Topic string
	Seq   uint64
	ID    string
	Time  time.Time
	// Data is the payload as published (JSON), or nil for binary ones.
	Data json.RawMessage
	// Binary is the payload of a payload_base64 event.
	Binary []byte
	// From is who published the event, "<ptype>:<sub>", as the gateway
	// verified it: set on a client's event (the publish command), empty on
	// a backend's own.
	From string
}

// Gap is a stretch of a topic's events that could not be recovered.
type Gap struct {
	Topic string
	After uint64 // the last sequence number delivered before it
	// Err is the gateway's answer: a *protocol.Error (errors.As) with
	// protocol.CodeHistoryExpired.
	Err error
}

// State is where the client's connection is.
type State int

// States.
const (
	Connecting State = iota
	Connected
	Disconnected
)

func (s State) String() string {
	switch s {
	case Connecting:
		return "connecting"
	case Connected:
		return "connected"
	default:
		return "disconnected"
	}
}

// StateChange is one transition; Err says why a connection ended or an
// attempt failed, Wait how long until the next attempt.
type StateChange struct {
	State   State
	Attempt int
	Err     error
	Wait    time.Duration
}

// Stats count what the client did.
type Stats struct {
	Connects   int // successful handshakes
	Delivered  int // events handed to OnEvent
	Duplicates int // events received again and dropped
	Resumes    int // resume requests (after reconnects and holes)
	Gaps       int // OnGap calls
	Retries    int // subscribes sent again after an "unavailable" answer
}

// RefusedError is a handshake the gateway refused with an HTTP status, and
// the reason its body gave ("token_expired", "invalid token", ...; empty
// when it gave none).
type RefusedError struct {
	Status int
	Reason string
}

func (e *RefusedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("client: connect refused: HTTP %d", e.Status)
	}
	return fmt.Sprintf("client: connect refused: HTTP %d: %s", e.Status, e.Reason)
}

// RefusalReason reads the reason from a refused handshake's body: the
// message of a JSON {"message": ...} body (what the gateway and API
// Gateway send), else the body as text, cut to a line.
func RefusalReason(body io.Reader) string {
	if body == nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(body, 1024))
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.ToValidUTF8(s, "")
}

// ErrNotConnected: Send while no connection is open.
var ErrNotConnected = errors.New("client: not connected")

// Client is one logical subscription over a succession of connections.
type Client struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex // guards ws, stats, topics (read by Position) and retries
	ws     *websocket.Conn
	stats  Stats
	topics map[string]*topicState
	// retries counts the subscribes of each pattern the gateway answered
	// "unavailable" in a row, for their backoff; resending holds the
	// patterns whose resend is scheduled and not sent yet.
	retries   map[string]int
	resending map[string]bool
	// asked holds the client's own commands on this connection not yet
	// answered, by id, with when they were sent (see answers.go).
	asked map[string]time.Time
}

// New returns a client; Run connects it.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("client: URL %q is not a ws:// or wss:// address", o.URL)
	}
	if o.OnEvent == nil {
		return nil, errors.New("client: OnEvent is required")
	}
	if _, err := json.Marshal(o.Filters); err != nil {
		return nil, fmt.Errorf("client: Filters: %w", err)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = DefaultMinBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.PingEvery <= 0 {
		o.PingEvery = DefaultPingEvery
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.GapWait == 0 {
		o.GapWait = DefaultGapWait
	}
	if o.ReplyTimeout <= 0 {
		o.ReplyTimeout = DefaultReplyTimeout
	}
	c := &Client{o: o, log: o.Log, topics: map[string]*topicState{}, retries: map[string]int{}, resending: map[string]bool{}, asked: map[string]time.Time{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	for t, seq := range o.Positions {
		c.topics[t] = &topicState{last: seq, known: true}
	}
	return c, nil
}

// Stats returns the counters so far.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Position is the last sequence number delivered on a topic (0: none yet).
func (c *Client) Position(t string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts := c.topics[t]; ts != nil {
		return ts.last
	}
	return 0
}

// Send writes a command on the current connection: a request of
// shared/protocol (protocol.UnsubscribeRequest, ...) or another
// JSON-marshalable value, or []byte as is.
func (c *Client) Send(ctx context.Context, v any) error {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = protocol.Marshal(v); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	}
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws == nil {
		return ErrNotConnected
	}
	return ws.Write(ctx, websocket.MessageText, b)
}

// Drop closes the current connection abruptly, as a network failure
// would; Run reconnects. For tests and chaos drills.
func (c *Client) Drop() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		_ = ws.CloseNow()
	}
}

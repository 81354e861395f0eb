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
package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/topic"
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
}

// Gap is a stretch of a topic's events that could not be recovered.
type Gap struct {
	Topic string
	After uint64 // the last sequence number delivered before it
	Err   error
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

// RefusedError is a handshake the gateway refused with an HTTP status.
type RefusedError struct{ Status int }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("client: connect refused: HTTP %d", e.Status)
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
	// "unavailable" in a row, for their backoff.
	retries map[string]int
}

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
	// owed: a resume must be asked again (the gateway stopped one at its
	// replay cap, or could not do it now), even with nothing held.
	owed     bool
	gapSince time.Time
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
	c := &Client{o: o, log: o.Log, topics: map[string]*topicState{}, retries: map[string]int{}}
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
func (c *Client) Position(topic string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ts := c.topics[topic]; ts != nil {
		return ts.last
	}
	return 0
}

// Send writes a command (a JSON-marshalable value, or []byte as is) on the
// current connection.
func (c *Client) Send(ctx context.Context, v any) error {
	b, ok := v.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(v); err != nil {
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

// Run connects and keeps reconnecting until ctx ends (nil) or the gateway
// refuses the handshake for good: 400, 401, 403 or 404 (a *RefusedError).
func (c *Client) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		c.state(StateChange{State: Connecting, Attempt: max(attempt, 0)})
		ws, err := c.dial(ctx)
		if err == nil {
			attempt = -1 // the next failure waits from the start
			err = c.session(ctx, ws)
		}
		if ctx.Err() != nil {
			return nil
		}
		var refused *RefusedError
		if errors.As(err, &refused) && refused.Status != http.StatusTooManyRequests && refused.Status < 500 {
			c.state(StateChange{State: Disconnected, Err: err})
			return err
		}
		wait := c.backoff(max(attempt, 0))
		c.state(StateChange{State: Disconnected, Attempt: max(attempt, 0), Err: err, Wait: wait})
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// backoff is the wait before attempt n+1: exponential, capped, with equal
// jitter (half fixed, half random) so a gateway restart does not bring
// every client back in the same instant.
func (c *Client) backoff(n int) time.Duration {
	d := c.o.MaxBackoff
	if n < 30 {
		d = min(c.o.MinBackoff<<n, c.o.MaxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	u, _ := url.Parse(c.o.URL)
	q := u.Query()
	q.Set("envelope", "1")
	if c.o.Scope != "" {
		q.Set("topic", c.o.Scope)
		if last := c.Position(c.o.Scope); last > 0 {
			q.Set("since", strconv.FormatUint(last, 10))
		}
	}
	u.RawQuery = q.Encode()
	h := c.o.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if c.o.Token != nil {
		tok, err := c.o.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: token: %w", err)
		}
		if tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &RefusedError{Status: resp.StatusCode}
		}
		return nil, fmt.Errorf("client: connect: %w", err)
	}
	ws.SetReadLimit(256 << 10)
	return ws, nil
}

// frame is one message read from the connection, or the error ending it.
type frame struct {
	data []byte
	bin  bool
	err  error
}

// session serves one connection until it ends.
func (c *Client) session(ctx context.Context, ws *websocket.Conn) error {
	defer ws.CloseNow()
	c.mu.Lock()
	c.ws = ws
	c.stats.Connects++
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ws = nil
		c.mu.Unlock()
	}()
	c.state(StateChange{State: Connected})

	frames := make(chan frame, 64)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			typ, data, err := ws.Read(rctx)
			select {
			case frames <- frame{data: data, bin: typ == websocket.MessageBinary, err: err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	if err := c.start(ctx, ws); err != nil {
		return err
	}
	ping := time.NewTicker(c.o.PingEvery)
	defer ping.Stop()
	age := time.NewTimer(c.o.MaxAge)
	defer age.Stop()
	gaps := time.NewTicker(c.gapTick())
	defer gaps.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = ws.Close(websocket.StatusNormalClosure, "")
			return ctx.Err()
		case f := <-frames:
			if f.err != nil {
				c.interrupted()
				return f.err
			}
			c.handle(ctx, ws, f.data)
		case <-ping.C:
			if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`)); err != nil {
				c.interrupted()
				return err
			}
		case <-age.C:
			_ = ws.Close(websocket.StatusNormalClosure, "reconnecting before the 2-hour limit")
			c.interrupted()
			return errors.New("client: connection reached MaxAge")
		case now := <-gaps.C:
			c.checkGaps(ctx, ws, now)
		}
	}
}

func (c *Client) gapTick() time.Duration {
	if c.o.GapWait < 0 {
		return time.Hour
	}
	return max(c.o.GapWait/4, 10*time.Millisecond)
}

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
	// Each topic resumes once the subscription covering it answers (see
	// topicState.waiting); meanwhile its events are held.
	c.mu.Lock()
	for t, ts := range c.topics {
		if t != c.o.Scope && ts.last > 0 && c.covered(t) {
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
	cmd := map[string]any{"type": "subscribe", "id": "sub:" + p, "topic": p}
	if len(c.o.Filters) > 0 {
		cmd["filters"] = c.o.Filters
	}
	return c.write(ctx, ws, cmd)
}

// retrySubscribe sends pattern p's subscribe again after a backoff, on the
// same connection (a new connection subscribes anyway).
func (c *Client) retrySubscribe(ctx context.Context, ws *websocket.Conn, p string) {
	c.mu.Lock()
	n := c.retries[p]
	c.retries[p] = n + 1
	c.stats.Retries++
	c.mu.Unlock()
	wait := c.backoff(n)
	c.log.Info("subscribe unavailable; retrying", "pattern", p, "in", wait.String())
	time.AfterFunc(wait, func() {
		c.mu.Lock()
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
	since := c.topic(t).last
	c.stats.Resumes++
	c.mu.Unlock()
	c.log.Debug("resuming", "topic", t, "since", since)
	return c.write(ctx, ws, map[string]any{"type": "resume", "id": "resume:" + t, "topic": t, "since": since})
}

func (c *Client) write(ctx context.Context, ws *websocket.Conn, v any) error {
	b, _ := json.Marshal(v)
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

// reply is the part of a server frame the client looks at. ID is the
// event id of an event, the echoed command id of a reply.
type reply struct {
	Type       string            `json:"type"`
	ID         json.RawMessage   `json:"id"`
	Topic      string            `json:"topic"`
	Seq        uint64            `json:"seq"`
	Time       string            `json:"time"`
	Data       json.RawMessage   `json:"data"`
	DataBase64 string            `json:"data_base64"`
	Code       string            `json:"code"`
	Message    string            `json:"message"`
	Seqs       map[string]uint64 `json:"seqs"`
	More       bool              `json:"more"`
}

func (c *Client) handle(ctx context.Context, ws *websocket.Conn, data []byte) {
	var r reply
	if json.Unmarshal(data, &r) != nil {
		c.onReply(data)
		return
	}
	var id string
	_ = json.Unmarshal(r.ID, &id)
	switch {
	case r.Type == "event" && r.Topic != "" && r.Seq > 0:
		e := Event{Topic: r.Topic, Seq: r.Seq, ID: id, Data: r.Data}
		e.Time, _ = time.Parse(time.RFC3339Nano, r.Time)
		if r.DataBase64 != "" {
			e.Data = nil
			e.Binary, _ = base64.StdEncoding.DecodeString(r.DataBase64)
		}
		c.receive(e)
	case r.Type == "error" && r.Code == protocol.CodeUnavailable && strings.HasPrefix(id, "sub:"):
		c.retrySubscribe(ctx, ws, strings.TrimPrefix(id, "sub:"))
		c.onReply(data)
	case r.Type == "subscribed":
		c.mu.Lock()
		delete(c.retries, strings.TrimPrefix(id, "sub:"))
		for t, seq := range r.Seqs {
			if ts := c.topic(t); !ts.known && !ts.resuming && len(ts.held) == 0 {
				// Events after this number are ours: a hole before the
				// first one, or a drop, resumes from here.
				ts.last, ts.known = seq, true
			}
		}
		c.mu.Unlock()
		c.resumeUnder(ctx, ws, strings.TrimPrefix(id, "sub:"))
		c.onReply(data)
	case r.Type == "error" && strings.HasPrefix(id, "sub:"):
		// Refused for good (forbidden, a limit): resume what it covers
		// anyway, from history.
		c.resumeUnder(ctx, ws, strings.TrimPrefix(id, "sub:"))
		c.onReply(data)
	case r.Type == "resumed" && (strings.HasPrefix(id, "resume:") || (id == "" && c.o.Scope != "" && r.Topic == c.o.Scope)):
		c.resumed(r.Topic, r.Seq, nil)
		if r.More {
			// The replay cap stopped it short of the topic's number: ask
			// for the rest, at once (a scoped connection cannot resume:
			// it reconnects with since).
			if id == "" {
				go c.Drop()
				break
			}
			c.mu.Lock()
			ts := c.topic(r.Topic)
			ts.owed, ts.gapSince = true, time.Time{}
			c.mu.Unlock()
		}
	case r.Type == "error" && r.Code == "history_expired" && (strings.HasPrefix(id, "resume:") || (id == "" && c.o.Scope != "")):
		t := strings.TrimPrefix(id, "resume:")
		if id == "" {
			t = c.o.Scope
		}
		c.resumed(t, 0, fmt.Errorf("client: %s: %s", r.Code, r.Message))
	case r.Type == "error" && strings.HasPrefix(id, "resume:"):
		// Not replayed now (rate limited, unavailable): ask again later.
		c.mu.Lock()
		ts := c.topic(strings.TrimPrefix(id, "resume:"))
		ts.resuming = false
		ts.owed = true
		ts.gapSince = time.Now()
		if len(ts.held) == 0 {
			ts.held = nil
		}
		c.mu.Unlock()
		c.onReply(data)
	default:
		c.onReply(data)
	}
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
	if !ts.known && !ts.resuming && len(ts.held) == 0 {
		ts.last, ts.known = e.Seq-1, true // the first event on a topic sets the start
	}
	i, _ := slices.BinarySearchFunc(ts.held, e.Seq, func(h Event, s uint64) int { return cmpSeq(h.Seq, s) })
	ts.held = slices.Insert(ts.held, i, e)
	if ts.gapSince.IsZero() {
		ts.gapSince = time.Now()
	}
	out := c.releaseLocked(ts, c.o.GapWait < 0)
	c.mu.Unlock()
	c.deliver(out)
}

// resumed ends a resume of topic t: the gateway has sent everything up to
// seq meant for this connection, so held events up to there are complete.
func (c *Client) resumed(t string, seq uint64, err error) {
	c.mu.Lock()
	ts := c.topic(t)
	after := ts.last
	ts.resuming = false
	var out []Event
	if err != nil {
		// What the gateway cannot replay is lost: deliver what we hold.
		out = c.releaseLocked(ts, true)
	} else {
		// Events up to seq not replayed were never meant for us (filtered).
		for len(ts.held) > 0 && ts.held[0].Seq <= seq {
			out = append(out, ts.held[0])
			ts.last = ts.held[0].Seq
			ts.held = ts.held[1:]
		}
		ts.last, ts.known = max(ts.last, seq), true
		out = append(out, c.releaseLocked(ts, false)...)
	}
	if err != nil {
		c.stats.Gaps++
	}
	c.mu.Unlock()
	if err != nil && c.o.OnGap != nil {
		c.o.OnGap(Gap{Topic: t, After: after, Err: err})
	}
	c.deliver(out)
}

// releaseLocked takes the held events that follow the position without a
// hole (all of them with force), unless a resume is in flight.
func (c *Client) releaseLocked(ts *topicState, force bool) []Event {
	if ts.resuming {
		return nil
	}
	var out []Event
	for len(ts.held) > 0 && (force || ts.held[0].Seq == ts.last+1) {
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
	for t, ts := range c.topics {
		if (len(ts.held) > 0 || ts.owed) && !ts.resuming && now.Sub(ts.gapSince) >= c.o.GapWait {
			ts.resuming, ts.owed = true, false
			ask = append(ask, t)
		}
	}
	c.mu.Unlock()
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

func (c *Client) state(s StateChange) {
	if s.Err != nil {
		c.log.Info("connection "+s.State.String(), "attempt", s.Attempt, "error", s.Err.Error(), "retry_in", s.Wait)
	}
	if c.o.OnState != nil {
		c.o.OnState(s)
	}
}

func (c *Client) onReply(data []byte) {
	if c.o.OnReply != nil {
		c.o.OnReply(data)
	}
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

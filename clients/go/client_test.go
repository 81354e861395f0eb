package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// server is a scripted gateway: each accepted connection is handed to the
// test, which reads the client's commands and writes frames.
type server struct {
	t      *testing.T
	url    string
	conns  chan *serverConn
	status int // refuse handshakes with this status when set
	mu     sync.Mutex
	seen   []*http.Request
}

type serverConn struct {
	t   *testing.T
	ws  *websocket.Conn
	req *http.Request
	in  chan map[string]any
}

func newServer(t *testing.T) *server {
	s := &server{t: t, conns: make(chan *serverConn, 8)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r)
		status := s.status
		s.mu.Unlock()
		if status != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(`{"message":"token_expired"}`))
			return
		}
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c := &serverConn{t: t, ws: ws, req: r, in: make(chan map[string]any, 64)}
		s.conns <- c
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				close(c.in)
				return
			}
			var m map[string]any
			_ = json.Unmarshal(data, &m)
			c.in <- m
		}
	}))
	t.Cleanup(hs.Close)
	s.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	return s
}

func (s *server) refuse(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

func (s *server) next() *serverConn {
	s.t.Helper()
	select {
	case c := <-s.conns:
		return c
	case <-time.After(5 * time.Second):
		s.t.Fatal("the client did not connect")
		return nil
	}
}

// expect returns the client's next command, which must have type typ.
func (c *serverConn) expect(typ string) map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		require.True(c.t, ok, "connection closed while waiting for %s", typ)
		require.Equal(c.t, typ, m["type"], "got %v", m)
		return m
	case <-time.After(5 * time.Second):
		c.t.Fatalf("no %s command", typ)
		return nil
	}
}

func (c *serverConn) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(c.t, err)
	require.NoError(c.t, c.ws.Write(context.Background(), websocket.MessageText, b))
}

func (c *serverConn) event(topic string, seq uint64) {
	c.t.Helper()
	c.send(map[string]any{"type": "event", "topic": topic, "seq": seq, "id": fmt.Sprintf("ev-%d", seq), "time": "2026-11-23T10:00:00Z", "data": map[string]any{"n": seq}})
}

// reconnected runs a client subscribed to a.b through its first event and
// a drop, and returns its next connection once it subscribed again.
func reconnected(t *testing.T, s *server, rec *recorder) *serverConn {
	t.Helper()
	conn := s.next()
	conn.expect("subscribe")
	conn.event("a.b", 1)
	rec.waitSeqs(t, "a.b", 1)
	require.NoError(t, conn.ws.CloseNow())
	conn = s.next()
	conn.expect("subscribe")
	return conn
}

// subscribed answers the client's subscribe to pattern.
func (c *serverConn) subscribed(pattern string) {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribed", "id": "sub:" + pattern, "topics": []string{pattern}})
}

// quiet asserts the client sends nothing for d.
func (c *serverConn) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.in:
		c.t.Fatalf("the client sent %v", m)
	case <-time.After(d):
	}
}

// recorder collects what the client hands the application.
type recorder struct {
	mu     sync.Mutex
	events []Event
	gaps   []Gap
}

func (r *recorder) seqs(topic string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []uint64
	for _, e := range r.events {
		if e.Topic == topic {
			out = append(out, e.Seq)
		}
	}
	return out
}

func (r *recorder) waitSeqs(t *testing.T, topic string, want ...uint64) {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.seqs(topic)) >= len(want) }, 5*time.Second, 5*time.Millisecond, "got %v, want %v", r.seqs(topic), want)
	assert.Equal(t, want, r.seqs(topic))
}

func start(t *testing.T, o Options) (*Client, *recorder, chan error) {
	t.Helper()
	rec := &recorder{}
	o.OnEvent = func(e Event) { rec.mu.Lock(); rec.events = append(rec.events, e); rec.mu.Unlock() }
	o.OnGap = func(g Gap) { rec.mu.Lock(); rec.gaps = append(rec.gaps, g); rec.mu.Unlock() }
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	}
	c, err := New(o)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return c, rec, done
}

func TestClient_DropsDuplicatesAndRestoresOrder(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}, GapWait: time.Second})
	conn := s.next()
	assert.Equal(t, "1", conn.req.URL.Query().Get("envelope"), "the client always asks for the envelope")
	conn.expect("subscribe")
	conn.send(map[string]any{"type": "subscribed", "id": "sub:a.b", "topics": []string{"a.b"}, "seqs": map[string]uint64{"a.b": 4}})
	for _, seq := range []uint64{5, 7, 6, 5, 8, 7} {
		conn.event("a.b", seq)
	}
	rec.waitSeqs(t, "a.b", 5, 6, 7, 8)
	// The last repeat (7) comes after 8: the client may not have read it
	// when 8 is handed over.
	assert.Eventually(t, func() bool { return c.Stats().Duplicates == 2 }, 5*time.Second, 5*time.Millisecond, "duplicates: %d", c.Stats().Duplicates)
	assert.Equal(t, uint64(8), c.Position("a.b"))
	assert.Equal(t, []uint64{5, 6, 7, 8}, rec.seqs("a.b"), "and none handed over")
}

func TestClient_AsksForAHoleThatStaysOpen(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}, GapWait: 50 * time.Millisecond})
	conn := s.next()
	conn.expect("subscribe")
	conn.event("a.b", 1)
	conn.event("a.b", 4) // 2 lost, 3 filtered out for this client
	rec.waitSeqs(t, "a.b", 1)

	r := conn.expect("resume")
	assert.Equal(t, "a.b", r["topic"])
	assert.EqualValues(t, 1, r["since"])
	conn.event("a.b", 2)
	conn.event("a.b", 5) // live, while the replay is in flight
	conn.send(map[string]any{"type": "resumed", "id": r["id"], "topic": "a.b", "seq": 4, "replayed": 1})
	rec.waitSeqs(t, "a.b", 1, 2, 4, 5)
	assert.Equal(t, 1, c.Stats().Resumes)
}

func TestClient_ReconnectsAndResumesFromTheLastEvent(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.*"}})
	conn := s.next()
	conn.expect("subscribe")
	conn.event("a.x", 10)
	conn.event("a.y", 3)
	rec.waitSeqs(t, "a.x", 10)
	require.NoError(t, conn.ws.CloseNow())

	conn = s.next()
	assert.Equal(t, "a.*", conn.expect("subscribe")["topic"])
	conn.subscribed("a.*")
	resumes := map[string]float64{}
	for range 2 {
		r := conn.expect("resume")
		resumes[r["topic"].(string)] = r["since"].(float64)
	}
	assert.Equal(t, map[string]float64{"a.x": 10, "a.y": 3}, resumes)
	conn.event("a.x", 12) // live first
	conn.event("a.x", 10) // replay repeats what was seen
	conn.event("a.x", 11)
	conn.send(map[string]any{"type": "resumed", "id": "resume:a.x", "topic": "a.x", "seq": 11})
	conn.send(map[string]any{"type": "resumed", "id": "resume:a.y", "topic": "a.y", "seq": 3})
	rec.waitSeqs(t, "a.x", 10, 11, 12)
	assert.Equal(t, 2, c.Stats().Connects)
}

func TestClient_ResumesFromTheSubscribePointBeforeAnyEvent(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}})
	conn := s.next()
	conn.expect("subscribe")
	conn.send(map[string]any{"type": "subscribed", "id": "sub:a.b", "topics": []string{"a.b"}, "seqs": map[string]uint64{"a.b": 41}})
	require.Eventually(t, func() bool { return c.Position("a.b") == 41 }, 5*time.Second, time.Millisecond)
	require.NoError(t, conn.ws.CloseNow())

	conn = s.next()
	conn.expect("subscribe")
	conn.subscribed("a.b")
	r := conn.expect("resume")
	assert.EqualValues(t, 41, r["since"])
	conn.event("a.b", 42)
	conn.send(map[string]any{"type": "resumed", "id": "resume:a.b", "topic": "a.b", "seq": 42})
	rec.waitSeqs(t, "a.b", 42)
}

// A topic with no event yet starts at 0, a position like any other: a
// client dropped before its first event must still ask for what was
// published while it was away, or an event numbered before its new
// subscription was stored is lost until a later event shows the hole
// (never, for a topic's last event).
func TestClient_ResumesFromAnEmptyTopicsStart(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}})
	conn := s.next()
	conn.expect("subscribe")
	conn.send(map[string]any{"type": "subscribed", "id": "sub:a.b", "topics": []string{"a.b"}, "seqs": map[string]uint64{"a.b": 0}})
	require.Eventually(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		ts := c.topics["a.b"]
		return ts != nil && ts.known
	}, 5*time.Second, time.Millisecond)
	require.NoError(t, conn.ws.CloseNow())

	conn = s.next()
	conn.expect("subscribe")
	conn.send(map[string]any{"type": "subscribed", "id": "sub:a.b", "topics": []string{"a.b"}, "seqs": map[string]uint64{"a.b": 1}})
	r := conn.expect("resume")
	assert.EqualValues(t, 0, r["since"])
	assert.EqualValues(t, 1, r["until"])
	conn.event("a.b", 1)
	conn.send(map[string]any{"type": "resumed", "id": "resume:a.b", "topic": "a.b", "seq": 1})
	rec.waitSeqs(t, "a.b", 1)
}

func TestClient_ScopedConnectionResumesWithSince(t *testing.T) {
	s := newServer(t)
	_, rec, _ := start(t, Options{URL: s.url, Scope: "op.7"})
	conn := s.next()
	assert.Equal(t, "op.7", conn.req.URL.Query().Get("topic"))
	assert.Empty(t, conn.req.URL.Query().Get("since"))
	conn.event("op.7", 1)
	rec.waitSeqs(t, "op.7", 1)
	require.NoError(t, conn.ws.CloseNow())

	conn = s.next()
	assert.Equal(t, "1", conn.req.URL.Query().Get("since"))
	conn.event("op.7", 3) // live before the replay task's frames
	conn.event("op.7", 2)
	conn.send(map[string]any{"type": "resumed", "topic": "op.7", "seq": 2})
	rec.waitSeqs(t, "op.7", 1, 2, 3)
}

// API Gateway runs a connection's frames at once: a resume sent with its
// subscribe could be answered before the subscription exists, and an
// event numbered between the two would reach neither. The soak lost one
// that way; the client now resumes a topic only once the subscription
// covering it has answered, holding its events meanwhile.
func TestClient_ResumesOnlyAfterTheSubscriptionIsConfirmed(t *testing.T) {
	s := newServer(t)
	_, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b", "c.*"}})
	conn := s.next()
	conn.expect("subscribe")
	conn.expect("subscribe")
	conn.event("a.b", 1)
	conn.event("c.d", 7)
	rec.waitSeqs(t, "a.b", 1)
	require.NoError(t, conn.ws.CloseNow())

	conn = s.next()
	conn.expect("subscribe")
	conn.expect("subscribe")
	conn.quiet(200 * time.Millisecond)
	conn.event("a.b", 3) // live, right after the subscription was written
	conn.subscribed("c.*")
	r := conn.expect("resume")
	assert.Equal(t, "c.d", r["topic"])
	conn.quiet(100 * time.Millisecond)
	conn.subscribed("a.b")
	r = conn.expect("resume")
	assert.Equal(t, "a.b", r["topic"])
	assert.EqualValues(t, 1, r["since"])
	conn.event("a.b", 2)
	conn.send(map[string]any{"type": "resumed", "id": r["id"], "topic": "a.b", "seq": 3})
	rec.waitSeqs(t, "a.b", 1, 2, 3)
}

func TestClient_HistoryExpiredIsAGapAndDeliveryGoesOn(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}})
	conn := reconnected(t, s, rec)
	conn.subscribed("a.b")
	r := conn.expect("resume")
	conn.event("a.b", 900)
	conn.send(map[string]any{"type": "error", "id": r["id"], "code": "history_expired", "message": "899 events missed"})
	rec.waitSeqs(t, "a.b", 1, 900)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.gaps, 1)
	assert.Equal(t, Gap{Topic: "a.b", After: 1, Err: rec.gaps[0].Err}, rec.gaps[0])
	assert.Contains(t, rec.gaps[0].Err.Error(), "history_expired")
	assert.Equal(t, 1, c.Stats().Gaps)
}

func TestClient_RefusedForGoodEndsRun(t *testing.T) {
	s := newServer(t)
	s.refuse(http.StatusUnauthorized)
	_, _, done := start(t, Options{URL: s.url, Token: func(context.Context) (string, error) { return "tok", nil }})
	select {
	case err := <-done:
		done <- err // for the cleanup
		var refused *RefusedError
		require.ErrorAs(t, err, &refused)
		assert.Equal(t, http.StatusUnauthorized, refused.Status)
		assert.Equal(t, "token_expired", refused.Reason, "the refusal body's message")
		assert.EqualError(t, err, "client: connect refused: HTTP 401: token_expired")
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept going after a 401")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	assert.Equal(t, "Bearer tok", s.seen[0].Header.Get("Authorization"))
	assert.Empty(t, s.seen[0].URL.Query().Get("token"), "the token is not put in the URL")
}

func TestClient_RetriesWhileTheGatewayIsUnavailable(t *testing.T) {
	s := newServer(t)
	s.refuse(http.StatusServiceUnavailable)
	var mu sync.Mutex
	var states []StateChange
	_, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}, OnState: func(st StateChange) { mu.Lock(); states = append(states, st); mu.Unlock() }})
	require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.seen) >= 3 }, 5*time.Second, time.Millisecond)
	s.refuse(0)
	conn := s.next()
	conn.expect("subscribe")
	conn.event("a.b", 1)
	rec.waitSeqs(t, "a.b", 1)
	mu.Lock()
	defer mu.Unlock()
	var refused *RefusedError
	require.ErrorAs(t, states[1].Err, &refused)
	assert.Equal(t, Disconnected, states[1].State)
	assert.Positive(t, states[1].Wait)
}

func TestClient_BackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	c, err := New(Options{URL: "ws://x", OnEvent: func(Event) {}, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	require.NoError(t, err)
	for n, full := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		full *= time.Millisecond
		seen := map[time.Duration]bool{}
		for range 50 {
			d := c.backoff(n)
			assert.GreaterOrEqual(t, d, full/2)
			assert.LessOrEqual(t, d, full)
			seen[d] = true
		}
		assert.Greater(t, len(seen), 1, "jittered")
	}
	assert.LessOrEqual(t, c.backoff(1000), time.Second)
}

func TestNew_RejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{URL: "http://x", OnEvent: func(Event) {}},
		{URL: "ws://", OnEvent: func(Event) {}},
		{URL: "ws://x"},
	} {
		_, err := New(o)
		assert.Error(t, err, "%+v", o)
	}
}

// A subscribe the gateway could not do now ("unavailable": the store was
// busy) is sent again after a backoff; other refusals are not.
func TestClient_RetriesASubscribeAnsweredUnavailable(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b", "x.y"}})
	conn := s.next()
	first := conn.expect("subscribe")
	second := conn.expect("subscribe")
	conn.send(map[string]any{"type": "error", "id": first["id"], "code": "unavailable", "message": "temporarily unavailable; retry"})
	conn.send(map[string]any{"type": "error", "id": second["id"], "code": "forbidden", "message": "no"})
	again := conn.expect("subscribe")
	assert.Equal(t, first["topic"], again["topic"])
	conn.send(map[string]any{"type": "subscribed", "id": again["id"], "topics": []string{"a.b"}, "seqs": map[string]uint64{"a.b": 0}})
	conn.event("a.b", 1)
	rec.waitSeqs(t, "a.b", 1)
	assert.Equal(t, 1, c.Stats().Retries)
	select {
	case m := <-conn.in:
		t.Fatalf("unexpected command %v: a forbidden subscribe is not retried", m)
	case <-time.After(100 * time.Millisecond):
	}
}

// A subscribe whose invocation failed gets no answer, only API Gateway's
// "Internal server error" naming no command: the soak, overloaded, lost a
// client's subscription (and every later event of two topics) that way.
func TestClient_SubscribesAgainAfterAnIntegrationError(t *testing.T) {
	s := newServer(t)
	start(t, Options{URL: s.url, Topics: []string{"a.b", "c.d"}})
	conn := s.next()
	conn.expect("subscribe")
	conn.expect("subscribe")
	conn.subscribed("c.d")
	conn.send(map[string]any{"message": "Internal server error", "connectionId": "x", "requestId": "r"})
	again := conn.expect("subscribe")
	assert.Equal(t, "a.b", again["topic"], "only the unanswered one")
	conn.subscribed("a.b")
	conn.quiet(100 * time.Millisecond)
}

// API Gateway's integration error names no command, so each one sends
// every unanswered subscribe again; but one resend per pattern is enough
// at a time. Resending all of them at every error squared the load: an
// overloaded message function answered each of three subscribes with an
// error, the client sent nine, whose errors made twenty-seven, and the
// queue of frames never drained.
func TestClient_IntegrationErrorsDoNotMultiplyResends(t *testing.T) {
	s := newServer(t)
	_, _, _ = start(t, Options{URL: s.url, Topics: []string{"a.b", "a.c", "a.d"}, MinBackoff: 50 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	conn := s.next()
	for range 3 {
		conn.expect("subscribe")
	}
	for range 3 {
		conn.send(map[string]any{"message": "Internal server error", "connectionId": "c1", "requestId": "r"})
	}
	resent := map[string]int{}
	deadline := time.After(time.Second)
	for done := false; !done; {
		select {
		case m := <-conn.in:
			require.Equal(t, "subscribe", m["type"])
			resent[m["topic"].(string)]++
		case <-deadline:
			done = true
		}
	}
	assert.Equal(t, map[string]int{"a.b": 1, "a.c": 1, "a.d": 1}, resent)
}

func TestClient_AsksAgainWhatStaysUnanswered(t *testing.T) {
	s := newServer(t)
	start(t, Options{URL: s.url, Topics: []string{"a.b"}, ReplyTimeout: 100 * time.Millisecond})
	conn := s.next()
	first := conn.expect("subscribe")
	again := conn.expect("subscribe")
	assert.Equal(t, first, again)
	conn.subscribed("a.b")
	conn.quiet(300 * time.Millisecond)
}

// After a reconnect, the resume of an exact topic asks only up to where the
// new subscription started: later events come live, so none twice.
func TestClient_ResumeStopsWhereTheNewSubscriptionStarted(t *testing.T) {
	s := newServer(t)
	_, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}})
	conn := reconnected(t, s, rec)
	conn.send(map[string]any{"type": "subscribed", "id": "sub:a.b", "topics": []string{"a.b"}, "seqs": map[string]uint64{"a.b": 3}})
	r := conn.expect("resume")
	assert.EqualValues(t, 1, r["since"])
	assert.EqualValues(t, 3, r["until"])
	conn.event("a.b", 4) // live
	conn.event("a.b", 2)
	conn.event("a.b", 3)
	conn.send(map[string]any{"type": "resumed", "id": r["id"], "topic": "a.b", "seq": 3})
	rec.waitSeqs(t, "a.b", 1, 2, 3, 4)

	conn.event("a.b", 6) // a hole later is asked without a bound
	r = conn.expect("resume")
	_, bounded := r["until"]
	assert.False(t, bounded)
}

// Under a wildcard the gateway gives no start for a topic, and parallel
// fan-outs overtake each other: the first events of a topic wait GapWait
// for earlier-numbered ones, then the lowest starts it. Taking the first
// to arrive as the start dropped event 7 below as a repeat (the JavaScript
// client's end-to-end test found it: a filtered wildcard lost an event).
func TestClient_AWildcardsFirstEventsWaitForEarlierOnes(t *testing.T) {
	s := newServer(t)
	c, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.*"}, GapWait: 80 * time.Millisecond})
	conn := s.next()
	conn.expect("subscribe")
	conn.subscribed("a.*")
	conn.event("a.b", 8)
	conn.event("a.b", 7)
	time.Sleep(30 * time.Millisecond)
	assert.Empty(t, rec.seqs("a.b"), "held while earlier events may come")
	rec.waitSeqs(t, "a.b", 7, 8)
	assert.Zero(t, c.Stats().Duplicates, "7 is not a repeat")
	conn.event("a.b", 9)
	rec.waitSeqs(t, "a.b", 7, 8, 9)
	conn.quiet(150 * time.Millisecond) // no resume: nothing was missing
}

// A client's event reaches the application with its verified publisher, a
// backend's without one, so the application can tell them apart.
func TestClient_HandsOnWhoPublishedAnEvent(t *testing.T) {
	s := newServer(t)
	_, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}})
	conn := s.next()
	conn.expect("subscribe")
	conn.send(map[string]any{"type": "subscribed", "id": "sub:a.b", "topics": []string{"a.b"}, "seqs": map[string]uint64{"a.b": 0}})
	conn.send(map[string]any{"type": "event", "topic": "a.b", "seq": 1, "id": "e1", "time": "2026-11-23T10:00:00Z", "from": "user:alice", "data": map[string]any{"type": "error"}})
	conn.event("a.b", 2)
	rec.waitSeqs(t, "a.b", 1, 2)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, "user:alice", rec.events[0].From)
	assert.JSONEq(t, `{"type":"error"}`, string(rec.events[0].Data), "the client's payload, for the application")
	assert.Empty(t, rec.events[1].From, "a backend's event")
}

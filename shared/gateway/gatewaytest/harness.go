// Package gatewaytest wires the real gateway routes and broadcast handler to
// a fresh DynamoDB Local table and an in-process @connections server, so
// tests drive them the way API Gateway and EventBridge would.
package gatewaytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/broadcast"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/fanout/connectionstest"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// Secret signs the harness's tokens.
const Secret = "gatewaytest-secret-0123456789abcdef"

// Tasks records scheduled tasks, and the failed ones brought back sooner.
type Tasks struct {
	mu      sync.Mutex
	tasks   []queue.Task
	delay   []time.Duration
	retried []Retried
}

// Send records t.
func (r *Tasks) Send(_ context.Context, t queue.Task, delay time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tasks = append(r.tasks, t)
	r.delay = append(r.delay, delay)
	return nil
}

// SendAll records ts.
func (r *Tasks) SendAll(ctx context.Context, ts []queue.Task) error {
	for _, t := range ts {
		_ = r.Send(ctx, t, 0)
	}
	return nil
}

// Retried is one failed task's message brought back sooner.
type Retried struct {
	ReceiptHandle string
	Delay         time.Duration
}

// Retry records that the message with receiptHandle was to come back
// after delay (broadcast.TaskRetrier).
func (r *Tasks) Retry(_ context.Context, receiptHandle string, delay time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retried = append(r.retried, Retried{ReceiptHandle: receiptHandle, Delay: delay})
	return nil
}

// TakeRetried returns and forgets the recorded retries.
func (r *Tasks) TakeRetried() []Retried {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.retried
	r.retried = nil
	return out
}

// Take returns and forgets the recorded tasks.
func (r *Tasks) Take() ([]queue.Task, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, d := r.tasks, r.delay
	r.tasks, r.delay = nil, nil
	return t, d
}

// Harness is a gateway under test.
type Harness struct {
	t        testing.TB
	Cfg      config.Config
	Store    *store.Store
	Conns    *connectionstest.Server
	Minter   auth.Minter
	Verifier *auth.Verifier
	Gateway  *gateway.Gateway
	// other is a second Gateway on the same store: Connect, Send and
	// Disconnect take turns between the two, as Lambda spreads one
	// connection's requests over instances, so nothing passes that keeps
	// state in process memory.
	other *gateway.Gateway
	turn  int
	// Limits holds the gateways' EMF lines: one per abuse-limit refusal.
	Limits    MetricLines
	Broadcast *broadcast.Handler
	Tasks     *Tasks
	// Metrics holds the broadcast handler's EMF lines.
	Metrics MetricLines
	// Now is the clock every part reads, from StartUnix; tests move it.
	Now time.Time
	mu  sync.Mutex
	seq int
}

// StartUnix is the harness clock's first instant (2027-03-04 05:06:20
// UTC): fixed, and 20 s into a minute, so no test crosses a second's or a
// minute's edge by chance, as one starting at the wall time did in the
// last second of a minute. A test about an edge moves the clock to it.
const StartUnix = 1_804_136_780

// New builds a harness; opts adjust the configuration first.
func New(t testing.TB, opts ...func(*config.Config)) *Harness {
	t.Helper()
	env := map[string]string{config.EnvTable: "set-below", config.EnvJWTSecret: Secret, config.EnvStage: "test"}
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(&cfg)
	}
	h := &Harness{t: t, Cfg: cfg, Tasks: &Tasks{}, Now: time.Unix(StartUnix, 0)}
	now := func() time.Time { h.mu.Lock(); defer h.mu.Unlock(); return h.Now }
	h.Store = storetest.New(t).WithClock(now)
	h.Store.Bucketing.SplitAt = cfg.BucketSplitAt
	h.Cfg.Table = h.Store.Table()
	h.Conns = connectionstest.New(t, cfg.Stage)
	h.Minter = auth.Minter{Alg: "HS256", Key: []byte(Secret), Now: now, TicketLifetime: h.Cfg.TicketLifetime, MaxLifetime: h.Cfg.MaxTokenLifetime, Issuer: h.Cfg.JWTIssuer, Audience: h.Cfg.JWTAudience}
	h.Verifier, err = auth.NewVerifier(auth.VerifierConfig{
		Alg: "HS256", Secret: []byte(Secret), TicketLifetime: h.Cfg.TicketLifetime, MaxLifetime: h.Cfg.MaxTokenLifetime, Now: now,
		Issuer: h.Cfg.JWTIssuer, Audience: h.Cfg.JWTAudience,
	})
	if err != nil {
		t.Fatal(err)
	}
	client := h.Conns.Client()
	gd := gateway.Deps{Store: h.Store, Verifier: h.Verifier, Connections: client, Tasks: h.Tasks, Now: now, Metrics: &h.Limits}
	h.Gateway, h.other = gateway.New(h.Cfg, gd), gateway.New(h.Cfg, gd)
	sender := fanout.NewSender(client, fanout.Options{
		Workers: 16, Backoff: func(int) time.Duration { return 2 * time.Millisecond }, Settling: broadcast.Settling(h.Store, now),
	})
	h.Broadcast = broadcast.New(h.Cfg, broadcast.Deps{Store: h.Store, Sender: sender, Connections: client, Tasks: h.Tasks, Retrier: h.Tasks, Now: now, Metrics: &h.Metrics})
	return h
}

// Advance moves the clock.
func (h *Harness) Advance(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Now = h.Now.Add(d)
}

// Token mints a token for g.
func (h *Harness) Token(g auth.Grant) string {
	h.t.Helper()
	tok, err := h.Minter.Token(g)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// Ticket mints a single-use ticket for g.
func (h *Harness) Ticket(g auth.Grant) string {
	h.t.Helper()
	tok, err := h.Minter.Ticket(g)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func (h *Harness) request(id, route string) events.APIGatewayWebsocketProxyRequest {
	h.mu.Lock()
	h.seq++
	n := h.seq
	h.mu.Unlock()
	return events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: id, RouteKey: route, RequestID: fmt.Sprintf("req-%d", n), Stage: h.Cfg.Stage,
		Identity: events.APIGatewayRequestIdentity{SourceIP: "127.0.0.1"},
	}}
}

// Connect runs $connect with query parameters and headers.
func (h *Harness) Connect(id string, query, headers map[string]string) events.APIGatewayProxyResponse {
	h.t.Helper()
	req := h.request(id, "$connect")
	req.QueryStringParameters, req.Headers = query, headers
	resp, err := h.next().Connect(context.Background(), req)
	if err != nil {
		h.t.Fatalf("connect returned an error: %v", err)
	}
	return resp
}

// MustConnect connects with a token and fails the test on refusal.
func (h *Harness) MustConnect(id, token string, query map[string]string) {
	h.t.Helper()
	q := map[string]string{"token": token}
	for k, v := range query {
		q[k] = v
	}
	if resp := h.Connect(id, q, nil); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("connect %s: %d %s", id, resp.StatusCode, resp.Body)
	}
}

// next is the instance whose turn it is.
func (h *Harness) next() *gateway.Gateway {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.turn++
	if h.turn%2 == 0 {
		return h.other
	}
	return h.Gateway
}

// Send runs $default with body and returns every frame the client got
// because of it: the ones posted during the call, then the route response.
func (h *Harness) Send(id, body string) []string {
	h.t.Helper()
	before := len(h.Conns.Received(id))
	req := h.request(id, "$default")
	req.Body = body
	resp, err := h.next().Message(context.Background(), req)
	if err != nil {
		h.t.Fatalf("message returned an error: %v", err)
	}
	var out []string
	for _, f := range h.Conns.Received(id)[before:] {
		out = append(out, string(f))
	}
	if resp.Body != "" {
		out = append(out, resp.Body)
	}
	return out
}

// SendJSON sends v encoded as JSON.
func (h *Harness) SendJSON(id string, v any) []string {
	h.t.Helper()
	b, _ := json.Marshal(v)
	return h.Send(id, string(b))
}

// Disconnect runs $disconnect.
func (h *Harness) Disconnect(id string) {
	h.t.Helper()
	if _, err := h.next().Disconnect(context.Background(), h.request(id, "$disconnect")); err != nil {
		h.t.Fatal(err)
	}
}

// Publish delivers an EventBridge event with the given id and detail.
func (h *Harness) Publish(id string, detail any) error {
	b, ok := detail.([]byte)
	if !ok {
		if s, isStr := detail.(string); isStr {
			b = []byte(s)
		} else {
			b, _ = json.Marshal(detail)
		}
	}
	return h.Broadcast.HandleEvent(context.Background(), events.CloudWatchEvent{
		ID: id, Source: "test", DetailType: "wsgate.event", Time: h.Now, Detail: b,
	})
}

// Revoke delivers a wsgate.revoke event with the given detail.
func (h *Harness) Revoke(id string, detail any) error {
	b, ok := detail.([]byte)
	if !ok {
		b, _ = json.Marshal(detail)
	}
	return h.Broadcast.HandleEvent(context.Background(), events.CloudWatchEvent{
		ID: id, Source: "test", DetailType: publish.RevokeDetailType, Time: h.Now, Detail: b,
	})
}

// Received returns every frame posted to a connection, as strings.
func (h *Harness) Received(id string) []string {
	var out []string
	for _, f := range h.Conns.Received(id) {
		out = append(out, string(f))
	}
	return out
}

// RunTasks runs the recorded tasks through the broadcast handler.
func (h *Harness) RunTasks() {
	tasks, _ := h.Tasks.Take()
	var recs []events.SQSMessage
	for i, t := range tasks {
		b, _ := json.Marshal(t)
		recs = append(recs, events.SQSMessage{MessageId: fmt.Sprint(i), Body: string(b)})
	}
	if len(recs) > 0 {
		resp := h.Broadcast.HandleTasks(context.Background(), events.SQSEvent{Records: recs})
		if len(resp.BatchItemFailures) > 0 {
			h.t.Fatalf("tasks failed: %+v", resp.BatchItemFailures)
		}
	}
}

// MetricLines collects EMF lines.
type MetricLines struct {
	mu    sync.Mutex
	lines []map[string]any
}

// Write records one EMF line.
func (m *MetricLines) Write(b []byte) (int, error) {
	var line map[string]any
	if err := json.Unmarshal(b, &line); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lines = append(m.lines, line)
	return len(b), nil
}

// Sum adds a metric over every line.
func (m *MetricLines) Sum(name string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum float64
	for _, l := range m.lines {
		v, _ := l[name].(float64)
		sum += v
	}
	return sum
}

// Last returns the value of a metric in the latest line (0 when absent).
func (m *MetricLines) Last(name string) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.lines) == 0 {
		return 0
	}
	v, _ := m.lines[len(m.lines)-1][name].(float64)
	return v
}

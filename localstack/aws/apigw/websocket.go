// Package apigw emulates an API Gateway WebSocket API on one machine: the
// client endpoint (handshake through the $connect function, frames to
// $default, route responses back, $disconnect on every close) and the
// @connections management API the functions post through. The functions
// receive the same events.APIGatewayWebsocketProxyRequest AWS sends.
//
// It is as harsh as API Gateway where a function could come to rely on
// something AWS does not promise: one connection's frames are invoked
// concurrently and complete in any order (Options.SerialFrames restores
// the old one-at-a-time order), a new connection id is gone to
// @connections until $connect has returned and Options.ConnectLag has
// passed, in-flight invocations outlive the connection, and $disconnect is
// not ordered after them.
package apigw

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mathrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
)

// Invoker runs a function synchronously.
type Invoker interface {
	Invoke(ctx context.Context, name string, payload []byte) ([]byte, error)
}

// Routes name the function behind each route.
type Routes struct {
	Connect, Disconnect, Default string
	// DisconnectQueue, when set, integrates $disconnect with SQS instead
	// of invoking Disconnect (the stack's integration).
	DisconnectQueue *QueueIntegration
}

// Options configure the gateway. Zero values take API Gateway's limits.
type Options struct {
	APIID      string
	Stage      string
	Region     string
	DomainName string
	Routes     Routes
	Invoker    Invoker
	// IdleTimeout closes a connection the client has sent nothing on for
	// this long (API Gateway: 10 minutes); MaxLifetime closes every
	// connection at this age (2 hours).
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// MaxFrameBytes (32 KB) and MaxMessageBytes (128 KB) are API Gateway's
	// limits for client frames and messages; over either, close 1009.
	MaxFrameBytes   int64
	MaxMessageBytes int64
	// SendQueue bounds the frames waiting to be written to one client;
	// beyond it PostToConnection answers 429, as API Gateway does for a
	// client whose buffer is full.
	SendQueue int
	// IntegrationTimeout bounds each route invocation (29 s on AWS).
	IntegrationTimeout time.Duration
	// IDPrefix starts every connection id, so a gateway split across
	// processes can route @connections calls to the one holding it.
	IDPrefix string
	// SerialFrames invokes $default for one connection's frames one at a
	// time, in arrival order. By default (false) every frame is invoked at
	// once, as API Gateway does: frames of one connection run concurrently
	// and their invocations finish in any order.
	SerialFrames bool
	// MaxFramesInFlight bounds one connection's concurrent $default
	// invocations; at the bound the gateway stops reading that connection
	// until one returns. AWS has no such bound: this only keeps a flooding
	// client from piling up goroutines on one machine. 0 means
	// DefaultMaxFramesInFlight; negative means no bound.
	MaxFramesInFlight int
	// FrameJitter delays each $default invocation by a random 0..FrameJitter,
	// so tests see frames of one connection complete out of order. 0: none.
	FrameJitter time.Duration
	// ConnectLag is how long after $connect returns the connection id stays
	// unknown to @connections (POST, GET and DELETE answer 410, as API
	// Gateway does while it registers a new connection). Frames the client
	// sends meanwhile are routed, and their route responses delivered. 0:
	// usable once the upgrade completes on the gateway's side (the client
	// may read its 101 a moment before).
	ConnectLag time.Duration
	Log        *slog.Logger
}

// DefaultMaxFramesInFlight is MaxFramesInFlight's zero value: generous
// enough that no honest client meets it.
const DefaultMaxFramesInFlight = 1024

// Gateway is the local WebSocket API.
type Gateway struct {
	opts Options
	log  *slog.Logger

	mu    sync.RWMutex
	conns map[string]*conn
	// pending holds the ids whose $connect is running or whose upgrade is
	// not done: known to the gateway, gone to @connections.
	pending map[string]struct{}

	faults    atomic.Pointer[Faults]
	stats     Stats
	sinks     sinks
	sweepOnce sync.Once
	stop      chan struct{} // closed by Close
	stopOnce  sync.Once
	// live counts connections until their $disconnect has run, and frame
	// invocations until they return.
	live sync.WaitGroup
}

// Stats counts what the management API did.
type Stats struct {
	// Gone counts POSTs answered 410, for any reason.
	Posts, Gone, Throttled, Injected atomic.Int64
	// SkippedDisconnects counts closes whose $disconnect a fault skipped.
	SkippedDisconnects atomic.Int64
	// Connected counts $connect invocations that accepted the handshake:
	// each stored a connection record.
	Connected atomic.Int64
	// GoneDuringConnect counts @connections calls (any method) answered 410
	// because the connection's $connect had not returned, its upgrade was
	// not done, or its ConnectLag had not passed.
	GoneDuringConnect atomic.Int64
	// DroppedResponses counts route responses not sent because the
	// connection had closed (or its send queue was full) when the $default
	// invocation returned.
	DroppedResponses atomic.Int64
}

// New returns a Gateway.
func New(opts Options) *Gateway {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = 10 * time.Minute
	}
	if opts.MaxLifetime == 0 {
		opts.MaxLifetime = 2 * time.Hour
	}
	if opts.MaxFrameBytes == 0 {
		opts.MaxFrameBytes = 32 * 1024
	}
	if opts.MaxMessageBytes == 0 {
		opts.MaxMessageBytes = 128 * 1024
	}
	if opts.SendQueue == 0 {
		opts.SendQueue = 256
	}
	if opts.IntegrationTimeout == 0 {
		opts.IntegrationTimeout = 29 * time.Second
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.APIID == "" {
		opts.APIID = "wsgatelocl"
	}
	if opts.MaxFramesInFlight == 0 {
		opts.MaxFramesInFlight = DefaultMaxFramesInFlight
	}
	g := &Gateway{
		opts: opts, log: opts.Log, conns: map[string]*conn{}, pending: map[string]struct{}{},
		stop: make(chan struct{}),
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.faults.Store(&Faults{})
	return g
}

// Stats returns the gateway's counters.
func (g *Gateway) Stats() *Stats { return &g.stats }

// Count is the number of open connections.
func (g *Gateway) Count() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.conns)
}

// conn is one client connection.
type conn struct {
	id          string
	ws          *websocket.Conn
	sniff       *frameSniffer
	connectedAt time.Time
	sourceIP    string
	userAgent   string
	readyAt     time.Time // @connections answers 410 before this
	out         chan frame
	slots       chan struct{} // one per $default invocation in flight; nil: unbounded
	done        chan struct{}
	closeOnce   sync.Once
	crashed     atomic.Bool // cut by Crash: no $disconnect
	// why the server closed it, for $disconnect
	mu          sync.Mutex
	closeCode   websocket.StatusCode
	closeReason string
}

// frame is a message to write, or (closeCode set) the instruction to close
// once everything queued before it is written.
type frame struct {
	data        []byte
	bin         bool
	closeCode   websocket.StatusCode
	closeReason string
}

// close ends the connection once, recording why.
func (c *conn) close(code websocket.StatusCode, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closeCode, c.closeReason = code, reason
		c.mu.Unlock()
		close(c.done)
		go func() { _ = c.ws.Close(code, reason) }()
	})
}

func (c *conn) serverClose() (websocket.StatusCode, string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeReason, c.closeCode != 0
}

// ServeHTTP accepts WebSocket clients at / or /{stage}.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := strings.Trim(r.URL.Path, "/"); p != "" && p != g.opts.Stage {
		http.NotFound(w, r)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUpgradeRequired)
		fmt.Fprintf(w, "wsgate local gateway: connect a WebSocket client to ws://%s/ (the console is at /console)\n", r.Host)
		return
	}
	g.live.Add(1)
	defer g.live.Done()
	id := newConnectionID(g.opts.IDPrefix)
	now := time.Now()
	sourceIP, _, _ := net.SplitHostPort(r.RemoteAddr)
	log := g.log.With("connection_id", id)

	// Until the upgrade is done the id is known but not connected: a post
	// racing $connect is answered 410, as on AWS.
	g.setPending(id, true)
	defer g.setPending(id, false)
	resp, ok := g.connect(w, r, id, now, sourceIP, log)
	if !ok {
		return
	}
	readyAt := time.Now().Add(g.opts.ConnectLag)
	var protocols []string
	if p := headerValue(resp.Headers, resp.MultiValueHeaders, "Sec-WebSocket-Protocol"); p != "" {
		protocols = []string{p}
	}
	sw := &sniffingWriter{ResponseWriter: w, maxFrame: g.opts.MaxFrameBytes}
	ws, err := websocket.Accept(sw, r, &websocket.AcceptOptions{
		Subprotocols:       protocols,
		InsecureSkipVerify: true, // API Gateway does not check Origin
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		log.Warn("upgrade failed after $connect", "error", err.Error())
		g.disconnect(id, now, sourceIP, r.UserAgent(), int(websocket.StatusAbnormalClosure), "Upgrade failed")
		return
	}
	ws.SetReadLimit(g.opts.MaxMessageBytes)
	c := &conn{
		id: id, ws: ws, sniff: sw.sniffer, connectedAt: now, sourceIP: sourceIP, userAgent: r.UserAgent(),
		readyAt: readyAt, out: make(chan frame, g.opts.SendQueue), done: make(chan struct{}),
	}
	if g.opts.MaxFramesInFlight > 0 && !g.opts.SerialFrames {
		c.slots = make(chan struct{}, g.opts.MaxFramesInFlight)
	}
	g.mu.Lock()
	delete(g.pending, id)
	g.conns[id] = c
	g.mu.Unlock()
	log.Debug("connected")
	g.serve(c, log)
}

// connect invokes $connect with the handshake's headers and query; false
// when it refused or failed, after answering the handshake with its status.
func (g *Gateway) connect(w http.ResponseWriter, r *http.Request, id string, now time.Time, sourceIP string, log *slog.Logger) (events.APIGatewayProxyResponse, bool) {
	req := g.baseRequest(id, "$connect", "CONNECT", now, sourceIP, r.UserAgent())
	req.Headers, req.MultiValueHeaders = connectHeaders(r, sourceIP)
	req.QueryStringParameters, req.MultiValueQueryStringParameters = flattenQuery(r)
	resp, err := g.invoke(r.Context(), g.opts.Routes.Connect, req)
	if err != nil {
		log.Warn("$connect failed", "error", err.Error())
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"message": "Internal server error"}`))
		return resp, false
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		log.Info("handshake refused by $connect", "status", resp.StatusCode)
		// The function's body passes through, under its own Content-Type,
		// else API Gateway's default for a proxy response (wsgate's
		// $connect sends {"message": reason} as JSON).
		ct := headerValue(resp.Headers, resp.MultiValueHeaders, "Content-Type")
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write([]byte(resp.Body))
		return resp, false
	}
	g.stats.Connected.Add(1)
	return resp, true
}

func (g *Gateway) setPending(id string, on bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if on {
		g.pending[id] = struct{}{}
	} else {
		delete(g.pending, id)
	}
}

// lookup finds a connection for @connections; connecting is true when the
// id exists but is not usable yet ($connect running, or within ConnectLag).
func (g *Gateway) lookup(id string) (c *conn, connecting bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if _, ok := g.pending[id]; ok {
		return nil, true
	}
	c = g.conns[id]
	if c != nil && time.Now().Before(c.readyAt) {
		return nil, true
	}
	return c, false
}

// serve runs a connection until it closes, then invokes $disconnect.
func (g *Gateway) serve(c *conn, log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go g.writeLoop(ctx, c)
	g.sweepOnce.Do(func() { go g.sweep() })

	code, reason := g.readLoop(ctx, c, log)

	g.mu.Lock()
	delete(g.conns, c.id)
	g.mu.Unlock()
	if sc, sr, ok := c.serverClose(); ok {
		code, reason = int(sc), sr
	}
	c.close(websocket.StatusNormalClosure, "")
	if c.crashed.Load() {
		return
	}
	g.disconnect(c.id, c.connectedAt, c.sourceIP, c.userAgent, code, reason)
}

func (g *Gateway) readLoop(ctx context.Context, c *conn, log *slog.Logger) (int, string) {
	for {
		typ, data, err := c.ws.Read(ctx)
		if err != nil {
			if s := websocket.CloseStatus(err); s != -1 {
				return int(s), "Client-side close frame status code"
			}
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return int(ce.Code), ce.Reason
			}
			if strings.Contains(err.Error(), "read limited") {
				c.close(websocket.StatusMessageTooBig, "Message too big")
				return int(websocket.StatusMessageTooBig), "Message too big"
			}
			return int(websocket.StatusAbnormalClosure), "Going away"
		}
		if tooBig, _ := c.sniff.state(); tooBig {
			c.close(websocket.StatusMessageTooBig, "Frame too big")
			return int(websocket.StatusMessageTooBig), "Frame too big"
		}
		if typ == websocket.MessageBinary {
			c.close(websocket.StatusUnsupportedData, "Binary frames are not supported")
			return int(websocket.StatusUnsupportedData), "Binary frames are not supported"
		}
		if !utf8.Valid(data) {
			// RFC 6455 section 8.1: a text message that is not UTF-8
			// fails the connection with 1007; API Gateway closes it too,
			// and $default never sees it.
			c.close(websocket.StatusInvalidFramePayloadData, "Invalid UTF-8 in a text message")
			return int(websocket.StatusInvalidFramePayloadData), "Invalid UTF-8 in a text message"
		}
		if !g.dispatch(c, log, data) {
			return int(websocket.StatusAbnormalClosure), "Going away"
		}
	}
}

// dispatch routes one frame: inline under SerialFrames, else on its own
// goroutine, as API Gateway invokes the integration for every frame
// independently. It waits for a slot when MaxFramesInFlight are running;
// false if the connection closed meanwhile. The invocation outlives the
// connection, as on AWS; only its route response is dropped.
func (g *Gateway) dispatch(c *conn, log *slog.Logger, data []byte) bool {
	if g.opts.SerialFrames {
		g.route(c, log, data)
		return true
	}
	if c.slots != nil {
		select {
		case c.slots <- struct{}{}:
		case <-c.done:
			return false
		}
	}
	g.live.Add(1) // the connection's own count keeps live above zero here
	go func() {
		defer g.live.Done()
		if c.slots != nil {
			defer func() { <-c.slots }()
		}
		g.route(c, log, data)
	}()
	return true
}

// route sends one client message to $default and its route response back.
func (g *Gateway) route(c *conn, log *slog.Logger, data []byte) {
	if j := g.opts.FrameJitter; j > 0 {
		time.Sleep(mathrand.N(j))
	}
	req := g.baseRequest(c.id, "$default", "MESSAGE", c.connectedAt, c.sourceIP, c.userAgent)
	req.RequestContext.MessageID = newID()
	req.Body = string(data)
	resp, err := g.invoke(context.Background(), g.opts.Routes.Default, req)
	if err != nil {
		log.Warn("$default failed", "error", err.Error())
		body, _ := json.Marshal(map[string]string{"message": "Internal server error", "connectionId": c.id, "requestId": req.RequestContext.RequestID})
		g.respond(c, body)
		return
	}
	if resp.Body != "" {
		g.respond(c, []byte(resp.Body))
	}
}

// respond queues a route response, counting it when it cannot be sent.
func (g *Gateway) respond(c *conn, body []byte) {
	if !g.enqueue(c, body) {
		g.stats.DroppedResponses.Add(1)
	}
}

// enqueue queues a message for the client; false when the connection has
// closed or its queue is full.
func (g *Gateway) enqueue(c *conn, data []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- frame{data: data, bin: !utf8.Valid(data)}:
		return true
	case <-c.done:
		return false
	default:
		return false
	}
}

func (g *Gateway) writeLoop(ctx context.Context, c *conn) {
	for {
		select {
		case <-c.done:
			return
		case f := <-c.out:
			if f.closeCode != 0 {
				c.close(f.closeCode, f.closeReason)
				return
			}
			typ := websocket.MessageText
			if f.bin {
				typ = websocket.MessageBinary
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := writeMessage(wctx, c.ws, typ, f.data, g.opts.MaxFrameBytes)
			cancel()
			if err != nil {
				c.close(websocket.StatusGoingAway, "Going away")
				return
			}
		}
	}
}

// writeMessage writes one message, split into frames of at most maxFrame
// bytes as API Gateway splits what @connections posts (its frame quota is
// 32 KB): clients see continuation frames for anything larger.
func writeMessage(ctx context.Context, ws *websocket.Conn, typ websocket.MessageType, data []byte, maxFrame int64) error {
	if int64(len(data)) <= maxFrame {
		return ws.Write(ctx, typ, data)
	}
	w, err := ws.Writer(ctx, typ)
	if err != nil {
		return err
	}
	for len(data) > 0 {
		n := min(int64(len(data)), maxFrame)
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return w.Close()
}

// closeAfterQueued closes the connection once the frames already queued for
// it are written, as DeleteConnection after PostToConnection does on AWS.
func (g *Gateway) closeAfterQueued(c *conn, code websocket.StatusCode, reason string) {
	select {
	case c.out <- frame{closeCode: code, closeReason: reason}:
	default:
		c.close(code, reason)
	}
}

// sweep closes idle and over-age connections, checking every connection
// on one ticker (a ticker per connection costs tens of thousands of
// wake-ups a second at benchmark sizes).
func (g *Gateway) sweep() {
	t := time.NewTicker(max(min(g.opts.IdleTimeout/4, g.opts.MaxLifetime/4, time.Second), time.Millisecond))
	defer t.Stop()
	for {
		var now time.Time
		select {
		case <-g.stop:
			return
		case now = <-t.C:
		}
		g.mu.RLock()
		var expired []*conn
		var why []string
		for _, c := range g.conns {
			_, last := c.sniff.state()
			switch {
			case now.Sub(c.connectedAt) >= g.opts.MaxLifetime:
				expired, why = append(expired, c), append(why, "Connection Duration Timeout")
			case now.Sub(last) >= g.opts.IdleTimeout:
				expired, why = append(expired, c), append(why, "Connection Idle Timeout")
			}
		}
		g.mu.RUnlock()
		for i, c := range expired {
			c.close(websocket.StatusGoingAway, why[i])
		}
	}
}

func (g *Gateway) disconnect(id string, connectedAt time.Time, sourceIP, ua string, code int, reason string) {
	if f := g.faults.Load(); f.SkipDisconnectRate > 0 && mathrand.Float64() < f.SkipDisconnectRate {
		g.stats.SkippedDisconnects.Add(1)
		g.log.Info("$disconnect skipped (injected fault)", "connection_id", id)
		return
	}
	req := g.baseRequest(id, "$disconnect", "DISCONNECT", connectedAt, sourceIP, ua)
	req.Headers = map[string]string{"Host": g.opts.DomainName, "x-api-key": "", "x-restapi": ""}
	req.RequestContext.DisconnectStatusCode = int64(code)
	req.RequestContext.DisconnectReason = &reason
	if qi := g.opts.Routes.DisconnectQueue; qi != nil {
		ctx, cancel := context.WithTimeout(context.Background(), g.opts.IntegrationTimeout)
		defer cancel()
		if err := qi.send(ctx, req); err != nil {
			g.log.Warn("$disconnect: the queue integration failed; the connection's records stay until a post meets its 410 or their TTL", "connection_id", id, "error", err.Error())
		}
		return
	}
	if _, err := g.invoke(context.Background(), g.opts.Routes.Disconnect, req); err != nil {
		g.log.Warn("$disconnect failed", "connection_id", id, "error", err.Error())
	}
}

// CloseAll closes every connection (going away) and waits, at most until
// ctx ends, for their $disconnect invocations, as a stage deletion would.
// Handshakes in progress finish first.
func (g *Gateway) CloseAll(ctx context.Context) {
	conns := g.snapshot()
	for _, c := range conns {
		c.close(websocket.StatusGoingAway, "Going away")
	}
	done := make(chan struct{})
	go func() { g.live.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
		return
	case <-time.After(closeGrace):
	}
	// Clients that did not answer the close frame are cut off.
	for _, c := range conns {
		_ = c.ws.CloseNow()
	}
	select {
	case <-ctx.Done():
	case <-done:
	}
}

// Crash cuts every connection at once, with no close frame and no
// $disconnect, as a gateway process dying would; it returns how many.
func (g *Gateway) Crash() int {
	conns := g.snapshot()
	for _, c := range conns {
		c.crashed.Store(true)
		_ = c.ws.CloseNow()
	}
	return len(conns)
}

// Drop cuts every connection without a close frame, as a network failure
// does: the clients see an abnormal closure (1006), and $disconnect runs.
func (g *Gateway) Drop() int {
	conns := g.snapshot()
	for _, c := range conns {
		_ = c.ws.CloseNow()
	}
	return len(conns)
}

// snapshot is the open connections.
func (g *Gateway) snapshot() []*conn {
	g.mu.RLock()
	defer g.mu.RUnlock()
	conns := make([]*conn, 0, len(g.conns))
	for _, c := range g.conns {
		conns = append(conns, c)
	}
	return conns
}

// Close stops the gateway's own goroutines; call it after CloseAll.
func (g *Gateway) Close() { g.stopOnce.Do(func() { close(g.stop) }) }

// closeGrace is how long CloseAll waits for clients to complete the close
// handshake before cutting them off.
const closeGrace = 2 * time.Second

func (g *Gateway) invoke(ctx context.Context, fn string, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, g.opts.IntegrationTimeout)
	defer cancel()
	payload, err := json.Marshal(req)
	if err != nil {
		return events.APIGatewayProxyResponse{}, err
	}
	out, err := g.opts.Invoker.Invoke(ctx, fn, payload)
	if err != nil {
		return events.APIGatewayProxyResponse{}, err
	}
	var resp events.APIGatewayProxyResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return events.APIGatewayProxyResponse{}, fmt.Errorf("%s returned a response that is not a proxy response: %w", fn, err)
	}
	if resp.StatusCode == 0 {
		resp.StatusCode = http.StatusOK
	}
	return resp, nil
}

func (g *Gateway) baseRequest(id, route, eventType string, connectedAt time.Time, sourceIP, ua string) events.APIGatewayWebsocketProxyRequest {
	now := time.Now()
	return events.APIGatewayWebsocketProxyRequest{
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{
			RouteKey:          route,
			EventType:         eventType,
			ExtendedRequestID: newID(),
			RequestTime:       now.UTC().Format("02/Jan/2006:15:04:05 -0700"),
			MessageDirection:  "IN",
			Stage:             g.opts.Stage,
			ConnectedAt:       connectedAt.UnixMilli(),
			RequestTimeEpoch:  now.UnixMilli(),
			Identity:          events.APIGatewayRequestIdentity{SourceIP: sourceIP, UserAgent: ua},
			RequestID:         newID(),
			DomainName:        g.opts.DomainName,
			ConnectionID:      id,
			APIID:             g.opts.APIID,
		},
	}
}

// connectHeaders are the handshake's headers as API Gateway passes them to
// $connect: every header the client sent (Origin included: API Gateway
// checks none), plus Host, which Go keeps out of r.Header, and the headers
// its load balancer adds.
func connectHeaders(r *http.Request, sourceIP string) (map[string]string, map[string][]string) {
	single, multi := flattenHeaders(r.Header)
	// Go canonicalises "Sec-WebSocket-Key" to "Sec-Websocket-Key"; API
	// Gateway passes the casing clients send.
	for k := range single {
		if rest, ok := strings.CutPrefix(k, "Sec-Websocket-"); ok {
			single["Sec-WebSocket-"+rest], multi["Sec-WebSocket-"+rest] = single[k], multi[k]
			delete(single, k)
			delete(multi, k)
		}
	}
	proto, port := "http", "80"
	if r.TLS != nil {
		proto, port = "https", "443"
	}
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(addr.String()); err == nil {
			port = p
		}
	}
	added := map[string]string{
		"Host":              r.Host,
		"X-Forwarded-For":   sourceIP,
		"X-Forwarded-Port":  port,
		"X-Forwarded-Proto": proto,
		"X-Amzn-Trace-Id":   "Root=1-" + fmt.Sprintf("%08x", time.Now().Unix()) + "-" + strings.ReplaceAll(newID(), "-", "")[:24],
	}
	for k, v := range added {
		single[k] = v
		multi[k] = []string{v}
	}
	return single, multi
}

func flattenHeaders(h http.Header) (map[string]string, map[string][]string) {
	single := make(map[string]string, len(h))
	multi := make(map[string][]string, len(h))
	for k, vs := range h {
		single[k] = strings.Join(vs, ",")
		multi[k] = append([]string(nil), vs...)
	}
	return single, multi
}

func flattenQuery(r *http.Request) (map[string]string, map[string][]string) {
	q := r.URL.Query()
	if len(q) == 0 {
		return nil, nil
	}
	single := make(map[string]string, len(q))
	for k, vs := range q {
		single[k] = vs[len(vs)-1]
	}
	return single, q
}

func headerValue(single map[string]string, multi map[string][]string, name string) string {
	for k, vs := range multi {
		if strings.EqualFold(k, name) && len(vs) > 0 {
			return vs[0]
		}
	}
	for k, v := range single {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// newConnectionID returns an id shaped like API Gateway's: 15 characters
// (the prefix first) and a trailing '='.
func newConnectionID(prefix string) string {
	b := []byte(prefix)
	for len(b) < 15 {
		n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(idAlphabet))))
		b = append(b, idAlphabet[n.Int64()])
	}
	return string(b) + "="
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

package apigw

import (
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Faults make the gateway behave like a busy AWS account, for benchmarks
// and fault tests: every @connections POST waits Latency ± Jitter, and a
// ThrottleRate / ErrorRate share of them answer 429 / 500 without
// delivering; a SkipDisconnectRate share of closed connections get no
// $disconnect (API Gateway invokes it on a best-effort basis).
type Faults struct {
	Latency            time.Duration `json:"latency"`
	Jitter             time.Duration `json:"jitter"`
	ThrottleRate       float64       `json:"throttle_rate"`
	ErrorRate          float64       `json:"error_rate"`
	SkipDisconnectRate float64       `json:"skip_disconnect_rate"`
}

// SetFaults replaces the injected faults.
func (g *Gateway) SetFaults(f Faults) { g.faults.Store(&f) }

// CurrentFaults returns the injected faults.
func (g *Gateway) CurrentFaults() Faults { return *g.faults.Load() }

// ManagementPath reports whether a request is for the @connections API.
func (g *Gateway) ManagementPath(r *http.Request) bool {
	return strings.HasPrefix(r.URL.EscapedPath(), "/"+g.opts.Stage+"/@connections/")
}

// ServeManagement serves POST, GET and DELETE /{stage}/@connections/{id}.
// A connection whose $connect has not returned, or returned less than
// ConnectLag ago, is gone to all three, as on AWS.
func (g *Gateway) ServeManagement(w http.ResponseWriter, r *http.Request) {
	prefix := "/" + g.opts.Stage + "/@connections/"
	raw := strings.TrimPrefix(r.URL.EscapedPath(), prefix)
	id, err := url.PathUnescape(raw)
	if err != nil || id == "" || strings.Contains(id, "/") {
		apiError(w, http.StatusNotFound, "NotFoundException", "Not Found")
		return
	}
	if _, ok := g.sink(id); ok {
		g.sinkRequest(w, r, id)
		return
	}
	switch r.Method {
	case http.MethodPost:
		g.postConnection(w, r, id)
	case http.MethodGet:
		if c := g.usable(w, id); c != nil {
			getConnection(w, c)
		}
	case http.MethodDelete:
		if c := g.usable(w, id); c != nil {
			g.closeAfterQueued(c, websocket.StatusNormalClosure, "Connection closed by the server")
			w.WriteHeader(http.StatusNoContent)
		}
	default:
		apiError(w, http.StatusMethodNotAllowed, "MethodNotAllowedException", "use POST, GET or DELETE")
	}
}

// usable returns the connection, or answers 410 and returns nil.
func (g *Gateway) usable(w http.ResponseWriter, id string) *conn {
	c, connecting := g.lookup(id)
	if connecting {
		g.stats.GoneDuringConnect.Add(1)
	}
	if c == nil {
		apiError(w, http.StatusGone, "GoneException", "")
	}
	return c
}

// postConnection is PostToConnection: the body is queued as one message.
func (g *Gateway) postConnection(w http.ResponseWriter, r *http.Request, id string) {
	body, ok := g.readPost(w, r)
	if !ok {
		return
	}
	// Looked up after the injected latency: the post lands when it lands.
	c := g.usable(w, id)
	if c == nil {
		g.stats.Gone.Add(1)
		return
	}
	if !g.enqueue(c, body) {
		select {
		case <-c.done:
			g.stats.Gone.Add(1)
			apiError(w, http.StatusGone, "GoneException", "")
		default:
			g.stats.Throttled.Add(1)
			apiError(w, http.StatusTooManyRequests, "LimitExceededException", "the client's buffer is full")
		}
		return
	}
	w.WriteHeader(http.StatusOK)
}

// readPost counts a POST, reads its body as PostToConnection does (at most
// MaxMessageBytes) and applies the injected faults; false when it answered
// the request.
func (g *Gateway) readPost(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	g.stats.Posts.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, g.opts.MaxMessageBytes+1))
	switch {
	case err != nil:
		apiError(w, http.StatusBadRequest, "BadRequestException", "could not read the body")
		return nil, false
	case int64(len(body)) > g.opts.MaxMessageBytes:
		apiError(w, http.StatusRequestEntityTooLarge, "PayloadTooLargeException", "Message too long")
		return nil, false
	case g.injectFault(w):
		return nil, false
	}
	return body, true
}

// getConnection is GetConnection's answer.
func getConnection(w http.ResponseWriter, c *conn) {
	_, last := c.sniff.state()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"connectedAt":  c.connectedAt.UTC().Format(time.RFC3339Nano),
		"lastActiveAt": last.UTC().Format(time.RFC3339Nano),
		"identity":     map[string]string{"sourceIp": c.sourceIP, "userAgent": c.userAgent},
	})
}

// injectFault applies the configured latency and failure rates; true when
// it answered the request.
func (g *Gateway) injectFault(w http.ResponseWriter) bool {
	f := g.faults.Load()
	if d := f.Latency; d > 0 {
		if f.Jitter > 0 {
			d += time.Duration(rand.Int64N(int64(2*f.Jitter))) - f.Jitter
		}
		time.Sleep(max(d, 0))
	}
	switch x := rand.Float64(); {
	case x < f.ThrottleRate:
		g.stats.Injected.Add(1)
		g.stats.Throttled.Add(1)
		apiError(w, http.StatusTooManyRequests, "LimitExceededException", "Rate exceeded")
		return true
	case x < f.ThrottleRate+f.ErrorRate:
		g.stats.Injected.Add(1)
		apiError(w, http.StatusInternalServerError, "InternalServerErrorException", "Internal server error")
		return true
	}
	return false
}

func apiError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", typ)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

package apigw

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Sinks are connections without a socket, for scale models: a benchmark
// registers thousands of connection ids that no client holds, and the
// @connections API treats them as open connections (POST is accepted and
// handed to the sink's observer instead of a socket; GET describes them;
// DELETE ends them), with the same injected latency and faults as posts
// to real connections. One machine cannot hold a million sockets; it can
// count a million posts.
type sinks struct {
	mu       sync.RWMutex
	conns    map[string]time.Time // id -> connectedAt
	observer atomic.Pointer[func(id string, body []byte)]
	posts    atomic.Int64
}

// AddSinks registers connection ids as open connections without a socket,
// connected at connectedAt. Their posts go to the function SetSinkObserver
// gave, if any, and are counted in SinkPosts.
func (g *Gateway) AddSinks(ids []string, connectedAt time.Time) {
	g.sinks.mu.Lock()
	defer g.sinks.mu.Unlock()
	if g.sinks.conns == nil {
		g.sinks.conns = make(map[string]time.Time, len(ids))
	}
	for _, id := range ids {
		g.sinks.conns[id] = connectedAt
	}
}

// RemoveSinks forgets sink connections: @connections answers 410 for them
// from now on.
func (g *Gateway) RemoveSinks(ids []string) {
	g.sinks.mu.Lock()
	defer g.sinks.mu.Unlock()
	for _, id := range ids {
		delete(g.sinks.conns, id)
	}
}

// SetSinkObserver sets the function every accepted post to a sink is
// handed to (it must be safe for concurrent use and quick: it runs in the
// request); nil stops observing.
func (g *Gateway) SetSinkObserver(fn func(id string, body []byte)) {
	if fn == nil {
		g.sinks.observer.Store(nil)
		return
	}
	g.sinks.observer.Store(&fn)
}

// SinkPosts is how many posts the sinks accepted.
func (g *Gateway) SinkPosts() int64 { return g.sinks.posts.Load() }

// sink reports whether id is a sink connection, and when it connected.
func (g *Gateway) sink(id string) (time.Time, bool) {
	g.sinks.mu.RLock()
	defer g.sinks.mu.RUnlock()
	at, ok := g.sinks.conns[id]
	return at, ok
}

// sinkRequest answers an @connections request for sink connection id:
// a POST is read, checked and faulted as a post to a real connection is,
// then handed to the observer.
func (g *Gateway) sinkRequest(w http.ResponseWriter, r *http.Request, id string) {
	switch r.Method {
	case http.MethodPost:
		body, ok := g.readPost(w, r)
		if !ok {
			return
		}
		if _, ok := g.sink(id); !ok { // removed while the post waited
			g.stats.Gone.Add(1)
			apiError(w, http.StatusGone, "GoneException", "")
			return
		}
		g.sinks.posts.Add(1)
		if fn := g.sinks.observer.Load(); fn != nil {
			(*fn)(id, body)
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		at, _ := g.sink(id)
		w.Header().Set("Content-Type", "application/json")
		ts := at.UTC().Format(time.RFC3339Nano)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"connectedAt": ts, "lastActiveAt": ts,
			"identity": map[string]string{"sourceIp": "127.0.0.1", "userAgent": "wsgate-sink"},
		})
	case http.MethodDelete:
		g.RemoveSinks([]string{id})
		w.WriteHeader(http.StatusNoContent)
	default:
		apiError(w, http.StatusMethodNotAllowed, "MethodNotAllowedException", "use POST, GET or DELETE")
	}
}

// Package console serves the web console: one static page that connects to
// a wsgate WebSocket endpoint (local or deployed), subscribes, shows events
// as they arrive and resumes after drops. On the local stack it also mints
// dev tokens and publishes test events through PutEvents. The page runs on
// the JavaScript client (clients/js), whose bundle static/wsgate-client.mjs
// is; a test of clients/js keeps it equal to a fresh build.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/publish"
)

//go:embed static
var static embed.FS

// Options are the local stack's extras; a nil field turns its feature off
// in the page.
type Options struct {
	// Token mints a dev token: GET with the query of /_wsgate/token.
	Token http.Handler
	// Publish sends one event through the local EventBridge bus.
	Publish func(ctx context.Context, d publish.Detail) (string, error)
	// Refused lists the last events the broadcast function refused, with
	// their id and reason (GET /console/api/refused).
	Refused func() []stack.Refusal
}

// maxPublish bounds a test event's body: EventBridge's entry limit.
const maxPublish = 256 << 10

// Handler serves the page under /console.
func Handler(o Options) http.Handler {
	files, _ := fs.Sub(static, "static")
	mux := http.NewServeMux()
	mux.Handle("GET /console/", http.StripPrefix("/console/", noCache(http.FileServerFS(files))))
	// Browsers ask for /favicon.ico whatever the page links: answer it with
	// the console's icon rather than a 404 in every page load's log.
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		icon, err := fs.ReadFile(files, "favicon.svg")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		_, _ = w.Write(icon)
	})
	mux.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/"+query(r), http.StatusFound)
	})
	mux.HandleFunc("GET /console/api/config", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"local": true, "token": o.Token != nil, "publish": o.Publish != nil, "refused": o.Refused != nil})
	})
	if o.Refused != nil {
		mux.HandleFunc("GET /console/api/refused", func(w http.ResponseWriter, r *http.Request) {
			list := o.Refused()
			if list == nil {
				list = []stack.Refusal{}
			}
			writeJSON(w, http.StatusOK, list)
		})
	}
	if o.Token != nil {
		mux.Handle("GET /console/api/token", o.Token)
	}
	if o.Publish != nil {
		mux.HandleFunc("POST /console/api/publish", func(w http.ResponseWriter, r *http.Request) {
			var d publish.Detail
			dec := json.NewDecoder(io.LimitReader(r.Body, maxPublish+1))
			if err := dec.Decode(&d); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "want the event's detail: {\"topic\":..., \"payload\":...}: " + err.Error()})
				return
			}
			b, _ := json.Marshal(d)
			if _, err := publish.Parse("console", time.Now(), b, false); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
				return
			}
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			id, err := o.Publish(ctx, d)
			var refused *publish.PublishError
			switch {
			case errors.As(err, &refused):
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			case err != nil:
				writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			default:
				writeJSON(w, http.StatusOK, map[string]string{"id": id})
			}
		})
	}
	return mux
}

func query(r *http.Request) string {
	if r.URL.RawQuery == "" {
		return ""
	}
	return "?" + r.URL.RawQuery
}

// noCache makes a reload pick up a rebuilt page.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		if strings.HasSuffix(r.URL.Path, ".js") {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ForStack is the console of a local stack: dev tokens signed with the
// stack's secret, and test events published to the stack's bus. Its API
// answers the page itself and this machine's programs only (see
// stack.DevAccess); the page stays reachable by any name.
func ForStack(s *stack.Stack) http.Handler {
	pub := s.Publisher("wsgate.console")
	h := Handler(Options{
		Token: DevTokens(auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}),
		Publish: func(ctx context.Context, d publish.Detail) (string, error) {
			ids, err := pub.Publish(ctx, d)
			if err != nil {
				return "", err
			}
			return ids[0], nil
		},
		Refused: s.Refused,
	})
	api := stack.DevAccess{
		Addrs:      []string{strings.TrimSuffix(strings.TrimPrefix(s.WebSocketURL, "ws://"), "/")},
		SameOrigin: true,
	}.Guard(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/console/api/") {
			api.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

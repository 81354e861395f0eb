// Package e2e runs @wsgate/client (clients/js) against the local stack, in
// Node and in headless Chromium: the same scenario (scenario.mjs) in both,
// through a small harness server that serves the page and the stack's
// controls (tickets, publishing through EventBridge, drops, a gateway
// restart). The client under test is the bundle the console serves, which
// a test of clients/js keeps equal to a fresh build of its sources.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/publish"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// bundle is the client as the console serves it.
const bundle = "../../../localstack/devtools/console/static/wsgate-client.mjs"

// harness serves the scenario's page and the stack's controls. Every
// control is a POST with a JSON body.
func harness(t *testing.T, s *stack.Stack) *httptest.Server {
	minter := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}
	pub := stacktest.Publisher(s)
	mux := http.NewServeMux()
	file := func(path, contentType string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			http.ServeFile(w, r, path)
		}
	}
	mux.HandleFunc("GET /{$}", file("index.html", "text/html; charset=utf-8"))
	mux.HandleFunc("GET /lib.js", file(bundle, "text/javascript"))
	mux.HandleFunc("GET /scenario.mjs", file("scenario.mjs", "text/javascript"))
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"ws": s.WebSocketURL}, nil)
	})
	// mint answers {"sub":...,"topics":[...]} with a token minted by f.
	mint := func(f func(auth.Grant) (string, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			var g struct {
				Sub     string   `json:"sub"`
				Topics  []string `json:"topics"`
				Publish []string `json:"publish"`
			}
			if err := json.NewDecoder(r.Body).Decode(&g); err != nil {
				reply(w, nil, err)
				return
			}
			tok, err := f(auth.Grant{Sub: g.Sub, Topics: g.Topics, Publish: g.Publish})
			reply(w, map[string]string{"token": tok}, err)
		}
	}
	mux.HandleFunc("POST /ticket", mint(minter.Ticket))
	mux.HandleFunc("POST /token", mint(minter.Token))
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Details []publish.Detail `json:"details"`
			Wait    bool             `json:"wait"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			reply(w, nil, err)
			return
		}
		ids, err := pub.Publish(r.Context(), req.Details...)
		if err == nil && req.Wait {
			err = stacktest.AwaitProcessed(s, ids, 20*time.Second)
		}
		reply(w, map[string]any{"ids": ids}, err)
	})
	mux.HandleFunc("POST /drop", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]int{"dropped": s.Gateway.Drop()}, nil)
	})
	mux.HandleFunc("POST /restart", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			DownMS int `json:"down_ms"`
		}
		err := json.NewDecoder(r.Body).Decode(&req)
		if err == nil {
			err = s.RestartWebSocket(time.Duration(req.DownMS) * time.Millisecond)
		}
		reply(w, map[string]bool{"restarted": err == nil}, err)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		v = map[string]string{"error": err.Error()}
	}
	_ = json.NewEncoder(w).Encode(v)
}

// need finds what a runner needs, or skips (fails in CI).
func need(t *testing.T, what string, ok bool) {
	if ok {
		return
	}
	msg := "needs " + what + " (make deps; .ci/run installs it)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func runScenario(t *testing.T, name string, args []string, env ...string) {
	node, err := exec.LookPath("node")
	need(t, "node", err == nil)
	_, err = os.Stat(bundle)
	require.NoError(t, err, "the client bundle the console serves")
	s := stacktest.Start(t)
	srv := harness(t, s)
	lib, err := filepath.Abs(bundle)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), append(env, "E2E_API="+srv.URL, "E2E_LIB="+lib)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	t.Logf("%s log:\n%s", name, stderr.String())
	require.NoError(t, err, "the %s scenario failed", name)
	t.Logf("%s figures: %s", name, strings.TrimSpace(string(out)))
	var figures map[string]any
	require.NoError(t, json.Unmarshal(out, &figures), "a JSON line of figures")
	require.Equal(t, []any{"invalid_token", "invalid_token", "ticket_used"}, figures["refusals"], "the refusals, typed")
}

// TestClientJS_InNode: tickets per connect, a wildcard with a filter, a
// drop and a gateway restart with every event once and in order, the
// async iterator, current state, a gap when history is off, and typed
// refusals of a bad token, a forged one and a reused ticket.
func TestClientJS_InNode(t *testing.T) {
	runScenario(t, "node", []string{"--experimental-websocket", "node.mjs"})
}

// TestClientJS_InHeadlessChromium runs the same scenario in a browser,
// where a refused handshake's status cannot be read.
func TestClientJS_InHeadlessChromium(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	_, err := os.Stat(chromium)
	need(t, fmt.Sprintf("Chromium at %s (apt-get install chromium; or set CHROMIUM)", chromium), err == nil)
	_, err = os.Stat("../../../node_modules/playwright-core")
	need(t, "node_modules/playwright-core", err == nil)
	runScenario(t, "browser", []string{"browser.mjs"}, "CHROMIUM="+chromium)
}

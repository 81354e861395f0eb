package console_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/localstack/devtools/console"
	"github.com/wsgate/wsgate/shared/auth"
)

type devRequest struct {
	method, host, path, origin, contentType string
	headers                                 map[string]string
}

func (d devRequest) serve(h http.Handler) *httptest.ResponseRecorder {
	method := d.method
	if method == "" {
		method = http.MethodGet
	}
	path := d.path
	if path == "" {
		path = "/_wsgate/health"
	}
	r := httptest.NewRequest(method, "http://x"+path, strings.NewReader("{}"))
	r.Host = d.host
	if d.origin != "" {
		r.Header.Set("Origin", d.origin)
	}
	if d.contentType != "" {
		r.Header.Set("Content-Type", d.contentType)
	}
	for k, v := range d.headers {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestDevAccess_RefusesForeignHostsOriginsAndNonJSONBodies(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	loopback := stack.DevAccess{Addrs: []string{"127.0.0.1:0", "127.0.0.1:4566"}, Origins: stack.ConsoleOrigins("127.0.0.1:4510")}.Guard(ok)
	allIfaces := stack.DevAccess{Addrs: []string{"0.0.0.0:4566"}}.Guard(ok)
	named := stack.DevAccess{Addrs: []string{"devbox.lan:4566", "192.168.1.5:4566"}}.Guard(ok)
	page := stack.DevAccess{Addrs: []string{"127.0.0.1:4510"}, SameOrigin: true}.Guard(ok)
	const console = "http://127.0.0.1:4510"
	json := "application/json"

	cases := []struct {
		name    string
		h       http.Handler
		req     devRequest
		status  int
		allowed string // Access-Control-Allow-Origin expected
	}{
		{"loopback address", loopback, devRequest{host: "127.0.0.1:4566"}, 200, ""},
		{"localhost, any case", loopback, devRequest{host: "LocalHost:4566"}, 200, ""},
		{"IPv6 loopback", loopback, devRequest{host: "[::1]:4566"}, 200, ""},
		{"DNS rebinding: a foreign name resolved to 127.0.0.1", loopback, devRequest{host: "evil.example:4566"}, 403, ""},
		{"foreign name without port", loopback, devRequest{host: "evil.example"}, 403, ""},
		{"loopback on another port", loopback, devRequest{host: "127.0.0.1:8080"}, 403, ""},
		{"another address of this machine, listener on loopback", loopback, devRequest{host: "192.168.1.5:4566"}, 403, ""},
		{"no Host", loopback, devRequest{host: ""}, 403, ""},
		{"listener on every interface: any IP address", allIfaces, devRequest{host: "192.168.1.5:4566"}, 200, ""},
		{"listener on every interface: still no foreign name", allIfaces, devRequest{host: "evil.example:4566"}, 403, ""},
		{"listener by name: that name", named, devRequest{host: "devbox.lan:4566"}, 200, ""},
		{"listener by name: its address", named, devRequest{host: "192.168.1.5:4566"}, 200, ""},
		{"listener by name: another address", named, devRequest{host: "192.168.1.6:4566"}, 403, ""},

		{"console origin gets CORS", loopback, devRequest{host: "127.0.0.1:4566", origin: console}, 200, console},
		{"console by name gets CORS", loopback, devRequest{host: "127.0.0.1:4566", origin: "http://localhost:4510"}, 200, "http://localhost:4510"},
		{"evil origin: refused, no CORS", loopback, devRequest{host: "127.0.0.1:4566", origin: "http://evil.example"}, 403, ""},
		{"opaque origin: refused", loopback, devRequest{host: "127.0.0.1:4566", origin: "null"}, 403, ""},
		{"preflight from the console", loopback, devRequest{method: http.MethodOptions, host: "127.0.0.1:4566", origin: console, headers: map[string]string{"Access-Control-Request-Method": "POST"}}, 204, console},
		{"preflight from elsewhere", loopback, devRequest{method: http.MethodOptions, host: "127.0.0.1:4566", origin: "http://evil.example", headers: map[string]string{"Access-Control-Request-Method": "POST"}}, 403, ""},
		{"page calling its own API", page, devRequest{method: http.MethodPost, host: "localhost:4510", origin: "http://localhost:4510", contentType: json}, 200, "http://localhost:4510"},
		{"page API from another origin", page, devRequest{method: http.MethodPost, host: "127.0.0.1:4510", origin: "http://localhost:4510", contentType: json}, 403, ""},

		{"POST text/plain (no preflight)", loopback, devRequest{method: http.MethodPost, host: "127.0.0.1:4566", contentType: "text/plain"}, 415, ""},
		{"POST form (no preflight)", loopback, devRequest{method: http.MethodPost, host: "127.0.0.1:4566", contentType: "application/x-www-form-urlencoded"}, 415, ""},
		{"PUT multipart (no preflight)", loopback, devRequest{method: http.MethodPut, host: "127.0.0.1:4566", contentType: "multipart/form-data; boundary=x"}, 415, ""},
		{"POST JSON", loopback, devRequest{method: http.MethodPost, host: "127.0.0.1:4566", contentType: "application/json; charset=utf-8"}, 200, ""},
		{"POST without Content-Type by a program", loopback, devRequest{method: http.MethodPost, host: "127.0.0.1:4566"}, 200, ""},
		{"POST without Content-Type by a browser (Origin)", loopback, devRequest{method: http.MethodPost, host: "127.0.0.1:4566", origin: console}, 415, console},
		{"POST without Content-Type by a browser (Sec-Fetch-Site)", loopback, devRequest{method: http.MethodPost, host: "127.0.0.1:4566", headers: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 415, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := c.req.serve(c.h)
			assert.Equal(t, c.status, w.Code, w.Body.String())
			assert.Equal(t, c.allowed, w.Header().Get("Access-Control-Allow-Origin"))
			assert.NotEqual(t, "*", w.Header().Get("Access-Control-Allow-Origin"))
			if w.Code >= 400 {
				assert.NotEmpty(t, strings.TrimSpace(w.Body.String()), "a refusal says why")
			}
		})
	}
}

func TestConsoleOrigins(t *testing.T) {
	assert.Equal(t, []string{"http://127.0.0.1:4510", "http://localhost:4510", "http://[::1]:4510"},
		stack.ConsoleOrigins("127.0.0.1:0", "127.0.0.1:4510"))
	assert.Equal(t, []string{"http://127.0.0.1:4510", "http://localhost:4510", "http://[::1]:4510"},
		stack.ConsoleOrigins("0.0.0.0:4510"), "an unspecified host names no page")
	assert.Contains(t, stack.ConsoleOrigins("devbox.lan:4510"), "http://devbox.lan:4510")
}

// TestDevEndpoints_AnswerThisMachineAndTheConsoleOnly drives both ports of
// a running stack: the AWS port's /_wsgate/* and the console's API.
func TestDevEndpoints_AnswerThisMachineAndTheConsoleOnly(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Console = console.ForStack
		o.DevTokens = console.DevTokens(auth.Minter{Alg: "HS256", Key: []byte(stack.DevSecret)})
	})
	aws := s.AWSEndpoint
	page := "http" + strings.TrimSuffix(strings.TrimPrefix(s.WebSocketURL, "ws"), "/")
	evilHost := "evil.example:" + aws[strings.LastIndexByte(aws, ':')+1:]
	do := func(method, url, host, origin, contentType, body string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		require.NoError(t, err)
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	const evil = "http://evil.example"
	json := "application/json"

	cases := []struct {
		name                                   string
		method, url, host, origin, ctype, body string
		status                                 int
		allowOrigin                            string
	}{
		{"health", "GET", aws + "/_wsgate/health", "", "", "", "", 200, ""},
		{"health, rebinding Host", "GET", aws + "/_wsgate/health", evilHost, "", "", "", 403, ""},
		{"token, rebinding Host", "GET", aws + "/_wsgate/token?sub=x", evilHost, "", "", "", 403, ""},
		{"token from an evil page", "GET", aws + "/_wsgate/token?sub=x", "", evil, "", "", 403, ""},
		{"token from the console", "GET", aws + "/_wsgate/token?sub=x", "", page, "", "", 200, page},
		{"faults preflight from an evil page", "OPTIONS", aws + "/_wsgate/faults", "", evil, "", "", 403, ""},
		{"faults text/plain", "POST", aws + "/_wsgate/faults", "", "", "text/plain", "{}", 415, ""},
		{"faults JSON", "POST", aws + "/_wsgate/faults", "", "", json, "{}", 200, ""},
		{"drop text/plain", "POST", aws + "/_wsgate/drop", "", "", "text/plain", "", 415, ""},
		{"drop from an evil page", "POST", aws + "/_wsgate/drop", "", evil, json, "", 403, ""},
		{"drop by a program", "POST", aws + "/_wsgate/drop", "", "", "", "", 200, ""},
		{"invoke text/plain", "POST", aws + "/_wsgate/invoke/nope", "", "", "text/plain", "{}", 415, ""},
		{"invoke by a program reaches the function host", "POST", aws + "/_wsgate/invoke/nope", "", "", "", "{}", 502, ""},
		{"nodes text/plain", "POST", aws + "/_wsgate/nodes", "", "", "text/plain", `{"prefix":"N9","management":"http://127.0.0.1:1"}`, 415, ""},
		{"nodes JSON", "POST", aws + "/_wsgate/nodes", "", "", json, `{"prefix":"N9","management":"http://127.0.0.1:1"}`, 204, ""},
		{"console token, rebinding Host", "GET", page + "/console/api/token?sub=x", "evil.example" + page[strings.LastIndexByte(page, ':'):], "", "", "", 403, ""},
		{"console token from an evil page", "GET", page + "/console/api/token?sub=x", "", evil, "", "", 403, ""},
		{"console token", "GET", page + "/console/api/token?sub=x", "", "", "", "", 200, ""},
		{"console publish text/plain", "POST", page + "/console/api/publish", "", "", "text/plain", `{"topic":"demo.x","payload":{}}`, 415, ""},
		{"console publish from an evil page", "POST", page + "/console/api/publish", "", evil, json, `{"topic":"demo.x","payload":{}}`, 403, ""},
		{"console publish from the page itself", "POST", page + "/console/api/publish", "", page, json, `{"topic":"demo.x","payload":{}}`, 200, page},
		{"the page itself answers any Host", "GET", page + "/console/", "devbox.lan" + page[strings.LastIndexByte(page, ':'):], "", "", "", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(c.method, c.url, c.host, c.origin, c.ctype, c.body)
			assert.Equal(t, c.status, resp.StatusCode, body)
			assert.Equal(t, c.allowOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
		})
	}
}

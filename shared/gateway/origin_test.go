package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/store"
)

func origins(t *testing.T, list ...string) []config.OriginPattern {
	t.Helper()
	var out []config.OriginPattern
	for _, s := range list {
		p, err := config.ParseOriginPattern(s)
		require.NoError(t, err, s)
		out = append(out, p)
	}
	return out
}

// A page on any site can open a WebSocket to the gateway, and the browser
// attaches the victim's cookie: only the Origin tells the pages apart.
func TestConnect_CrossSiteWebSocketHijackingIsRefused(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.TokenCookie = "wsgate_session"
		c.AllowedOrigins = origins(t, "https://*.example.com", "http://localhost:4510")
	})
	tok := h.Token(user)
	cookie := "theme=dark; wsgate_session=" + tok
	cases := []struct {
		name    string
		query   map[string]string
		headers map[string]string
		status  int
	}{
		{"cookie from an evil origin", nil, map[string]string{"Cookie": cookie, "Origin": "https://evil.example.net"}, http.StatusForbidden},
		{"cookie from an allowed wildcard origin", nil, map[string]string{"Cookie": cookie, "Origin": "https://app.example.com"}, http.StatusOK},
		{"cookie from a deeper subdomain", nil, map[string]string{"Cookie": cookie, "Origin": "https://a.b.example.com"}, http.StatusOK},
		{"cookie, header names in any case", nil, map[string]string{"cookie": cookie, "origin": "http://localhost:4510"}, http.StatusOK},
		{"cookie without Origin", nil, map[string]string{"Cookie": cookie}, http.StatusForbidden},
		{"cookie from the bare domain (* is one or more labels)", nil, map[string]string{"Cookie": cookie, "Origin": "https://example.com"}, http.StatusForbidden},
		{"cookie from a look-alike domain", nil, map[string]string{"Cookie": cookie, "Origin": "https://evilexample.com"}, http.StatusForbidden},
		{"cookie from the right host, wrong scheme", nil, map[string]string{"Cookie": cookie, "Origin": "http://app.example.com"}, http.StatusForbidden},
		{"cookie from the right host, wrong port", nil, map[string]string{"Cookie": cookie, "Origin": "https://app.example.com:8443"}, http.StatusForbidden},
		{"cookie from an opaque origin", nil, map[string]string{"Cookie": cookie, "Origin": "null"}, http.StatusForbidden},
		{"cookie with an allowed and an evil Origin", nil, map[string]string{"Cookie": cookie, "Origin": "https://app.example.com,https://evil.example.net"}, http.StatusForbidden},
		{"subprotocol token from an evil origin", nil, map[string]string{"Sec-WebSocket-Protocol": "bearer." + tok, "Origin": "https://evil.example.net"}, http.StatusForbidden},
		{"Authorization header from an evil origin", nil, map[string]string{"Authorization": "Bearer " + tok, "Origin": "https://evil.example.net"}, http.StatusForbidden},
		{"query token from an evil origin", map[string]string{"token": tok}, map[string]string{"Origin": "https://evil.example.net"}, http.StatusForbidden},
		{"no token (auth by message) from an evil origin", nil, map[string]string{"Origin": "https://evil.example.net"}, http.StatusForbidden},
		{"subprotocol token from an allowed origin", nil, map[string]string{"Sec-WebSocket-Protocol": "bearer." + tok, "Origin": "https://app.example.com"}, http.StatusOK},
		{"server client: query token, no Origin", map[string]string{"token": tok}, nil, http.StatusOK},
		{"server client: Authorization header, no Origin", nil, map[string]string{"Authorization": "Bearer " + tok}, http.StatusOK},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := fmt.Sprintf("origin-%d", i)
			resp := h.Connect(id, c.query, c.headers)
			require.Equal(t, c.status, resp.StatusCode, resp.Body)
			_, err := h.Store.GetConnection(context.Background(), id)
			if c.status != http.StatusOK {
				assert.ErrorIs(t, err, store.ErrNotFound, "a refused handshake stores nothing")
				var body struct{ Message string }
				require.NoError(t, json.Unmarshal([]byte(resp.Body), &body), "a JSON refusal: %s", resp.Body)
				assert.NotEmpty(t, body.Message, "it says why")
				return
			}
			assert.NoError(t, err)
		})
	}
}

func TestConnect_WithoutOriginListOnlyCookiesAreChecked(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) { c.TokenCookie = "wsgate_session" }) // unvalidated: Load refuses this
	tok := h.Token(user)
	evil := "https://evil.example.net"

	resp := h.Connect("no-list-query", map[string]string{"token": tok}, map[string]string{"Origin": evil})
	assert.Equal(t, http.StatusOK, resp.StatusCode, "no list: a browser with a token of its own is not checked")
	resp = h.Connect("no-list-cookie", nil, map[string]string{"Cookie": "wsgate_session=" + tok, "Origin": evil})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "no list: a cookie token is refused, never trusted")
	assert.Contains(t, resp.Body, config.EnvAllowedOrigins)
}

func TestConnect_OriginRefusalLogsOriginNotToken(t *testing.T) {
	h := gatewaytest.New(t, func(c *config.Config) {
		c.TokenCookie = "wsgate_session"
		c.AllowedOrigins = origins(t, "https://app.example.com")
	})
	var logs bytes.Buffer
	g := gateway.New(h.Cfg, gateway.Deps{Store: h.Store, Verifier: h.Verifier, Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	tok := h.Token(user)
	req := events.APIGatewayWebsocketProxyRequest{
		RequestContext: events.APIGatewayWebsocketProxyRequestContext{ConnectionID: "c-log", RequestID: "r-log", RouteKey: "$connect"},
		MultiValueHeaders: map[string][]string{
			"cookie": {"wsgate_session=" + tok},
			"ORIGIN": {"https://evil.example.net"},
		},
	}
	resp, err := g.Connect(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "multi-value headers are read too")
	line := logs.String()
	assert.Contains(t, line, `"connection_id":"c-log"`)
	assert.Contains(t, line, `"origin":"https://evil.example.net"`)
	assert.Contains(t, line, `"token_source":"cookie"`)
	assert.NotContains(t, line, tok)
}

func TestOriginPattern_Match(t *testing.T) {
	cases := []struct {
		pattern, origin string
		match           bool
	}{
		{"https://app.example.com", "https://app.example.com", true},
		{"https://app.example.com", "HTTPS://APP.EXAMPLE.COM", true},
		{"https://app.example.com", "https://app.example.com:443", false},
		{"https://app.example.com", "https://app.example.com/", false},
		{"https://app.example.com", "https://app.example.com.evil.net", false},
		{"https://*.example.com", "https://a.example.com", true},
		{"https://*.example.com", "https://a.b.example.com", true},
		{"https://*.example.com", "https://example.com", false},
		{"https://*.example.com", "https://.example.com", false},
		{"https://*.example.com", "https://a..example.com", false},
		{"https://*.example.com", "https://aexample.com", false},
		{"https://*.example.com", "https://a.example.com.evil.net", false},
		{"https://*.example.com", "https://a.example.com:8443", false},
		{"https://*.example.com", "http://a.example.com", false},
		{"https://*.example.com", "https://user@a.example.com", false},
		{"https://*.example.com:8443", "https://a.example.com:8443", true},
		{"http://localhost:4510", "http://localhost:4510", true},
		{"http://localhost:4510", "http://localhost:4511", false},
		{"http://[::1]:4510", "http://[::1]:4510", true},
		{"http://127.0.0.1:4510", "null", false},
		{"http://127.0.0.1:4510", "", false},
	}
	for _, c := range cases {
		p, err := config.ParseOriginPattern(c.pattern)
		require.NoError(t, err, c.pattern)
		assert.Equal(t, c.match, p.Match(c.origin), "%s ~ %q", c.pattern, c.origin)
	}
}

func TestLoad_AllowedOrigins(t *testing.T) {
	base := map[string]string{config.EnvTable: "t", config.EnvJWTSecret: "s"}
	load := func(extra map[string]string) (config.Config, error) {
		return config.Load(func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return base[k]
		})
	}

	_, err := load(map[string]string{config.EnvTokenCookie: "wsgate_session"})
	require.Error(t, err, "a token cookie without an origin list refuses to start")
	assert.Contains(t, err.Error(), config.EnvAllowedOrigins)
	assert.Contains(t, err.Error(), config.EnvTokenCookie)

	c, err := load(map[string]string{config.EnvTokenCookie: "wsgate_session", config.EnvAllowedOrigins: " https://*.Example.com, http://localhost:4510 ,"})
	require.NoError(t, err)
	require.Len(t, c.AllowedOrigins, 2)
	assert.Equal(t, "https://*.example.com", c.AllowedOrigins[0].String())
	assert.Equal(t, "http://localhost:4510", c.AllowedOrigins[1].String())

	c, err = load(nil)
	require.NoError(t, err)
	assert.Empty(t, c.AllowedOrigins, "default: no list, no check")

	for _, bad := range []string{
		"*", "https://app.example.com,*", "app.example.com", "*.example.com", "https://app.example.com/",
		"https://app.example.com/path", "https://a*.example.com", "https://*", "https://*.*.example.com",
		"https://x.*.example.com", "https://app.example.com:0", "https://app.example.com:99999",
		"https://app.example.com:http", "https://user@app.example.com", "https://*.[::1]", "://x", "null",
	} {
		_, err := load(map[string]string{config.EnvAllowedOrigins: bad})
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), config.EnvAllowedOrigins, bad)
		}
	}
}

// A wildcard directly under a public suffix would let every site
// registered there open the gateway with a visitor's cookie: refused at
// start, with a message saying why; a wildcard under a registered domain
// (on a public suffix too) still loads.
func TestLoad_AllowedOriginsRefusesAWildcardUnderAPublicSuffix(t *testing.T) {
	load := func(origins string) error {
		_, err := config.Load(func(k string) string {
			return map[string]string{config.EnvTable: "t", config.EnvJWTSecret: "s", config.EnvAllowedOrigins: origins}[k]
		})
		return err
	}
	for _, bad := range []string{
		"https://*.com", "https://*.COM", "https://*.io:8443", "http://*.localhost", "https://*.dev",
		"https://*.co.uk", "https://*.github.io", "https://*.herokuapp.com", "https://*.vercel.app",
		"https://*.cloudfront.net", "https://app.example.com,https://*.com.au", "https://*.0.0.1",
	} {
		err := load(bad)
		if assert.Error(t, err, bad) {
			assert.Contains(t, err.Error(), config.EnvAllowedOrigins, bad)
			if !strings.Contains(bad, "0.0.1") {
				assert.Contains(t, err.Error(), "public suffix", bad)
			}
		}
	}
	for _, good := range []string{
		"https://*.example.com", "https://*.example.co.uk", "https://*.acme.github.io", "https://*.app.example.com:8443",
	} {
		assert.NoError(t, load(good), good)
	}
}

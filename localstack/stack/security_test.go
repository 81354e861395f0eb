package stack_test

import (
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/stack"
	"github.com/wsgate/wsgate/localstack/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
)

// These replay attacks through the whole local stack: a real browser-like
// handshake, and connects racing each other across function instances.

// A page on another site cannot open the gateway with the victim's cookie.
func TestSecurity_CrossSiteHandshakeWithCookieIsRefused(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvTokenCookie: "wsgate_session", config.EnvAllowedOrigins: "https://app.example.com"}
	})
	tok := token(t, s, auth.Grant{Sub: "victim", Topics: []string{"private.>"}})
	dial := func(origin string) (*http.Response, error) {
		h := http.Header{"Cookie": {"wsgate_session=" + tok}}
		if origin != "" {
			h.Set("Origin", origin)
		}
		_, resp, err := stacktest.Dial(t, s.WebSocketURL, nil, &websocket.DialOptions{HTTPHeader: h})
		return resp, err
	}
	resp, err := dial("https://evil.example.net")
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "another site's page")
	resp, err = dial("")
	require.Error(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "a cookie without an Origin")
	_, err = dial("https://app.example.com")
	require.NoError(t, err, "the application's own page")
}

// Connects racing each other cannot pass the per-principal cap.
func TestSecurity_ConnectionCapHoldsUnderConcurrentConnects(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) {
		o.Env = map[string]string{config.EnvMaxConnectionsPerPrincipal: "2"}
	})
	tok := token(t, s, auth.Grant{Sub: "greedy"})
	var admitted, refused atomic.Int32
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, resp, err := stacktest.Dial(t, s.WebSocketURL, map[string]string{"token": tok}, nil)
			switch {
			case err == nil:
				admitted.Add(1)
			case resp != nil && resp.StatusCode == http.StatusTooManyRequests:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(2), admitted.Load())
	assert.Equal(t, int32(18), refused.Load())
}

package auth

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// jwksServer serves the RSA keys named by kids, or fails with 503 while
// down, counting requests.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32
	down    atomic.Bool
	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey
}

func newJWKSServer(t *testing.T, keys map[string]*rsa.PrivateKey) *jwksServer {
	s := &jwksServer{keys: keys}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		var set []map[string]string
		for kid, k := range s.keys {
			set = append(set, map[string]string{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": set})
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(keys map[string]*rsa.PrivateKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

func TestJWKS_OutageCostsOneFetchAndRefusesFastDuringBackoff(t *testing.T) {
	rk, _ := rsaKey(t)
	var fetches atomic.Int32
	release := make(chan struct{})
	// A JWKS endpoint that hangs until the client gives up.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	clk := newTestClock()
	v, err := NewVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL, Now: clk.now})
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, v.jwks.timeout, "a short fetch timeout by default")
	v.jwks.timeout = 200 * time.Millisecond // the same path, faster
	m := Minter{Alg: "RS256", Key: rk, KeyID: "r1", Now: clk.now}
	tok, err := m.Token(Grant{Sub: "u1"})
	require.NoError(t, err)

	start := time.Now()
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = v.Verify(context.Background(), tok) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.ErrorIs(t, err, ErrInvalidToken)
	}
	assert.Equal(t, int32(1), fetches.Load(), "concurrent verifications share one fetch")
	assert.Less(t, time.Since(start), 2*time.Second, "all return within one fetch timeout, not one each in turn")

	start = time.Now()
	_, err = v.Verify(context.Background(), tok)
	require.ErrorIs(t, err, ErrInvalidToken)
	assert.Contains(t, err.Error(), "next attempt in 5s")
	assert.Less(t, time.Since(start), 100*time.Millisecond, "refused at once during the backoff")
	assert.Equal(t, int32(1), fetches.Load())

	clk.advance(5 * time.Second)
	tok, err = m.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), tok)
	require.ErrorIs(t, err, ErrInvalidToken)
	assert.Equal(t, int32(2), fetches.Load(), "tried again after the backoff")
	clk.advance(5 * time.Second)
	_, err = v.Verify(context.Background(), tok)
	assert.Contains(t, err.Error(), "next attempt in 5s", "the backoff doubled to 10 s")
	assert.Equal(t, int32(2), fetches.Load())
}

func TestJWKS_ServesCachedKeysThroughAnOutage(t *testing.T) {
	rk, _ := rsaKey(t)
	srv := newJWKSServer(t, map[string]*rsa.PrivateKey{"r1": rk})
	clk := newTestClock()
	v, err := NewVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL, Now: clk.now})
	require.NoError(t, err)
	verify := func(kid string) error {
		tok, err := Minter{Alg: "RS256", Key: rk, KeyID: kid, Now: clk.now}.Token(Grant{Sub: "u1"})
		require.NoError(t, err)
		_, err = v.Verify(context.Background(), tok)
		return err
	}
	idle := func() bool {
		v.jwks.mu.Lock()
		defer v.jwks.mu.Unlock()
		return v.jwks.inflight == nil
	}

	require.NoError(t, verify("r1"))
	assert.Equal(t, int32(1), srv.fetches.Load())

	srv.down.Store(true)
	clk.advance(jwksMaxAge)
	require.NoError(t, verify("r1"), "an old key is served while the refresh runs")
	require.Eventually(t, func() bool { return srv.fetches.Load() == 2 && idle() }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, verify("r1"), "and after it failed")
	start := time.Now()
	assert.ErrorIs(t, verify("r2"), ErrInvalidToken)
	assert.Less(t, time.Since(start), 100*time.Millisecond, "an unknown kid is refused at once during the backoff")
	assert.Equal(t, int32(2), srv.fetches.Load())

	clk.advance(jwksMaxStale)
	assert.ErrorIs(t, verify("r1"), ErrInvalidToken, "a key not confirmed for a day is no longer trusted")
	assert.Equal(t, int32(3), srv.fetches.Load())

	srv.down.Store(false)
	clk.advance(jwksBackoffMax)
	require.NoError(t, verify("r1"), "trusted again once the JWKS answers")
	assert.Equal(t, int32(4), srv.fetches.Load())
}

func TestJWKS_UnknownKidRefreshesAtMostOncePerGap(t *testing.T) {
	r1, _ := rsaKey(t)
	r2, _ := rsaKey(t)
	srv := newJWKSServer(t, map[string]*rsa.PrivateKey{"r1": r1})
	clk := newTestClock()
	v, err := NewVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL, Now: clk.now})
	require.NoError(t, err)
	verify := func(k *rsa.PrivateKey, kid string) error {
		tok, err := Minter{Alg: "RS256", Key: k, KeyID: kid, Now: clk.now}.Token(Grant{Sub: "u1"})
		require.NoError(t, err)
		_, err = v.Verify(context.Background(), tok)
		return err
	}
	require.NoError(t, verify(r1, "r1"))
	srv.setKeys(map[string]*rsa.PrivateKey{"r1": r1, "r2": r2}) // the IdP rotates
	for range 5 {
		assert.ErrorIs(t, verify(r2, "r2"), ErrInvalidToken)
	}
	assert.Equal(t, int32(1), srv.fetches.Load(), "unknown kids do not hammer the JWKS")
	clk.advance(jwksRefreshGap)
	require.NoError(t, verify(r2, "r2"), "the rotated key is picked up after the gap")
	assert.Equal(t, int32(2), srv.fetches.Load())
}

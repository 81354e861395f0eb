package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/wsgate/wsgate/shared/backoff"
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

// fastJWKS is the default policy scaled down for tests; the gap still
// exceeds the fetch timeout, and the background refresh stays out of the way.
func fastJWKS() jwksPolicy {
	p := defaultJWKSPolicy()
	p.timeout = 200 * time.Millisecond
	p.refresh = time.Hour
	p.gap = 500 * time.Millisecond
	p.backoff = backoff.Policy{Base: 500 * time.Millisecond, Max: 4 * time.Second, Jitter: backoff.Equal}
	return p
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(t *testing.T, kid string, k *ecdsa.PublicKey) map[string]string {
	point, err := k.Bytes() // 0x04 || x || y
	require.NoError(t, err)
	x, y := point[1:1+len(point)/2], point[1+len(point)/2:]
	return map[string]string{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name, "x": b64(x), "y": b64(y)}
}

// jwksServer serves a key set, counting requests. While down it answers
// 503; while hung it answers nothing until the client gives up.
type jwksServer struct {
	*httptest.Server
	fetches atomic.Int32
	down    atomic.Bool
	hung    atomic.Bool
	mu      sync.Mutex
	body    []byte
}

func newJWKSServer(t *testing.T, keys ...map[string]string) *jwksServer {
	s := &jwksServer{}
	s.setKeys(keys...)
	closing := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.hung.Load() {
			select {
			case <-r.Context().Done():
			case <-closing:
			}
			return
		}
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		_, _ = w.Write(s.body)
	}))
	t.Cleanup(func() { close(closing); s.Close() })
	return s
}

func (s *jwksServer) setKeys(keys ...map[string]string) {
	s.setBody(map[string]any{"keys": keys})
}

func (s *jwksServer) setBody(doc any) {
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = b
}

// rs256 mints an RS256 token naming kid.
func rs256(t *testing.T, k *rsa.PrivateKey, kid string, now func() time.Time) string {
	t.Helper()
	tok, err := Minter{Alg: "RS256", Key: k, KeyID: kid, Now: now}.Token(Grant{Sub: "u1"})
	require.NoError(t, err)
	return tok
}

func failures(v *Verifier) int {
	v.jwks.pacing.mu.Lock()
	defer v.jwks.pacing.mu.Unlock()
	return v.jwks.pacing.failures
}

func TestJWKS_DefaultPolicyIsShortAndPaced(t *testing.T) {
	p := defaultJWKSPolicy()
	assert.Equal(t, 3*time.Second, p.timeout, "a short fetch timeout")
	assert.Greater(t, p.gap, p.timeout, "a caller never queues behind a fetch")
	assert.Equal(t, 24*time.Hour, p.maxStale)
	assert.Equal(t, int64(1<<20), p.maxBytes)
}

func TestJWKS_OutageCostsOneFetchAndRefusesFast(t *testing.T) {
	r1, _ := rsaKey(t)
	r2, _ := rsaKey(t)
	srv := newJWKSServer(t, rsaJWK("r1", &r1.PublicKey))
	v, err := newVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL}, fastJWKS())
	require.NoError(t, err)
	assert.Equal(t, int32(1), srv.fetches.Load(), "the set is fetched up front")
	known, unknown := rs256(t, r1, "r1", nil), rs256(t, r2, "r2", nil)
	srv.hung.Store(true)
	require.Eventually(t, v.jwks.pacing.mayFetch, 5*time.Second, 10*time.Millisecond, "the gap after the first fetch ends")

	start := time.Now()
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() { _, errs[i] = v.Verify(context.Background(), unknown) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.ErrorIs(t, err, ErrInvalidToken)
	}
	assert.Equal(t, int32(2), srv.fetches.Load(), "concurrent verifications cost one fetch")
	assert.Less(t, time.Since(start), 2*time.Second, "all return within one fetch timeout")
	assert.Equal(t, 1, failures(v))

	start = time.Now()
	_, err = v.Verify(context.Background(), unknown)
	require.ErrorIs(t, err, ErrInvalidToken)
	assert.Contains(t, err.Error(), "JWKS unavailable: 1 failed fetches")
	assert.NotContains(t, err.Error(), unknown)
	assert.Less(t, time.Since(start), 100*time.Millisecond, "refused at once during the backoff")
	_, err = v.Verify(context.Background(), known)
	require.NoError(t, err, "known keys keep verifying")
	assert.Equal(t, int32(2), srv.fetches.Load())

	require.Eventually(t, func() bool {
		_, _ = v.Verify(context.Background(), unknown)
		return srv.fetches.Load() == 3
	}, 5*time.Second, 20*time.Millisecond, "tried again after the backoff")
	_, err = v.Verify(context.Background(), unknown)
	assert.ErrorContains(t, err, "2 failed fetches")
	assert.Equal(t, int32(3), srv.fetches.Load())
}

func TestJWKS_BackoffGrowsAfterFailuresAndResetsOnSuccess(t *testing.T) {
	p := fastJWKS()
	pacing := &jwksPacing{policy: p, limiter: rate.NewLimiter(rate.Every(p.gap), 1)}
	interval := func() time.Duration { return time.Duration(float64(time.Second) / float64(pacing.limiter.Limit())) }
	down := errors.New("status 503")

	pacing.failed(context.Background(), down)
	assert.InDelta(t, float64(p.gap), float64(interval()), float64(time.Millisecond), "never closer than the gap")
	assert.False(t, pacing.mayFetch(), "the next fetch waits, even with a token left from before")
	pacing.failed(context.Background(), down)
	pacing.failed(context.Background(), down)
	assert.GreaterOrEqual(t, interval(), 2*p.gap-time.Millisecond, "the delay doubles")
	for range 10 {
		pacing.failed(context.Background(), down)
	}
	assert.LessOrEqual(t, interval(), p.backoff.Max+time.Millisecond, "up to the maximum")
	pacing.failed(context.Background(), fmt.Errorf("fetch: %w", context.Canceled))
	assert.Equal(t, 13, pacing.failures, "a caller giving up is no JWKS failure")
	assert.ErrorContains(t, pacing.explain(errors.New("no key")), "13 failed fetches, last: status 503")

	pacing.succeeded()
	assert.InDelta(t, float64(p.gap), float64(interval()), float64(time.Millisecond))
	assert.Zero(t, pacing.failures)
	assert.EqualError(t, pacing.explain(errors.New("no key")), "no key")
}

func TestJWKS_ServesCachedKeysThroughAnOutage(t *testing.T) {
	rk, _ := rsaKey(t)
	srv := newJWKSServer(t, rsaJWK("r1", &rk.PublicKey))
	clk := newTestClock()
	p := fastJWKS()
	p.refresh = 20 * time.Millisecond
	v, err := newVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL, Now: clk.now}, p)
	require.NoError(t, err)
	verify := func(kid string) error {
		_, err := v.Verify(context.Background(), rs256(t, rk, kid, clk.now))
		return err
	}
	require.NoError(t, verify("r1"))

	srv.down.Store(true)
	require.Eventually(t, func() bool { return failures(v) > 0 }, 5*time.Second, 5*time.Millisecond, "the background refresh fails")
	require.NoError(t, verify("r1"), "a cached key is served after a failed refresh")
	start := time.Now()
	assert.ErrorIs(t, verify("r2"), ErrInvalidToken)
	assert.Less(t, time.Since(start), 100*time.Millisecond, "an unknown kid is refused at once during the outage")

	clk.advance(p.maxStale)
	assert.ErrorIs(t, verify("r1"), ErrInvalidToken, "a key not confirmed for a day is no longer trusted")

	srv.down.Store(false)
	require.Eventually(t, func() bool { return verify("r1") == nil }, 5*time.Second, 20*time.Millisecond, "trusted again once the JWKS answers")
}

func TestJWKS_UnknownKidRefreshesAtMostOncePerGap(t *testing.T) {
	r1, _ := rsaKey(t)
	r2, _ := rsaKey(t)
	srv := newJWKSServer(t, rsaJWK("r1", &r1.PublicKey))
	p := fastJWKS()
	v, err := newVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL}, p)
	require.NoError(t, err)
	built := time.Now()
	rotated := rs256(t, r2, "r2", nil)
	srv.setKeys(rsaJWK("r1", &r1.PublicKey), rsaJWK("r2", &r2.PublicKey)) // the IdP rotates
	for range 5 {
		_, err := v.Verify(context.Background(), rotated)
		assert.ErrorIs(t, err, ErrInvalidToken)
	}
	assert.Equal(t, int32(1), srv.fetches.Load(), "unknown kids do not hammer the JWKS")

	// Less than a fetch timeout before the next fetch is due: refused at
	// once, not made to wait and then fetch with what is left of the timeout.
	require.Eventually(t, func() bool { return v.jwks.pacing.limiter.Tokens() >= 0.7 }, 5*time.Second, time.Millisecond)
	start := time.Now()
	_, err = v.Verify(context.Background(), rotated)
	assert.ErrorContains(t, err, "no fetch is due yet")
	assert.Less(t, time.Since(start), 50*time.Millisecond)
	assert.Equal(t, int32(1), srv.fetches.Load())

	require.Eventually(t, func() bool {
		_, err := v.Verify(context.Background(), rotated)
		return err == nil
	}, 5*time.Second, 20*time.Millisecond, "the rotated key is picked up after the gap")
	assert.Equal(t, int32(2), srv.fetches.Load())
	assert.GreaterOrEqual(t, time.Since(built), p.gap-50*time.Millisecond)
}

func TestJWKS_KeepsOnlyKeysFitForTheAlgorithm(t *testing.T) {
	strong, _ := rsaKey(t)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)
	enc := rsaJWK("enc", &strong.PublicKey)
	enc["use"] = "enc"
	rs512 := rsaJWK("rs512", &strong.PublicKey)
	rs512["alg"] = "RS512"
	sig := rsaJWK("r1", &strong.PublicKey)
	sig["use"], sig["alg"] = "sig", "RS256"
	srv := newJWKSServer(t, sig, rsaJWK("weak", &weak.PublicKey), enc, rs512,
		ecJWK(t, "e1", &p256.PublicKey), ecJWK(t, "p384", &p384.PublicKey),
		map[string]string{"kty": "oct", "kid": "hmac", "k": b64([]byte(strings.Repeat("k", 32)))})

	kids := func(alg string) []string {
		v, err := newVerifier(VerifierConfig{Alg: alg, JWKSURL: srv.URL}, fastJWKS())
		require.NoError(t, err)
		all, err := v.jwks.keys.KeyReadAll(context.Background())
		require.NoError(t, err)
		var out []string
		for _, k := range all {
			out = append(out, k.Marshal().KID)
		}
		return out
	}
	assert.Equal(t, []string{"r1"}, kids("RS256"), "no short RSA key, no encryption key, no key for another alg, no EC or HMAC key")
	assert.Equal(t, []string{"e1"}, kids("ES256"), "only P-256")

	v, err := newVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL}, fastJWKS())
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), rs256(t, weak, "weak", nil))
	assert.ErrorIs(t, err, ErrInvalidToken, "a token signed with the 1024-bit key")
	_, err = v.Verify(context.Background(), rs256(t, strong, "r1", nil))
	assert.NoError(t, err)
}

func TestJWKS_RefusesADocumentOverOneMiB(t *testing.T) {
	rk, _ := rsaKey(t)
	srv := newJWKSServer(t)
	srv.setBody(map[string]any{"keys": []map[string]string{rsaJWK("r1", &rk.PublicKey)}, "padding": strings.Repeat("x", 1<<20)})
	p := fastJWKS()
	p.timeout, p.gap = 10*time.Second, time.Minute // time enough to read the whole document
	v, err := newVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL}, p)
	require.NoError(t, err)
	_, err = v.Verify(context.Background(), rs256(t, rk, "r1", nil))
	require.ErrorIs(t, err, ErrInvalidToken)
	assert.Contains(t, err.Error(), "request body too large")
}

func TestJWKS_BackgroundRefreshStopsWithTheVerifier(t *testing.T) {
	rk, _ := rsaKey(t)
	srv := newJWKSServer(t, rsaJWK("r1", &rk.PublicKey))
	p := fastJWKS()
	p.refresh = 5 * time.Millisecond
	func() {
		v, err := newVerifier(VerifierConfig{Alg: "RS256", JWKSURL: srv.URL}, p)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return srv.fetches.Load() > 2 }, 5*time.Second, 5*time.Millisecond, "refreshed in the background")
		_, err = v.Verify(context.Background(), rs256(t, rk, "r1", nil))
		require.NoError(t, err)
	}()
	require.Eventually(t, func() bool {
		runtime.GC()
		before := srv.fetches.Load()
		time.Sleep(20 * p.refresh)
		return srv.fetches.Load() == before
	}, 5*time.Second, time.Millisecond, "no fetch once the verifier is garbage")
}

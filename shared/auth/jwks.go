package auth

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/wsgate/wsgate/shared/backoff"
)

// jwksPolicy is how the JSON Web Key Set is fetched; tests shorten it.
type jwksPolicy struct {
	// timeout bounds one fetch, whoever starts it.
	timeout time.Duration
	// refresh is how often the set is fetched in the background, so rotated
	// and revoked keys are seen without waiting for an unknown kid.
	refresh time.Duration
	// gap is the least time between two fetches an unknown kid may start.
	// It must exceed timeout: a caller that would wait longer than timeout
	// for the next fetch is refused at once instead of queueing.
	gap time.Duration
	// backoff spaces those fetches after consecutive failures (never
	// closer than gap).
	backoff backoff.Policy
	// maxStale is how long keys are trusted without a successful fetch.
	maxStale time.Duration
	// maxBytes bounds the JWKS document.
	maxBytes int64
}

func defaultJWKSPolicy() jwksPolicy {
	return jwksPolicy{
		timeout:  3 * time.Second,
		refresh:  10 * time.Minute,
		gap:      30 * time.Second,
		backoff:  backoff.Policy{Base: 30 * time.Second, Max: 5 * time.Minute, Jitter: backoff.Equal},
		maxStale: 24 * time.Hour,
		maxBytes: 1 << 20,
	}
}

// jwks verifies with the keys of a JWKS, fetched and cached by
// github.com/MicahParks/jwkset and handed to golang-jwt by keyfunc. The
// library fetches the set once at start, then every policy.refresh in the
// background, and on an unknown kid when its RefreshUnknownKID limiter
// allows; a failed fetch keeps the keys it had. What it lacks is wrapped
// minimally: jwksKeys keeps only keys checkKeyType accepts and stops
// trusting them after policy.maxStale, jwksPacing adds a backoff after
// failures, key refuses an unknown kid at once when no fetch is due,
// limitBody bounds the document.
type jwks struct {
	lookup keyfunc.Keyfunc
	keys   *jwksKeys
	pacing *jwksPacing
}

// newJWKS builds the key set of cfg.JWKSURL and fetches it once (for at
// most p.timeout; a failure is retried later, not returned).
func newJWKS(cfg VerifierConfig, p jwksPolicy) (*jwks, error) {
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: p.timeout}
	}
	pacing := &jwksPacing{policy: p, limiter: rate.NewLimiter(rate.Every(p.gap), 1)}
	keys := &jwksKeys{MemoryJWKSet: jwkset.NewMemoryStorage(), alg: cfg.Alg, now: cfg.Now, maxStale: p.maxStale, pacing: pacing}
	// The background refresh runs until the verifier is garbage: see the
	// cleanup below (NewVerifier has no context and no Close).
	ctx, stop := context.WithCancel(context.Background())
	remote, err := jwkset.NewStorageFromHTTP(cfg.JWKSURL, jwkset.HTTPClientStorageOptions{
		Client:                    limitBody(client, p.maxBytes),
		Ctx:                       ctx,
		HTTPTimeout:               p.timeout,
		NoErrorReturnFirstHTTPReq: true,
		RefreshErrorHandler:       pacing.failed,
		RefreshInterval:           p.refresh,
		Storage:                   keys,
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("auth: JWKS: %w", err)
	}
	// Assembled like keyfunc.NewDefaultOverrideCtx, which cannot take our
	// storage. RateLimitWaitMax also bounds the fetch an unknown kid starts.
	set, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{cfg.JWKSURL: remote},
		RateLimitWaitMax:  p.timeout,
		RefreshUnknownKID: pacing.limiter,
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("auth: JWKS: %w", err)
	}
	kf, err := keyfunc.New(keyfunc.Options{Storage: set})
	if err != nil {
		stop()
		return nil, fmt.Errorf("auth: JWKS: %w", err)
	}
	j := &jwks{lookup: kf, keys: keys, pacing: pacing}
	runtime.AddCleanup(j, func(cancel context.CancelFunc) { cancel() }, stop)
	return j, nil
}

// key returns the key the token's kid names (every accepted key when it
// names none), fetching the set first when the kid is unknown and the
// pacing allows.
//
// An unknown kid is refused here, before the library, unless a fetch may
// start now: the library would make it wait for the limiter's next token
// within RateLimitWaitMax, and then fetch with what is left of that same
// deadline, possibly too little, and a fetch failing for that would back
// off as if the JWKS were down.
func (j *jwks) key(ctx context.Context, t *jwt.Token) (any, error) {
	if kid, ok := t.Header["kid"].(string); ok && !j.keys.has(ctx, kid) && !j.pacing.mayFetch() {
		return nil, j.pacing.explain(fmt.Errorf("no key %q in the JWKS, and no fetch is due yet", kid))
	}
	key, err := j.lookup.KeyfuncCtx(ctx)(t)
	if err != nil {
		return nil, j.pacing.explain(err)
	}
	return key, nil
}

// jwksKeys is the storage the library fills on every successful fetch. It
// keeps only keys fit for alg, and stops serving them once no fetch has
// confirmed them for maxStale, so an outage (or an attacker blocking the
// JWKS) cannot keep a revoked key trusted for ever.
type jwksKeys struct {
	*jwkset.MemoryJWKSet
	alg      string
	now      func() time.Time
	maxStale time.Duration
	pacing   *jwksPacing

	mu        sync.Mutex
	confirmed time.Time // last successful fetch
}

// KeyReplaceAll stores the usable keys of a fetched set.
func (s *jwksKeys) KeyReplaceAll(ctx context.Context, fetched []jwkset.JWK) error {
	kept := make([]jwkset.JWK, 0, len(fetched))
	for _, k := range fetched {
		if usableJWK(s.alg, k) {
			kept = append(kept, k)
		}
	}
	if err := s.MemoryJWKSet.KeyReplaceAll(ctx, kept); err != nil {
		return err
	}
	s.mu.Lock()
	s.confirmed = s.now()
	s.mu.Unlock()
	s.pacing.succeeded()
	return nil
}

// KeyRead reports a stale key as not found, which makes the library try a
// fetch (when the pacing allows).
func (s *jwksKeys) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	if s.stale() {
		return jwkset.JWK{}, fmt.Errorf("%w: no fetch confirmed the JWKS for %s", jwkset.ErrKeyNotFound, s.maxStale)
	}
	return s.MemoryJWKSet.KeyRead(ctx, kid)
}

// KeyReadAll serves the keys for a token without kid, none when stale.
func (s *jwksKeys) KeyReadAll(ctx context.Context) ([]jwkset.JWK, error) {
	if s.stale() {
		return nil, nil
	}
	return s.MemoryJWKSet.KeyReadAll(ctx)
}

// has reports whether a fresh key named kid is stored.
func (s *jwksKeys) has(ctx context.Context, kid string) bool {
	_, err := s.KeyRead(ctx, kid)
	return err == nil
}

func (s *jwksKeys) stale() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.confirmed.IsZero() && s.now().Sub(s.confirmed) >= s.maxStale
}

// usableJWK reports whether a fetched key may verify alg tokens: meant for
// signatures (use sig or none), for alg (or no alg), and accepted by
// checkKeyType. A key the library could not parse never gets here.
func usableJWK(alg string, k jwkset.JWK) bool {
	m := k.Marshal()
	if (m.USE != "" && m.USE != jwkset.UseSig) || (m.ALG != "" && m.ALG.String() != alg) {
		return false
	}
	key := k.Key()
	// A set that wrongly publishes private parts: keyfunc verifies with
	// the public half, so check that one.
	if private, ok := key.(interface{ Public() crypto.PublicKey }); ok {
		key = private.Public()
	}
	_, err := checkKeyType(alg, key)
	return err == nil
}

// jwksPacing spaces the fetches an unknown kid starts. The library's
// RefreshUnknownKID limiter (burst 1) lets one fetch start per interval; a
// caller that would wait for the next one longer than RateLimitWaitMax (the
// fetch timeout, shorter than the gap) is refused at once, and jwks.key
// refuses before the library when no fetch is due. So an outage costs one
// fetch however many verifications run, and known keys keep verifying
// meanwhile. The library has no backoff after failures: failed slows the
// limiter by policy.backoff and succeeded restores policy.gap.
type jwksPacing struct {
	policy  jwksPolicy
	limiter *rate.Limiter

	mu       sync.Mutex
	failures int // consecutive failed fetches
	lastErr  error
}

// failed is the library's RefreshErrorHandler.
func (p *jwksPacing) failed(_ context.Context, err error) {
	if errors.Is(err, context.Canceled) {
		return // a caller that gave up, or a verifier gone: not the JWKS's fault
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures++
	p.lastErr = err
	p.nextFetchIn(max(p.policy.gap, p.policy.backoff.Delay(p.failures-1)))
}

func (p *jwksPacing) succeeded() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures, p.lastErr = 0, nil
	p.nextFetchIn(p.policy.gap)
}

// nextFetchIn lets the next unknown-kid fetch start in about d. p.mu is held.
func (p *jwksPacing) nextFetchIn(d time.Duration) {
	now := time.Now()
	p.limiter.SetLimitAt(now, rate.Every(d))
	// A token left over (the fetch was the first one or a background one)
	// would let the next unknown kid fetch at once: spend it.
	p.limiter.AllowN(now, 1)
}

// mayFetch reports whether an unknown kid may start a fetch now.
func (p *jwksPacing) mayFetch() bool { return p.limiter.Tokens() >= 1 }

// explain adds the outage, if any, to a failed key lookup.
func (p *jwksPacing) explain(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failures == 0 {
		return err
	}
	return fmt.Errorf("%w (JWKS unavailable: %d failed fetches, last: %v)", err, p.failures, p.lastErr)
}

// limitBody returns a copy of c whose response bodies end with an error
// after n bytes: jwkset decodes the JWKS without a bound, and the endpoint
// must not be able to exhaust the function's memory.
func limitBody(c *http.Client, n int64) *http.Client {
	limited := *c
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	limited.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err == nil {
			resp.Body = http.MaxBytesReader(nil, resp.Body, n)
		}
		return resp, err
	})
	return &limited
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"
)

func parsePublicKeyPEM(alg, data string) (crypto.PublicKey, error) {
	block, _ := pem.Decode([]byte(data))
	if block == nil {
		return nil, errors.New("auth: public key is not PEM")
	}
	var key any
	var err error
	switch block.Type {
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: public key: %w", err)
	}
	return checkKeyType(alg, key)
}

func checkKeyType(alg string, key any) (crypto.PublicKey, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if alg != "RS256" {
			return nil, fmt.Errorf("auth: an RSA key does not fit %s", alg)
		}
		if k.N.BitLen() < 2048 {
			return nil, errors.New("auth: RSA keys shorter than 2048 bits are refused")
		}
		return k, nil
	case *ecdsa.PublicKey:
		if alg != "ES256" || k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("auth: a %s EC key does not fit %s", k.Curve.Params().Name, alg)
		}
		return k, nil
	}
	return nil, fmt.Errorf("auth: unsupported key type %T", key)
}

// jwksCache holds the keys of a JSON Web Key Set. A token naming an
// unknown kid refreshes it, at most once per jwksRefreshGap; keys older
// than jwksMaxAge are still served while a refresh runs in the background.
//
// A JWKS outage must not stall verifications: one fetch runs at a time
// (every caller that needs it waits for that one, outside the lock), it
// gives up after jwksFetchTimeout, and after a failure no fetch starts
// again before a doubling backoff: meanwhile known keys keep verifying (for
// at most jwksMaxStale after the last good fetch) and unknown kids are
// refused at once.
type jwksCache struct {
	url     string
	alg     string
	client  *http.Client
	now     func() time.Time
	timeout time.Duration

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey
	fetched   time.Time // last successful fetch
	attempted time.Time // start of the last fetch
	failures  int       // consecutive failed fetches
	retryAt   time.Time // no fetch before this after a failure
	lastErr   error
	inflight  *jwksFetch
}

// jwksFetch is one fetch in flight; done closes when err is set.
type jwksFetch struct {
	done chan struct{}
	err  error
}

const (
	jwksMaxAge       = 10 * time.Minute
	jwksMaxStale     = 24 * time.Hour
	jwksRefreshGap   = 30 * time.Second
	jwksFetchTimeout = 3 * time.Second
	jwksBackoffMin   = 5 * time.Second
	jwksBackoffMax   = 5 * time.Minute
	jwksMaxBytes     = 1 << 20
)

func newJWKSCache(url, alg string, client *http.Client, now func() time.Time) *jwksCache {
	return &jwksCache{url: url, alg: alg, client: client, now: now, timeout: jwksFetchTimeout}
}

// key returns the key named kid, fetching the set when it must.
func (c *jwksCache) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	c.mu.Lock()
	now := c.now()
	age := now.Sub(c.fetched)
	if k, ok := c.keys[kid]; ok && age < jwksMaxStale {
		if age >= jwksMaxAge {
			_, _ = c.startLocked(ctx, now) // refresh in the background, serve the cached key
		}
		c.mu.Unlock()
		return k, nil
	}
	call, err := c.startLocked(ctx, now)
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the JWKS: %w", ctx.Err())
	}
	if call.err != nil {
		return nil, call.err
	}
	c.mu.Lock()
	k, ok := c.keys[kid]
	c.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("no key %q in the JWKS", kid)
	}
	return k, nil
}

// startLocked returns the fetch in flight, or starts one unless a failure's
// backoff or the refresh gap forbids it. c.mu is held.
func (c *jwksCache) startLocked(ctx context.Context, now time.Time) (*jwksFetch, error) {
	if c.inflight != nil {
		return c.inflight, nil
	}
	if now.Before(c.retryAt) {
		return nil, fmt.Errorf("JWKS unavailable (%d failed fetches, last: %v); next attempt in %s",
			c.failures, c.lastErr, c.retryAt.Sub(now).Round(time.Second))
	}
	if c.keys != nil && now.Sub(c.attempted) < jwksRefreshGap {
		return nil, errors.New("unknown key id; the JWKS was refreshed moments ago")
	}
	call := &jwksFetch{done: make(chan struct{})}
	c.inflight, c.attempted = call, now
	// The fetch outlives the caller that started it: others wait for it.
	go c.run(context.WithoutCancel(ctx), call)
	return call, nil
}

// run fetches the set and records the outcome for every waiting caller.
func (c *jwksCache) run(ctx context.Context, call *jwksFetch) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	keys, err := c.fetch(ctx)
	c.mu.Lock()
	now := c.now()
	if err != nil {
		c.failures++
		backoff := min(jwksBackoffMin<<min(c.failures-1, 16), jwksBackoffMax)
		c.retryAt, c.lastErr = now.Add(backoff), err
	} else {
		c.keys, c.fetched, c.failures, c.retryAt, c.lastErr = keys, now, 0, time.Time{}, nil
	}
	c.inflight, call.err = nil, err
	c.mu.Unlock()
	close(call.done)
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func (c *jwksCache) fetch(ctx context.Context) (map[string]crypto.PublicKey, error) {
	alg := c.alg
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS: status %d", resp.StatusCode)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, jwksMaxBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	out := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		if (k.Use != "" && k.Use != "sig") || (k.Alg != "" && k.Alg != alg) {
			continue
		}
		key, err := k.publicKey()
		if err != nil {
			continue
		}
		if key, err = checkKeyType(alg, key); err == nil {
			out[k.Kid] = key
		}
	}
	return out, nil
}

func (k jwk) publicKey() (any, error) {
	b64 := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	switch k.Kty {
	case "RSA":
		n, err := b64(k.N)
		if err != nil {
			return nil, err
		}
		e, err := b64(k.E)
		if err != nil || len(e) > 4 {
			return nil, errors.New("bad exponent")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, errors.New("unsupported curve")
		}
		x, err := b64(k.X)
		if err != nil {
			return nil, err
		}
		y, err := b64(k.Y)
		if err != nil {
			return nil, err
		}
		// Build the uncompressed point and let crypto/ecdh-backed parsing
		// check it lies on the curve.
		point := append([]byte{4}, append(leftPad(x, 32), leftPad(y, 32)...)...)
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
	}
	return nil, fmt.Errorf("unsupported kty %q", k.Kty)
}

func leftPad(b []byte, n int) []byte {
	if len(b) >= n {
		return b
	}
	return append(make([]byte, n-len(b)), b...)
}

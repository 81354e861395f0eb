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

// jwksCache fetches a JSON Web Key Set and refreshes it when a token names
// an unknown key id, at most once per refreshGap.
type jwksCache struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu      sync.Mutex
	keys    map[string]crypto.PublicKey
	fetched time.Time
}

const (
	jwksMaxAge     = 10 * time.Minute
	jwksRefreshGap = 30 * time.Second
	jwksMaxBytes   = 1 << 20
)

func newJWKSCache(url string, client *http.Client, now func() time.Time) *jwksCache {
	return &jwksCache{url: url, client: client, now: now}
}

func (c *jwksCache) key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	age := c.now().Sub(c.fetched)
	k, ok := c.keys[kid]
	if ok && age < jwksMaxAge {
		return k, nil
	}
	if c.keys == nil || age >= jwksRefreshGap {
		keys, err := c.fetch(ctx, alg)
		if err != nil {
			if ok {
				return k, nil // keep serving a known key through a JWKS outage
			}
			return nil, err
		}
		c.keys, c.fetched = keys, c.now()
		if k, ok = keys[kid]; ok {
			return k, nil
		}
	}
	if ok {
		return k, nil
	}
	return nil, fmt.Errorf("no key %q in the JWKS", kid)
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

func (c *jwksCache) fetch(ctx context.Context, alg string) (map[string]crypto.PublicKey, error) {
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

package auth

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Grant is what a backend wants a token to allow.
type Grant struct {
	Sub       string
	Type      string
	Orgs      []string
	Roles     []string
	Superuser bool
	// Topics are capability patterns; Subscribe are subscribed at connect.
	Topics    []string
	Subscribe []string
	// Publish are the patterns the principal may publish to (the publish
	// command).
	Publish []string
	// Mode "push" makes the connection push-only.
	Mode    string
	Profile string
	// TTL is the token's lifetime; zero means one hour for tokens and the
	// ticket lifetime for tickets.
	TTL time.Duration
	// ID is a token's jti, what a revocation of that one token names
	// (tickets get a random one).
	ID string
}

// Minter issues tokens a Verifier with the same settings accepts.
type Minter struct {
	// Alg is HS256/384/512 (Key is []byte), RS256 (*rsa.PrivateKey) or
	// ES256 (*ecdsa.PrivateKey).
	Alg      string
	Key      any
	KeyID    string
	Issuer   string
	Audience string
	// TicketLifetime bounds single-use tickets; zero means
	// DefaultTicketLifetime.
	TicketLifetime time.Duration
	// MaxLifetime refuses to mint a token the Verifier would refuse for
	// living too long; zero means DefaultMaxTokenLifetime.
	MaxLifetime time.Duration
	Now         func() time.Time
}

// DefaultTokenTTL is the lifetime of a token minted without one.
const DefaultTokenTTL = time.Hour

// Token mints a reusable token.
func (m Minter) Token(g Grant) (string, error) {
	if g.TTL == 0 {
		g.TTL = DefaultTokenTTL
	}
	limit := m.MaxLifetime
	if limit <= 0 {
		limit = DefaultMaxTokenLifetime
	}
	if g.TTL > limit {
		return "", fmt.Errorf("auth: a token may live at most %s (asked %s)", limit, g.TTL)
	}
	return m.sign(g, g.ID, false)
}

// Ticket mints a single-use ticket: a token marked by the claim tkt, with a
// random jti, that lives at most the ticket lifetime. A second connect with
// it is refused.
func (m Minter) Ticket(g Grant) (string, error) {
	limit := m.TicketLifetime
	if limit <= 0 {
		limit = DefaultTicketLifetime
	}
	if g.TTL == 0 || g.TTL > limit {
		g.TTL = limit
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return m.sign(g, hex.EncodeToString(b[:]), true)
}

// sign mints the token with jti, marked a ticket when ticket.
func (m Minter) sign(g Grant, jti string, ticket bool) (string, error) {
	if g.Sub == "" {
		return "", errors.New("auth: grant needs a sub")
	}
	now := time.Now
	if m.Now != nil {
		now = m.Now
	}
	t := now().Truncate(time.Second)
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   g.Sub,
			Issuer:    m.Issuer,
			IssuedAt:  jwt.NewNumericDate(t),
			ExpiresAt: jwt.NewNumericDate(t.Add(g.TTL)),
			ID:        jti,
		},
		PType: g.Type, Org: g.Orgs, Roles: g.Roles, Su: g.Superuser,
		Topics: g.Topics, Subscribe: g.Subscribe, Publish: g.Publish, Mode: g.Mode, Profile: g.Profile,
		Ticket: ticket,
	}
	if m.Audience != "" {
		claims.Audience = jwt.ClaimStrings{m.Audience}
	}
	var method jwt.SigningMethod
	switch m.Alg {
	case "HS256", "HS384", "HS512":
		if _, ok := m.Key.([]byte); !ok {
			return "", fmt.Errorf("auth: %s needs a []byte key", m.Alg)
		}
		method = jwt.GetSigningMethod(m.Alg)
	case "RS256":
		if _, ok := m.Key.(*rsa.PrivateKey); !ok {
			return "", errors.New("auth: RS256 needs an *rsa.PrivateKey")
		}
		method = jwt.SigningMethodRS256
	case "ES256":
		if _, ok := m.Key.(*ecdsa.PrivateKey); !ok {
			return "", errors.New("auth: ES256 needs an *ecdsa.PrivateKey")
		}
		method = jwt.SigningMethodES256
	default:
		return "", fmt.Errorf("auth: unsupported algorithm %q", m.Alg)
	}
	tok := jwt.NewWithClaims(method, claims)
	if m.KeyID != "" {
		tok.Header["kid"] = m.KeyID
	}
	return tok.SignedString(m.Key)
}

// ConnectURL returns the WebSocket URL with the token (or ticket) and any
// extra query parameters, as OpenTera's login call hands out.
func ConnectURL(base, token string, extra url.Values) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("auth: connect URL: %w", err)
	}
	if !strings.HasPrefix(u.Scheme, "ws") {
		return "", fmt.Errorf("auth: connect URL %q is not ws:// or wss://", base)
	}
	q := u.Query()
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	q.Set("token", token)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

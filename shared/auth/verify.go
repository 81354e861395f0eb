package auth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/wsgate/wsgate/shared/topic"
)

// Sentinel errors callers branch on.
var (
	// ErrInvalidToken: the token is malformed, badly signed, expired, for
	// another issuer or audience, or its claims are unusable.
	ErrInvalidToken = errors.New("invalid token")
	// ErrTokenExpired: a well-signed token whose exp has passed. It is
	// always wrapped together with ErrInvalidToken, so callers that only
	// refuse keep working; callers that tell the client why say
	// "token_expired" (a refresh, not a new login, fixes it).
	ErrTokenExpired = errors.New("token_expired")
	// ErrTicketUsed: a single-use ticket was presented a second time.
	ErrTicketUsed = errors.New("ticket already used")
)

// Limits on claims, so a token cannot make a connection record huge.
const (
	maxClaimList   = 100
	maxClaimString = 256
	// maxPTypeSegment bounds a ptype as a topic segment (percent-encoded),
	// so every principal's direct topic fits (see topic.Direct).
	maxPTypeSegment = 64
	leeway          = time.Second // clock skew allowed on exp, nbf and iat
)

// StringList is a claim that may be a string or a list of strings.
type StringList []string

// UnmarshalJSON accepts "a" and ["a","b"].
func (l *StringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		if one == "" {
			*l = nil
		} else {
			*l = StringList{one}
		}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("want a string or a list of strings")
	}
	*l = many
	return nil
}

// Claims are the JWT claims wsgate reads.
type Claims struct {
	jwt.RegisteredClaims
	PType     string     `json:"ptype,omitempty"`
	Org       StringList `json:"org,omitempty"`
	Roles     StringList `json:"roles,omitempty"`
	Su        bool       `json:"su,omitempty"`
	Topics    []string   `json:"topics,omitempty"`
	Subscribe []string   `json:"subscribe,omitempty"`
	Publish   []string   `json:"publish,omitempty"`
	Mode      string     `json:"mode,omitempty"`
	Profile   string     `json:"profile,omitempty"`
	// Ticket marks a single-use ticket (Minter.Ticket sets it); a jti alone
	// does not make a token single-use.
	Ticket bool `json:"tkt,omitempty"`
}

// UnmarshalJSON decodes the claims, refusing an exp, nbf or iat that is not
// a JSON number (RFC 7519 section 2, NumericDate): jwt.NumericDate would
// take "exp":"1700000000", a string of digits, as a date.
func (c *Claims) UnmarshalJSON(b []byte) error {
	var dates struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(b, &dates); err != nil {
		return err
	}
	for name, raw := range map[string]json.RawMessage{"exp": dates.Exp, "nbf": dates.Nbf, "iat": dates.Iat} {
		if raw != nil && !isJSONNumber(raw) {
			return fmt.Errorf("claim %s is not a NumericDate (a JSON number)", name)
		}
	}
	type plain Claims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// isJSONNumber reports whether raw, one JSON value, is a number.
func isJSONNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// Lifetime defaults, for a VerifierConfig or Minter that leaves them zero.
const (
	// DefaultMaxTokenLifetime bounds exp - iat of every token.
	DefaultMaxTokenLifetime = 24 * time.Hour
	// DefaultTicketLifetime bounds exp - iat of single-use tickets.
	DefaultTicketLifetime = 60 * time.Second
)

// VerifierConfig pins how tokens are checked.
type VerifierConfig struct {
	// Alg is the only accepted algorithm: HS256/384/512, RS256 or ES256.
	Alg string
	// Secret is the HMAC key for HS algorithms.
	Secret []byte
	// PublicKeyPEM is the verification key for RS256/ES256 (PKIX or
	// certificate PEM, or PKCS #1 for RSA); JWKSURL is the alternative.
	PublicKeyPEM string
	JWKSURL      string
	Issuer       string
	Audience     string
	// MaxLifetime refuses tokens whose exp - iat (exp - now without iat)
	// is longer; zero means DefaultMaxTokenLifetime.
	MaxLifetime time.Duration
	// TicketLifetime is the same bound for single-use tickets (claim tkt);
	// zero means DefaultTicketLifetime.
	TicketLifetime time.Duration
	// HTTPClient fetches the JWKS; nil means a client with the fetch
	// timeout (3 s), which bounds every fetch either way.
	HTTPClient *http.Client
	Now        func() time.Time
}

// Verifier checks tokens and turns their claims into principals.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser
	static crypto.PublicKey
	jwks   *jwks
}

// NewVerifier validates the configuration and prepares keys. With a JWKS
// URL it fetches the set once (for at most 3 s; a failure is retried when
// a token needs a key, not returned) and keeps it refreshed in the
// background for as long as the Verifier is in use.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	return newVerifier(cfg, defaultJWKSPolicy())
}

// newVerifier is NewVerifier with the JWKS policy as a parameter, for tests.
func newVerifier(cfg VerifierConfig, jp jwksPolicy) (*Verifier, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxTokenLifetime
	}
	if cfg.TicketLifetime <= 0 {
		cfg.TicketLifetime = DefaultTicketLifetime
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{cfg.Alg}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(cfg.Now),
		jwt.WithJSONNumber(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{cfg: cfg, parser: jwt.NewParser(opts...)}
	switch {
	case strings.HasPrefix(cfg.Alg, "HS"):
		if len(cfg.Secret) == 0 {
			return nil, fmt.Errorf("auth: %s needs a secret", cfg.Alg)
		}
	case cfg.Alg == "RS256" || cfg.Alg == "ES256":
		var err error
		switch {
		case cfg.PublicKeyPEM != "":
			v.static, err = parsePublicKeyPEM(cfg.Alg, cfg.PublicKeyPEM)
		case cfg.JWKSURL != "":
			v.jwks, err = newJWKS(cfg, jp)
		default:
			return nil, fmt.Errorf("auth: %s needs a public key or a JWKS URL", cfg.Alg)
		}
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("auth: unsupported algorithm %q", cfg.Alg)
	}
	return v, nil
}

// MinSecretBytes is the shortest HMAC secret CheckSecret accepts for alg:
// the hash's output size, as RFC 7518 section 3.2 requires (32 bytes for
// HS256); 0 for other algorithms.
func MinSecretBytes(alg string) int {
	switch alg {
	case "HS256":
		return 32
	case "HS384":
		return 48
	case "HS512":
		return 64
	}
	return 0
}

// CheckSecret refuses an HMAC secret shorter than MinSecretBytes, or one
// that is obviously a pattern (secretPattern: "aaaa...", "abab...",
// "0123456789..."): either can be brute-forced offline from any one
// token. The message gives the length or the pattern's kind, never the
// secret.
func CheckSecret(alg string, secret []byte) error {
	n := MinSecretBytes(alg)
	if len(secret) < n {
		return fmt.Errorf("auth: an %s secret must be at least %d bytes; this one has %d", alg, n, len(secret))
	}
	if n == 0 {
		return nil
	}
	if why := secretPattern(secret); why != "" {
		return fmt.Errorf("auth: this %s secret is a pattern, not random bytes: %s", alg, why)
	}
	return nil
}

// Verify checks the token and returns its principal. Every failure wraps
// ErrInvalidToken, an expired token also ErrTokenExpired; the message never
// contains the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if token == "" || len(token) > 8192 {
		return Principal{}, fmt.Errorf("%w: empty or longer than 8 KiB", ErrInvalidToken)
	}
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		if _, ok := t.Header["crit"]; ok {
			// RFC 7515 section 4.1.11: refuse a token naming extensions
			// the recipient does not understand; this one understands
			// none. Checked before any key is looked up or fetched.
			return nil, errors.New("header parameter crit names extensions this verifier does not support")
		}
		switch {
		case v.static != nil:
			return v.static, nil
		case v.jwks != nil:
			return v.jwks.key(ctx, t)
		default:
			return v.cfg.Secret, nil
		}
	})
	if errors.Is(err, jwt.ErrTokenExpired) {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidToken, ErrTokenExpired)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	p, err := claims.principal()
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if err := v.checkLifetime(claims); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(claims.ID) > maxClaimString {
		return Principal{}, fmt.Errorf("%w: claim jti is longer than %d bytes", ErrInvalidToken, maxClaimString)
	}
	p.TokenID = claims.ID
	if claims.Ticket {
		p.TicketID = claims.ID
	}
	return p, nil
}

// checkLifetime refuses a token that lives longer than MaxLifetime (a
// stolen token with exp in 2200 is a permanent credential), and a ticket
// without a jti or living longer than TicketLifetime. The lifetime is
// exp - iat, or exp - now for a token without iat.
func (v *Verifier) checkLifetime(c Claims) error {
	start := v.cfg.Now()
	if c.IssuedAt != nil {
		start = c.IssuedAt.Time
	}
	life := c.ExpiresAt.Sub(start)
	if life > v.cfg.MaxLifetime {
		return fmt.Errorf("token lives %s; at most %s is accepted", life.Round(time.Second), v.cfg.MaxLifetime)
	}
	if !c.Ticket {
		return nil
	}
	if c.ID == "" || len(c.ID) > maxClaimString {
		return fmt.Errorf("a ticket (claim tkt) needs a jti of at most %d bytes", maxClaimString)
	}
	if life > v.cfg.TicketLifetime {
		return fmt.Errorf("ticket lives %s; at most %s is accepted", life.Round(time.Second), v.cfg.TicketLifetime)
	}
	return nil
}

func (c Claims) principal() (Principal, error) {
	if c.Subject == "" {
		return Principal{}, errors.New("claim sub is required")
	}
	p := Principal{
		Identity: Identity{
			Sub: c.Subject, Type: c.PType, Orgs: c.Org, Roles: c.Roles, Superuser: c.Su,
		},
		Topics: c.Topics, Subscribe: c.Subscribe, Publish: c.Publish, Mode: c.Mode, Profile: c.Profile,
		ExpiresAt: c.ExpiresAt.Time,
	}
	if p.Type == "" {
		p.Type = DefaultPrincipalType
	}
	if strings.Contains(p.Type, ":") {
		// Audience subs entries are "<ptype>:<sub>", split at the first colon.
		return Principal{}, fmt.Errorf("claim ptype %q holds a colon", p.Type)
	}
	if n := len(topic.EncodeSegment(p.Type)); n > maxPTypeSegment {
		return Principal{}, fmt.Errorf("claim ptype is %d bytes as a topic segment; at most %d are accepted", n, maxPTypeSegment)
	}
	if p.Mode != "" && p.Mode != ModePush {
		return Principal{}, fmt.Errorf("claim mode %q is not %q", p.Mode, ModePush)
	}
	for name, s := range map[string]string{"sub": p.Sub, "ptype": p.Type, "profile": p.Profile} {
		if len(s) > maxClaimString {
			return Principal{}, fmt.Errorf("claim %s is longer than %d bytes", name, maxClaimString)
		}
	}
	for name, list := range map[string][]string{"org": p.Orgs, "roles": p.Roles, "topics": p.Topics, "subscribe": p.Subscribe, "publish": p.Publish} {
		if len(list) > maxClaimList {
			return Principal{}, fmt.Errorf("claim %s lists more than %d entries", name, maxClaimList)
		}
		for _, s := range list {
			if s == "" || len(s) > maxClaimString {
				return Principal{}, fmt.Errorf("claim %s has an empty or overlong entry", name)
			}
		}
	}
	for name, list := range map[string][]string{"topics": p.Topics, "subscribe": p.Subscribe, "publish": p.Publish} {
		for _, s := range list {
			if _, err := topic.ParsePattern(s); err != nil {
				return Principal{}, fmt.Errorf("claim %s: %v", name, err)
			}
		}
	}
	return p, nil
}

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
	// ErrTicketUsed: a single-use ticket was presented a second time.
	ErrTicketUsed = errors.New("ticket already used")
)

// Limits on claims, so a token cannot make a connection record huge.
const (
	maxClaimList   = 100
	maxClaimString = 256
	leeway         = time.Second // clock skew allowed on exp, nbf and iat
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
	Mode      string     `json:"mode,omitempty"`
	Profile   string     `json:"profile,omitempty"`
}

// VerifierConfig pins how tokens are checked.
type VerifierConfig struct {
	// Alg is the only accepted algorithm: HS256/384/512, RS256 or ES256.
	Alg string
	// Secret is the HMAC key for HS algorithms.
	Secret []byte
	// PublicKeyPEM is the verification key for RS256/ES256 (PKIX or
	// certificate PEM); JWKSURL is the alternative.
	PublicKeyPEM string
	JWKSURL      string
	Issuer       string
	Audience     string
	// TicketLifetime: a token with a jti that lives at most this long is a
	// single-use ticket.
	TicketLifetime time.Duration
	HTTPClient     *http.Client
	Now            func() time.Time
}

// Verifier checks tokens and turns their claims into principals.
type Verifier struct {
	cfg    VerifierConfig
	parser *jwt.Parser
	static crypto.PublicKey
	jwks   *jwksCache
}

// NewVerifier validates the configuration and prepares keys.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
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
		switch {
		case cfg.PublicKeyPEM != "":
			key, err := parsePublicKeyPEM(cfg.Alg, cfg.PublicKeyPEM)
			if err != nil {
				return nil, err
			}
			v.static = key
		case cfg.JWKSURL != "":
			client := cfg.HTTPClient
			if client == nil {
				client = &http.Client{Timeout: 5 * time.Second}
			}
			v.jwks = newJWKSCache(cfg.JWKSURL, client, cfg.Now)
		default:
			return nil, fmt.Errorf("auth: %s needs a public key or a JWKS URL", cfg.Alg)
		}
	default:
		return nil, fmt.Errorf("auth: unsupported algorithm %q", cfg.Alg)
	}
	return v, nil
}

// Verify checks the token and returns its principal. Every failure wraps
// ErrInvalidToken; the message never contains the token.
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	if token == "" || len(token) > 8192 {
		return Principal{}, fmt.Errorf("%w: empty or longer than 8 KiB", ErrInvalidToken)
	}
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		switch {
		case v.static != nil:
			return v.static, nil
		case v.jwks != nil:
			kid, _ := t.Header["kid"].(string)
			return v.jwks.key(ctx, kid, v.cfg.Alg)
		default:
			return v.cfg.Secret, nil
		}
	})
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	p, err := claims.principal()
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if claims.ID != "" && v.cfg.TicketLifetime > 0 {
		start := v.cfg.Now()
		if claims.IssuedAt != nil {
			start = claims.IssuedAt.Time
		}
		if claims.ExpiresAt.Sub(start) <= v.cfg.TicketLifetime {
			p.TicketID = claims.ID
		}
	}
	return p, nil
}

func (c Claims) principal() (Principal, error) {
	if c.Subject == "" {
		return Principal{}, errors.New("claim sub is required")
	}
	p := Principal{
		Identity: Identity{
			Sub: c.Subject, Type: c.PType, Orgs: c.Org, Roles: c.Roles, Superuser: c.Su,
		},
		Topics: c.Topics, Subscribe: c.Subscribe, Mode: c.Mode, Profile: c.Profile,
		ExpiresAt: c.ExpiresAt.Time,
	}
	if p.Type == "" {
		p.Type = DefaultPrincipalType
	}
	if p.Mode != "" && p.Mode != ModePush {
		return Principal{}, fmt.Errorf("claim mode %q is not %q", p.Mode, ModePush)
	}
	for name, s := range map[string]string{"sub": p.Sub, "ptype": p.Type, "profile": p.Profile} {
		if len(s) > maxClaimString {
			return Principal{}, fmt.Errorf("claim %s is longer than %d bytes", name, maxClaimString)
		}
	}
	for name, list := range map[string][]string{"org": p.Orgs, "roles": p.Roles, "topics": p.Topics, "subscribe": p.Subscribe} {
		if len(list) > maxClaimList {
			return Principal{}, fmt.Errorf("claim %s lists more than %d entries", name, maxClaimList)
		}
		for _, s := range list {
			if s == "" || len(s) > maxClaimString {
				return Principal{}, fmt.Errorf("claim %s has an empty or overlong entry", name)
			}
		}
	}
	for name, list := range map[string][]string{"topics": p.Topics, "subscribe": p.Subscribe} {
		for _, s := range list {
			if _, err := topic.ParsePattern(s); err != nil {
				return Principal{}, fmt.Errorf("claim %s: %v", name, err)
			}
		}
	}
	return p, nil
}

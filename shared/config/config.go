// Package config reads the gateway's settings from the environment once,
// validates them, and holds every default in one place.
//
// The environment variable names are exported constants: the CDK stack and
// the local stack set them, the functions read them.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wsgate/wsgate/shared/topic"
)

// Environment variable names.
const (
	EnvTable              = "WSGATE_TABLE"
	EnvStage              = "WSGATE_STAGE"
	EnvManagementEndpoint = "WSGATE_MANAGEMENT_ENDPOINT"
	EnvQueueURL           = "WSGATE_QUEUE_URL"

	EnvJWTAlg       = "WSGATE_JWT_ALG"
	EnvJWTSecret    = "WSGATE_JWT_SECRET"
	EnvJWTSecretARN = "WSGATE_JWT_SECRET_ARN"
	EnvJWTPublicKey = "WSGATE_JWT_PUBLIC_KEY"
	EnvJWKSURL      = "WSGATE_JWKS_URL"
	EnvJWTIssuer    = "WSGATE_JWT_ISSUER"
	EnvJWTAudience  = "WSGATE_JWT_AUDIENCE"
	EnvTokenCookie  = "WSGATE_TOKEN_COOKIE"

	EnvAnonymousTopics     = "WSGATE_ANONYMOUS_TOPICS"
	EnvStateRequiredTopics = "WSGATE_STATE_REQUIRED_TOPICS"
	EnvAuthMessage         = "WSGATE_AUTH_MESSAGE"
	EnvAuthDeadline        = "WSGATE_AUTH_DEADLINE"

	EnvMaxMessageBytes            = "WSGATE_MAX_MESSAGE_BYTES"
	EnvMessagesPerSecond          = "WSGATE_MESSAGES_PER_SECOND"
	EnvMaxConnectionsPerPrincipal = "WSGATE_MAX_CONNECTIONS_PER_PRINCIPAL"
	EnvMaxSubscriptions           = "WSGATE_MAX_SUBSCRIPTIONS"
	EnvMaxBatch                   = "WSGATE_MAX_BATCH"
	EnvProfiles                   = "WSGATE_PROFILES"

	EnvHistoryRetention = "WSGATE_HISTORY_RETENTION"
	EnvEventLease       = "WSGATE_EVENT_LEASE"
	EnvHistoryDefault   = "WSGATE_HISTORY_DEFAULT"
	EnvTicketLifetime   = "WSGATE_TICKET_LIFETIME"
	EnvFrameBudget      = "WSGATE_FRAME_BUDGET"
	EnvConnectionTTL    = "WSGATE_CONNECTION_TTL"

	EnvFanoutWorkers  = "WSGATE_FANOUT_WORKERS"
	EnvFanoutPageSize = "WSGATE_FANOUT_PAGE_SIZE"
	EnvPostRate       = "WSGATE_POST_RATE"

	EnvLogLevel = "WSGATE_LOG_LEVEL"
)

// Defaults, documented in the README's Limits table.
const (
	DefaultStage                      = "local"
	DefaultJWTAlg                     = "HS256"
	DefaultAuthDeadline               = 10 * time.Second
	DefaultMaxMessageBytes            = 32 * 1024
	DefaultMessagesPerSecond          = 100
	DefaultMaxConnectionsPerPrincipal = 100
	DefaultMaxSubscriptions           = 100
	DefaultMaxBatch                   = 50
	DefaultHistoryRetention           = 24 * time.Hour
	// DefaultEventLease: how long an event or shard stays claimed by an
	// invocation that stops renewing (it died); a redelivery then takes
	// over. Renewed every third of it.
	DefaultEventLease     = 10 * time.Second
	DefaultTicketLifetime = 60 * time.Second
	// DefaultFrameBudget bounds the work of one client frame, well inside
	// API Gateway's 29 s integration timeout.
	DefaultFrameBudget    = 10 * time.Second
	DefaultConnectionTTL  = 2*time.Hour + 10*time.Minute
	DefaultFanoutWorkers  = 64
	DefaultFanoutPageSize = 1000
	DefaultPostRate       = 2000
)

// Hard ceilings that configuration cannot raise: API Gateway's own limits.
const (
	MaxFrameBytes   = 32 * 1024
	MaxPayloadBytes = 128 * 1024
)

// Limits are the per-connection abuse limits. A profile overrides some of
// them for the principals whose token names it.
type Limits struct {
	MaxMessageBytes            int `json:"max_message_bytes,omitempty"`
	MessagesPerSecond          int `json:"messages_per_second,omitempty"`
	MaxConnectionsPerPrincipal int `json:"max_connections_per_principal,omitempty"`
	MaxSubscriptions           int `json:"max_subscriptions,omitempty"`
}

// Config is every setting a function needs.
type Config struct {
	Table              string
	Stage              string
	ManagementEndpoint string
	QueueURL           string

	JWTAlg       string
	JWTSecret    string
	JWTSecretARN string
	JWTPublicKey string
	JWKSURL      string
	JWTIssuer    string
	JWTAudience  string
	TokenCookie  string

	AnonymousTopics     []topic.Pattern
	StateRequiredTopics []topic.Pattern
	AuthMessage         bool
	AuthDeadline        time.Duration

	Limits   Limits
	Profiles map[string]Limits
	MaxBatch int

	HistoryRetention time.Duration
	EventLease       time.Duration
	HistoryDefault   bool
	TicketLifetime   time.Duration
	// FrameBudget is how long the commands of one client frame may run:
	// commands not started within it are answered "unavailable" (send
	// again), and store calls stop half as much (at least 5 s) later.
	FrameBudget   time.Duration
	ConnectionTTL time.Duration

	FanoutWorkers  int
	FanoutPageSize int
	PostRate       int

	LogLevel string
}

// FromEnv reads the configuration from the process environment.
func FromEnv() (Config, error) { return Load(os.Getenv) }

// Load reads the configuration through getenv and validates it. Every error
// names the variable at fault.
func Load(getenv func(string) string) (Config, error) {
	r := reader{getenv: getenv}
	c := Config{
		Table:               getenv(EnvTable),
		Stage:               r.str(EnvStage, DefaultStage),
		ManagementEndpoint:  getenv(EnvManagementEndpoint),
		QueueURL:            getenv(EnvQueueURL),
		JWTAlg:              strings.ToUpper(r.str(EnvJWTAlg, DefaultJWTAlg)),
		JWTSecret:           getenv(EnvJWTSecret),
		JWTSecretARN:        getenv(EnvJWTSecretARN),
		JWTPublicKey:        getenv(EnvJWTPublicKey),
		JWKSURL:             getenv(EnvJWKSURL),
		JWTIssuer:           getenv(EnvJWTIssuer),
		JWTAudience:         getenv(EnvJWTAudience),
		TokenCookie:         getenv(EnvTokenCookie),
		AnonymousTopics:     r.patterns(EnvAnonymousTopics),
		StateRequiredTopics: r.patterns(EnvStateRequiredTopics),
		AuthMessage:         r.boolean(EnvAuthMessage, true),
		AuthDeadline:        r.duration(EnvAuthDeadline, DefaultAuthDeadline),
		Limits: Limits{
			MaxMessageBytes:            r.integer(EnvMaxMessageBytes, DefaultMaxMessageBytes),
			MessagesPerSecond:          r.integer(EnvMessagesPerSecond, DefaultMessagesPerSecond),
			MaxConnectionsPerPrincipal: r.integer(EnvMaxConnectionsPerPrincipal, DefaultMaxConnectionsPerPrincipal),
			MaxSubscriptions:           r.integer(EnvMaxSubscriptions, DefaultMaxSubscriptions),
		},
		MaxBatch:         r.integer(EnvMaxBatch, DefaultMaxBatch),
		HistoryRetention: r.duration(EnvHistoryRetention, DefaultHistoryRetention),
		EventLease:       r.duration(EnvEventLease, DefaultEventLease),
		HistoryDefault:   r.boolean(EnvHistoryDefault, false),
		TicketLifetime:   r.duration(EnvTicketLifetime, DefaultTicketLifetime),
		FrameBudget:      r.duration(EnvFrameBudget, DefaultFrameBudget),
		ConnectionTTL:    r.duration(EnvConnectionTTL, DefaultConnectionTTL),
		FanoutWorkers:    r.integer(EnvFanoutWorkers, DefaultFanoutWorkers),
		FanoutPageSize:   r.integer(EnvFanoutPageSize, DefaultFanoutPageSize),
		PostRate:         r.integer(EnvPostRate, DefaultPostRate),
		LogLevel:         r.str(EnvLogLevel, "info"),
	}
	if raw := getenv(EnvProfiles); raw != "" {
		dec := json.NewDecoder(strings.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c.Profiles); err != nil {
			r.fail(EnvProfiles, fmt.Errorf("want a JSON object of profile name to limits: %w", err))
		}
	}
	if r.err != nil {
		return Config{}, r.err
	}
	return c, c.validate()
}

func (c Config) validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.Table == "" {
		bad(EnvTable, "is required (the DynamoDB table name)")
	}
	switch c.JWTAlg {
	case "HS256", "HS384", "HS512":
		if c.JWTSecret == "" && c.JWTSecretARN == "" {
			bad(EnvJWTSecret, "or %s is required for %s", EnvJWTSecretARN, c.JWTAlg)
		}
	case "RS256", "ES256":
		if c.JWTPublicKey == "" && c.JWKSURL == "" {
			bad(EnvJWTPublicKey, "or %s is required for %s", EnvJWKSURL, c.JWTAlg)
		}
	default:
		bad(EnvJWTAlg, "%q is not one of HS256, HS384, HS512, RS256, ES256", c.JWTAlg)
	}
	checkLimits := func(prefix string, l Limits, required bool) {
		check := func(name string, v, lo, hi int) {
			if v == 0 && !required {
				return
			}
			if v < lo || v > hi {
				bad(prefix+name, "%d is outside %d..%d", v, lo, hi)
			}
		}
		check(EnvMaxMessageBytes, l.MaxMessageBytes, 64, MaxFrameBytes)
		check(EnvMessagesPerSecond, l.MessagesPerSecond, 1, 10000)
		check(EnvMaxConnectionsPerPrincipal, l.MaxConnectionsPerPrincipal, 1, 100000)
		check(EnvMaxSubscriptions, l.MaxSubscriptions, 1, 1000)
	}
	checkLimits("", c.Limits, true)
	for name, l := range c.Profiles {
		if name == "" {
			bad(EnvProfiles, "a profile has an empty name")
		}
		checkLimits(EnvProfiles+"."+name+": ", l, false)
	}
	if c.MaxBatch < 1 || c.MaxBatch > 500 {
		bad(EnvMaxBatch, "%d is outside 1..500", c.MaxBatch)
	}
	if c.AuthDeadline < time.Second || c.AuthDeadline > 15*time.Minute {
		bad(EnvAuthDeadline, "%s is outside 1s..15m (SQS delays at most 15 minutes)", c.AuthDeadline)
	}
	if c.FrameBudget < 100*time.Millisecond || c.FrameBudget > 12*time.Second {
		bad(EnvFrameBudget, "%s is outside 100ms..12s (1.5 times it must fit API Gateway's 29 s timeout)", c.FrameBudget)
	}
	if c.TicketLifetime < time.Second || c.TicketLifetime > time.Hour {
		bad(EnvTicketLifetime, "%s is outside 1s..1h", c.TicketLifetime)
	}
	if c.ConnectionTTL < time.Minute {
		bad(EnvConnectionTTL, "%s is shorter than a minute", c.ConnectionTTL)
	}
	if c.HistoryRetention < time.Minute {
		bad(EnvHistoryRetention, "%s is shorter than a minute", c.HistoryRetention)
	}
	if c.EventLease < time.Second || c.EventLease > 5*time.Minute {
		bad(EnvEventLease, "%s is outside 1s..5m", c.EventLease)
	}
	if c.FanoutWorkers < 1 || c.FanoutWorkers > 1024 {
		bad(EnvFanoutWorkers, "%d is outside 1..1024", c.FanoutWorkers)
	}
	if c.FanoutPageSize < 1 || c.FanoutPageSize > 10000 {
		bad(EnvFanoutPageSize, "%d is outside 1..10000", c.FanoutPageSize)
	}
	if c.PostRate < 1 {
		bad(EnvPostRate, "must be at least 1 (PostToConnection calls per second per invocation)")
	}
	return errors.Join(errs...)
}

// LimitsFor returns the limits for a profile: the defaults, overridden by
// the profile's non-zero fields. An empty name is the default profile.
func (c Config) LimitsFor(profile string) (Limits, error) {
	l := c.Limits
	if profile == "" {
		return l, nil
	}
	p, ok := c.Profiles[profile]
	if !ok {
		return Limits{}, fmt.Errorf("unknown profile %q", profile)
	}
	if p.MaxMessageBytes != 0 {
		l.MaxMessageBytes = p.MaxMessageBytes
	}
	if p.MessagesPerSecond != 0 {
		l.MessagesPerSecond = p.MessagesPerSecond
	}
	if p.MaxConnectionsPerPrincipal != 0 {
		l.MaxConnectionsPerPrincipal = p.MaxConnectionsPerPrincipal
	}
	if p.MaxSubscriptions != 0 {
		l.MaxSubscriptions = p.MaxSubscriptions
	}
	return l, nil
}

// Matches reports whether any of the patterns matches topic t.
func Matches(patterns []topic.Pattern, t topic.Pattern) bool {
	for _, p := range patterns {
		if p.Match(t) {
			return true
		}
	}
	return false
}

type reader struct {
	getenv func(string) string
	err    error
}

func (r *reader) fail(name string, err error) {
	r.err = errors.Join(r.err, fmt.Errorf("%s: %w", name, err))
}

func (r *reader) str(name, def string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return def
}

func (r *reader) integer(name string, def int) int {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(name, fmt.Errorf("%q is not a whole number", v))
	}
	return n
}

func (r *reader) boolean(name string, def bool) bool {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, fmt.Errorf("%q is not true or false", v))
	}
	return b
}

func (r *reader) duration(name string, def time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.fail(name, fmt.Errorf("%q is not a duration like 10s or 2h10m", v))
	}
	return d
}

func (r *reader) patterns(name string) []topic.Pattern {
	v := r.getenv(name)
	if v == "" {
		return nil
	}
	var out []topic.Pattern
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := topic.ParsePattern(s)
		if err != nil {
			r.fail(name, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

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

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/topic"
)

// Environment variable names.
const (
	EnvTable              = "WSGATE_TABLE"
	EnvStage              = "WSGATE_STAGE"
	EnvManagementEndpoint = "WSGATE_MANAGEMENT_ENDPOINT"
	EnvQueueURL           = "WSGATE_QUEUE_URL"
	// EnvEventBus names the stack's EventBridge bus, where the message
	// function puts a copy of every event a client publishes.
	EnvEventBus = "WSGATE_EVENT_BUS"
	// EnvClientEventsToBus: "false" keeps client events off the bus.
	EnvClientEventsToBus = "WSGATE_CLIENT_EVENTS_TO_BUS"
	// EnvClientHistory: "false" does not keep client events for resume.
	EnvClientHistory = "WSGATE_CLIENT_HISTORY"
	// EnvPublishHook names a Lambda function (name or ARN) that checks
	// every client event before it is numbered; EnvPublishHookTimeout
	// bounds its answer.
	EnvPublishHook        = "WSGATE_PUBLISH_HOOK"
	EnvPublishHookTimeout = "WSGATE_PUBLISH_HOOK_TIMEOUT"
	// EnvLifecycleEvents: "false" puts no wsgate.connection.opened/.closed
	// events on the bus (the CDK stack then has no stream mapping either).
	EnvLifecycleEvents = "WSGATE_LIFECYCLE_EVENTS"

	EnvJWTAlg       = "WSGATE_JWT_ALG"
	EnvJWTSecret    = "WSGATE_JWT_SECRET"
	EnvJWTSecretARN = "WSGATE_JWT_SECRET_ARN"
	EnvJWTPublicKey = "WSGATE_JWT_PUBLIC_KEY"
	EnvJWKSURL      = "WSGATE_JWKS_URL"
	EnvJWTIssuer    = "WSGATE_JWT_ISSUER"
	EnvJWTAudience  = "WSGATE_JWT_AUDIENCE"
	EnvTokenCookie  = "WSGATE_TOKEN_COOKIE"
	// EnvAllowedOrigins lists the web origins browsers may connect from.
	EnvAllowedOrigins = "WSGATE_ALLOWED_ORIGINS"
	// EnvMaxTokenLifetime bounds how long a token may live (exp - iat).
	EnvMaxTokenLifetime = "WSGATE_MAX_TOKEN_LIFETIME"

	EnvAnonymousTopics = "WSGATE_ANONYMOUS_TOPICS"
	// EnvPresenceTopics lists the topic patterns whose subscribers the
	// presence command may list (none by default).
	EnvPresenceTopics = "WSGATE_PRESENCE_TOPICS"
	// EnvCursorKey is the secret presence cursors are sealed with;
	// unset, a key is derived from the HMAC token secret.
	EnvCursorKey = "WSGATE_CURSOR_KEY"
	// EnvCursorKeyARN names a Secrets Manager secret holding the cursor
	// key instead (the CDK stack generates one for RS256/ES256 tokens).
	EnvCursorKeyARN        = "WSGATE_CURSOR_KEY_ARN"
	EnvStateRequiredTopics = "WSGATE_STATE_REQUIRED_TOPICS"
	EnvAuthMessage         = "WSGATE_AUTH_MESSAGE"
	EnvAuthDeadline        = "WSGATE_AUTH_DEADLINE"

	EnvMaxMessageBytes            = "WSGATE_MAX_MESSAGE_BYTES"
	EnvMessagesPerSecond          = "WSGATE_MESSAGES_PER_SECOND"
	EnvMaxConnectionsPerPrincipal = "WSGATE_MAX_CONNECTIONS_PER_PRINCIPAL"
	EnvMaxSubscriptions           = "WSGATE_MAX_SUBSCRIPTIONS"
	EnvMaxWildcards               = "WSGATE_MAX_WILDCARDS"
	EnvMaxPendingPerIP            = "WSGATE_MAX_PENDING_PER_IP"
	EnvMaxPending                 = "WSGATE_MAX_PENDING"
	EnvMaxAnonymousPerIP          = "WSGATE_MAX_ANONYMOUS_PER_IP"
	EnvMaxBatch                   = "WSGATE_MAX_BATCH"
	EnvProfiles                   = "WSGATE_PROFILES"

	EnvHistoryRetention = "WSGATE_HISTORY_RETENTION"
	EnvEventLease       = "WSGATE_EVENT_LEASE"
	EnvHistoryDefault   = "WSGATE_HISTORY_DEFAULT"
	EnvTicketLifetime   = "WSGATE_TICKET_LIFETIME"
	EnvFrameBudget      = "WSGATE_FRAME_BUDGET"
	// EnvFrameStoreCalls bounds the store calls one client frame may make.
	EnvFrameStoreCalls = "WSGATE_FRAME_STORE_CALLS"
	// EnvMaxReplayBytes bounds the history one frame (or one ?since=
	// replay) sends; EnvMaxReplayBytesPerMinute what one connection gets.
	EnvMaxReplayBytes          = "WSGATE_MAX_REPLAY_BYTES"
	EnvMaxReplayBytesPerMinute = "WSGATE_MAX_REPLAY_BYTES_PER_MINUTE"
	// EnvMaxPrincipalReplayBytesPerMinute bounds what all of a principal's
	// connections are sent from storage (replays, current state, presence
	// pages); EnvMaxAddressReplayBytesPerMinute what all anonymous
	// connections from one source address are.
	EnvMaxPrincipalReplayBytesPerMinute = "WSGATE_MAX_PRINCIPAL_REPLAY_BYTES_PER_MINUTE"
	EnvMaxAddressReplayBytesPerMinute   = "WSGATE_MAX_ADDRESS_REPLAY_BYTES_PER_MINUTE"
	EnvConnectionTTL                    = "WSGATE_CONNECTION_TTL"

	EnvFanoutWorkers  = "WSGATE_FANOUT_WORKERS"
	EnvFanoutPageSize = "WSGATE_FANOUT_PAGE_SIZE"
	EnvPostRate       = "WSGATE_POST_RATE"
	// EnvBucketSplitAt is how many subscriptions (counted within a
	// connection's lifetime) one bucket of a pattern takes before new
	// subscriptions go to a level with twice the buckets.
	EnvBucketSplitAt = "WSGATE_BUCKET_SPLIT_AT"

	EnvLogLevel = "WSGATE_LOG_LEVEL"
)

// Defaults, documented in the README's Limits table.
const (
	DefaultStage                      = "local"
	DefaultJWTAlg                     = "HS256"
	DefaultAuthDeadline               = 5 * time.Second
	DefaultMaxMessageBytes            = 32 * 1024
	DefaultMessagesPerSecond          = 100
	DefaultMaxConnectionsPerPrincipal = 100
	DefaultMaxSubscriptions           = 100
	DefaultMaxWildcards               = 20
	DefaultMaxPendingPerIP            = 10
	DefaultMaxPending                 = 1000
	DefaultMaxAnonymousPerIP          = 20
	DefaultMaxBatch                   = 50
	DefaultHistoryRetention           = 24 * time.Hour
	// DefaultEventLease: how long an event or shard stays claimed by an
	// invocation that stops renewing (it died); a redelivery then takes
	// over. Renewed every third of it.
	DefaultEventLease     = 10 * time.Second
	DefaultTicketLifetime = 60 * time.Second
	// DefaultPublishHookTimeout bounds a publish hook's answer.
	DefaultPublishHookTimeout = 2 * time.Second
	// DefaultFrameBudget bounds the work of one client frame, well inside
	// API Gateway's 29 s integration timeout.
	DefaultFrameBudget = 10 * time.Second
	// DefaultFrameStoreCalls: a subscribe of 99 device ids (99
	// transactions and 99 sequence reads) fits; two do not.
	DefaultFrameStoreCalls = 200
	// DefaultMaxReplayBytes and DefaultMaxReplayBytesPerMinute bound what
	// resumes send: a 3 KB frame of 50 resumes must not send 100 MB.
	DefaultMaxReplayBytes          = 1 << 20
	DefaultMaxReplayBytesPerMinute = 8 << 20
	// DefaultMaxPrincipalReplayBytesPerMinute and
	// DefaultMaxAddressReplayBytesPerMinute: what 10 connections of one
	// principal, or 75 reconnects with ?since=0, may be sent in a minute
	// from storage (they took 80 and 73 MiB in 30 s).
	DefaultMaxPrincipalReplayBytesPerMinute = 16 << 20
	DefaultMaxAddressReplayBytesPerMinute   = 16 << 20
	DefaultConnectionTTL                    = 2*time.Hour + 10*time.Minute
	DefaultFanoutWorkers                    = 64
	DefaultFanoutPageSize                   = 1000
	DefaultPostRate                         = 2000
	DefaultBucketSplitAt                    = 2000
	// DefaultAllowedOrigins: none listed, so the Origin header is not
	// checked, which is allowed only without a token cookie.
	DefaultAllowedOrigins = ""
	// DefaultMaxTokenLifetime: a token living longer (exp in 2200) is a
	// permanent credential once stolen.
	DefaultMaxTokenLifetime = auth.DefaultMaxTokenLifetime
)

// Hard ceilings that configuration cannot raise: API Gateway's own limits.
const (
	MaxFrameBytes   = 32 * 1024
	MaxPayloadBytes = 128 * 1024
	// MinReplayBytes is the smallest replay cap: one enveloped event of
	// MaxPayloadBytes (base64) fits.
	MinReplayBytes = 256 * 1024
)

// Limits are the per-connection abuse limits. A profile overrides some of
// them for the principals whose token names it.
type Limits struct {
	MaxMessageBytes            int `json:"max_message_bytes,omitempty"`
	MessagesPerSecond          int `json:"messages_per_second,omitempty"`
	MaxConnectionsPerPrincipal int `json:"max_connections_per_principal,omitempty"`
	MaxSubscriptions           int `json:"max_subscriptions,omitempty"`
	// MaxWildcards bounds the distinct wildcard patterns a principal's
	// connections hold together: each is an index entry that every event
	// under its prefix reads. 0 (a record written before it existed) is
	// no bound.
	MaxWildcards int `json:"max_wildcards,omitempty"`
}

// Config is every setting a function needs.
type Config struct {
	Table              string
	Stage              string
	ManagementEndpoint string
	QueueURL           string
	EventBus           string
	ClientEventsToBus  bool
	ClientHistory      bool
	LifecycleEvents    bool
	PublishHook        string
	PublishHookTimeout time.Duration

	JWTAlg       string
	JWTSecret    string
	JWTSecretARN string
	JWTPublicKey string
	JWKSURL      string
	JWTIssuer    string
	JWTAudience  string
	TokenCookie  string
	// CursorKey seals presence cursors (empty: the HMAC token secret does;
	// required with presence topics and RS256/ES256 tokens).
	CursorKey string
	// CursorKeyARN is the secret holding CursorKey, read at start-up.
	CursorKeyARN string
	// AllowedOrigins are the pages browsers may open connections from. When
	// set, a handshake with any other Origin is refused; a cookie token
	// also needs one of them (cross-site WebSocket hijacking).
	AllowedOrigins []OriginPattern

	AnonymousTopics     []topic.Pattern
	PresenceTopics      []topic.Pattern
	StateRequiredTopics []topic.Pattern
	AuthMessage         bool
	AuthDeadline        time.Duration
	// MaxPendingPerIP and MaxPending bound the connections waiting to
	// authenticate (auth-message mode), per source address and in all:
	// $connect answers 429 beyond them. A pending connection holds its
	// place until it authenticates, closes or its AuthDeadline passes.
	MaxPendingPerIP int
	MaxPending      int
	// MaxAnonymousPerIP bounds the anonymous (token-less, scoped)
	// connections open from one source address: $connect answers 429
	// beyond it. A connection holds its place until it closes or its
	// record expires.
	MaxAnonymousPerIP int

	Limits   Limits
	Profiles map[string]Limits
	MaxBatch int

	HistoryRetention time.Duration
	EventLease       time.Duration
	HistoryDefault   bool
	TicketLifetime   time.Duration
	MaxTokenLifetime time.Duration
	// FrameBudget is how long the commands of one client frame may run:
	// commands not started within it are answered "unavailable" (send
	// again), and store calls stop half as much (at least 5 s) later.
	FrameBudget time.Duration
	// FrameStoreCalls bounds the store calls of one client frame: a
	// command that would take the frame past it is refused whole, before
	// it writes anything.
	FrameStoreCalls int
	// MaxReplayBytes bounds the replayed frames one client frame (all its
	// resumes) or one ?since= replay sends; MaxReplayBytesPerMinute the
	// replayed bytes one connection gets: a bucket of that many, refilled
	// over a minute, with no reset at a minute's edge (in its record).
	MaxReplayBytes          int
	MaxReplayBytesPerMinute int
	// MaxPrincipalReplayBytesPerMinute bounds the same bytes for all the
	// connections of a principal together, across handshakes;
	// MaxAddressReplayBytesPerMinute for all the anonymous connections
	// from one source address. Each is a bucket like the connection's, in
	// an item of its own.
	MaxPrincipalReplayBytesPerMinute int
	MaxAddressReplayBytesPerMinute   int
	ConnectionTTL                    time.Duration

	FanoutWorkers  int
	FanoutPageSize int
	PostRate       int
	BucketSplitAt  int

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
		EventBus:            getenv(EnvEventBus),
		ClientEventsToBus:   r.boolean(EnvClientEventsToBus, true),
		ClientHistory:       r.boolean(EnvClientHistory, true),
		LifecycleEvents:     r.boolean(EnvLifecycleEvents, true),
		PublishHook:         getenv(EnvPublishHook),
		PublishHookTimeout:  r.duration(EnvPublishHookTimeout, DefaultPublishHookTimeout),
		JWTAlg:              strings.ToUpper(r.str(EnvJWTAlg, DefaultJWTAlg)),
		JWTSecret:           getenv(EnvJWTSecret),
		JWTSecretARN:        getenv(EnvJWTSecretARN),
		JWTPublicKey:        getenv(EnvJWTPublicKey),
		JWKSURL:             getenv(EnvJWKSURL),
		JWTIssuer:           getenv(EnvJWTIssuer),
		JWTAudience:         getenv(EnvJWTAudience),
		TokenCookie:         getenv(EnvTokenCookie),
		CursorKey:           getenv(EnvCursorKey),
		CursorKeyARN:        getenv(EnvCursorKeyARN),
		AllowedOrigins:      r.origins(EnvAllowedOrigins, DefaultAllowedOrigins),
		AnonymousTopics:     r.patterns(EnvAnonymousTopics),
		PresenceTopics:      r.patterns(EnvPresenceTopics),
		StateRequiredTopics: r.patterns(EnvStateRequiredTopics),
		AuthMessage:         r.boolean(EnvAuthMessage, true),
		AuthDeadline:        r.duration(EnvAuthDeadline, DefaultAuthDeadline),
		MaxPendingPerIP:     r.integer(EnvMaxPendingPerIP, DefaultMaxPendingPerIP),
		MaxPending:          r.integer(EnvMaxPending, DefaultMaxPending),
		MaxAnonymousPerIP:   r.integer(EnvMaxAnonymousPerIP, DefaultMaxAnonymousPerIP),
		Limits: Limits{
			MaxMessageBytes:            r.integer(EnvMaxMessageBytes, DefaultMaxMessageBytes),
			MessagesPerSecond:          r.integer(EnvMessagesPerSecond, DefaultMessagesPerSecond),
			MaxConnectionsPerPrincipal: r.integer(EnvMaxConnectionsPerPrincipal, DefaultMaxConnectionsPerPrincipal),
			MaxSubscriptions:           r.integer(EnvMaxSubscriptions, DefaultMaxSubscriptions),
			MaxWildcards:               r.integer(EnvMaxWildcards, DefaultMaxWildcards),
		},
		MaxBatch:                         r.integer(EnvMaxBatch, DefaultMaxBatch),
		HistoryRetention:                 r.duration(EnvHistoryRetention, DefaultHistoryRetention),
		EventLease:                       r.duration(EnvEventLease, DefaultEventLease),
		HistoryDefault:                   r.boolean(EnvHistoryDefault, false),
		TicketLifetime:                   r.duration(EnvTicketLifetime, DefaultTicketLifetime),
		MaxTokenLifetime:                 r.duration(EnvMaxTokenLifetime, DefaultMaxTokenLifetime),
		FrameBudget:                      r.duration(EnvFrameBudget, DefaultFrameBudget),
		FrameStoreCalls:                  r.integer(EnvFrameStoreCalls, DefaultFrameStoreCalls),
		MaxReplayBytes:                   r.integer(EnvMaxReplayBytes, DefaultMaxReplayBytes),
		MaxReplayBytesPerMinute:          r.integer(EnvMaxReplayBytesPerMinute, DefaultMaxReplayBytesPerMinute),
		MaxPrincipalReplayBytesPerMinute: r.integer(EnvMaxPrincipalReplayBytesPerMinute, DefaultMaxPrincipalReplayBytesPerMinute),
		MaxAddressReplayBytesPerMinute:   r.integer(EnvMaxAddressReplayBytesPerMinute, DefaultMaxAddressReplayBytesPerMinute),
		ConnectionTTL:                    r.duration(EnvConnectionTTL, DefaultConnectionTTL),
		FanoutWorkers:                    r.integer(EnvFanoutWorkers, DefaultFanoutWorkers),
		FanoutPageSize:                   r.integer(EnvFanoutPageSize, DefaultFanoutPageSize),
		BucketSplitAt:                    r.integer(EnvBucketSplitAt, DefaultBucketSplitAt),
		PostRate:                         r.integer(EnvPostRate, DefaultPostRate),
		LogLevel:                         r.str(EnvLogLevel, "info"),
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
	var p problems
	if c.Table == "" {
		p.bad(EnvTable, "is required (the DynamoDB table name)")
	}
	c.validateAuth(&p)
	c.validateLimits(&p)
	c.validateWork(&p)
	return errors.Join(p...)
}

// problems collects what is wrong with a configuration, each naming its
// variable.
type problems []error

func (p *problems) bad(name, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// ints refuses v outside lo..hi.
func (p *problems) ints(name string, v, lo, hi int) {
	if v < lo || v > hi {
		p.bad(name, "%d is outside %d..%d", v, lo, hi)
	}
}

// durations refuses d outside lo..hi; why, when given, follows the range.
func (p *problems) durations(name string, d, lo, hi time.Duration, why string) {
	if d < lo || d > hi {
		if why != "" {
			why = " (" + why + ")"
		}
		p.bad(name, "%s is outside %s..%s%s", d, lo, hi, why)
	}
}

func (c Config) validateAuth(p *problems) {
	switch c.JWTAlg {
	case "HS256", "HS384", "HS512":
		if c.JWTSecret == "" && c.JWTSecretARN == "" {
			p.bad(EnvJWTSecret, "or %s is required for %s", EnvJWTSecretARN, c.JWTAlg)
		}
		if err := c.CheckJWTSecret(c.JWTSecret); c.JWTSecret != "" && err != nil {
			p.bad(EnvJWTSecret, "%v", err)
		}
	case "RS256", "ES256":
		if c.JWTPublicKey == "" && c.JWKSURL == "" {
			p.bad(EnvJWTPublicKey, "or %s is required for %s", EnvJWKSURL, c.JWTAlg)
		}
	default:
		p.bad(EnvJWTAlg, "%q is not one of HS256, HS384, HS512, RS256, ES256", c.JWTAlg)
	}
	p.durations(EnvAuthDeadline, c.AuthDeadline, time.Second, 15*time.Minute, "SQS delays at most 15 minutes")
	p.durations(EnvTicketLifetime, c.TicketLifetime, time.Second, time.Hour, "")
	p.durations(EnvPublishHookTimeout, c.PublishHookTimeout, 100*time.Millisecond, 10*time.Second, "the message function answers within API Gateway's 29 s")
	if c.MaxTokenLifetime < time.Minute || c.MaxTokenLifetime > 30*24*time.Hour {
		p.bad(EnvMaxTokenLifetime, "%s is outside 1m..720h (30 days)", c.MaxTokenLifetime)
	} else if c.TicketLifetime > c.MaxTokenLifetime {
		p.bad(EnvTicketLifetime, "%s is longer than %s (%s): tickets would be refused", c.TicketLifetime, EnvMaxTokenLifetime, c.MaxTokenLifetime)
	}
	c.validateCursorKey(p)
	if c.TokenCookie != "" && len(c.AllowedOrigins) == 0 {
		p.bad(EnvAllowedOrigins, "is required when %s is set: any web page could otherwise open the gateway with its visitors' cookie and read their events; list your pages' origins, e.g. https://app.example.com,https://*.example.com", EnvTokenCookie)
	}
}

// validateLimits checks the per-connection limits and each profile's
// (whose zero values inherit the defaults).
func (c Config) validateLimits(p *problems) {
	checkLimits := func(prefix string, l Limits, required bool) {
		check := func(name string, v, lo, hi int) {
			if v != 0 || required {
				p.ints(prefix+name, v, lo, hi)
			}
		}
		check(EnvMaxMessageBytes, l.MaxMessageBytes, 64, MaxFrameBytes)
		check(EnvMessagesPerSecond, l.MessagesPerSecond, 1, 10000)
		check(EnvMaxConnectionsPerPrincipal, l.MaxConnectionsPerPrincipal, 1, 100000)
		check(EnvMaxSubscriptions, l.MaxSubscriptions, 1, 1000)
		check(EnvMaxWildcards, l.MaxWildcards, 1, 1000)
	}
	checkLimits("", c.Limits, true)
	for name, l := range c.Profiles {
		if name == "" {
			p.bad(EnvProfiles, "a profile has an empty name")
		}
		checkLimits(EnvProfiles+"."+name+": ", l, false)
	}
	p.ints(EnvMaxBatch, c.MaxBatch, 1, 500)
	p.ints(EnvMaxPending, c.MaxPending, 1, 1000000)
	if c.MaxPendingPerIP < 1 || c.MaxPendingPerIP > c.MaxPending {
		p.bad(EnvMaxPendingPerIP, "%d is outside 1..%d (%s)", c.MaxPendingPerIP, c.MaxPending, EnvMaxPending)
	}
	p.ints(EnvMaxAnonymousPerIP, c.MaxAnonymousPerIP, 1, 100000)
	p.durations(EnvFrameBudget, c.FrameBudget, 100*time.Millisecond, 12*time.Second, "1.5 times it must fit API Gateway's 29 s timeout")
	p.ints(EnvFrameStoreCalls, c.FrameStoreCalls, 10, 10000)
	// One replayed event (a 128 KB payload, base64 in an envelope) must
	// fit, or a resume behind it could never get past it.
	if c.MaxReplayBytes < MinReplayBytes || c.MaxReplayBytes > 64<<20 {
		p.bad(EnvMaxReplayBytes, "%d is outside %d..%d (256 KiB..64 MiB)", c.MaxReplayBytes, MinReplayBytes, 64<<20)
	}
	if c.MaxReplayBytesPerMinute < c.MaxReplayBytes || c.MaxReplayBytesPerMinute > 1<<30 {
		p.bad(EnvMaxReplayBytesPerMinute, "%d is outside %s (%d)..%d (1 GiB)", c.MaxReplayBytesPerMinute, EnvMaxReplayBytes, c.MaxReplayBytes, 1<<30)
	}
	for _, b := range []struct {
		name string
		v    int
	}{{EnvMaxPrincipalReplayBytesPerMinute, c.MaxPrincipalReplayBytesPerMinute}, {EnvMaxAddressReplayBytesPerMinute, c.MaxAddressReplayBytesPerMinute}} {
		if b.v < c.MaxReplayBytes || b.v > 16<<30 {
			p.bad(b.name, "%d is outside %s (%d)..%d (16 GiB)", b.v, EnvMaxReplayBytes, c.MaxReplayBytes, 16<<30)
		}
	}
}

// validateWork checks the storage lifetimes and the fan-out's settings.
func (c Config) validateWork(p *problems) {
	// A revocation is kept at least a day (store.Revoke): a connection
	// must not outlive that.
	p.durations(EnvConnectionTTL, c.ConnectionTTL, time.Minute, 24*time.Hour, "")
	if c.HistoryRetention < time.Minute {
		p.bad(EnvHistoryRetention, "%s is shorter than a minute", c.HistoryRetention)
	}
	p.durations(EnvEventLease, c.EventLease, time.Second, 5*time.Minute, "")
	p.ints(EnvFanoutWorkers, c.FanoutWorkers, 1, 1024)
	p.ints(EnvFanoutPageSize, c.FanoutPageSize, 1, 10000)
	p.ints(EnvBucketSplitAt, c.BucketSplitAt, 1, 100000)
	if c.PostRate < 1 {
		p.bad(EnvPostRate, "must be at least 1 (PostToConnection calls per second per invocation)")
	}
}

// validateCursorKey checks the secret presence cursors are sealed with:
// strong enough when given, and given when no HMAC token secret can stand
// in for it on a deployment that lists presence.
func (c Config) validateCursorKey(p *problems) {
	hmacTokens := strings.HasPrefix(c.JWTAlg, "HS")
	switch {
	case c.CursorKey != "" && c.Stage != DefaultStage && auth.CheckSecret("HS256", []byte(c.CursorKey)) != nil:
		p.bad(EnvCursorKey, "must be at least %d bytes (generate one with: openssl rand -base64 32)", auth.MinSecretBytes("HS256"))
	case c.CursorKey == "" && c.CursorKeyARN == "" && !hmacTokens && len(c.PresenceTopics) > 0:
		p.bad(EnvCursorKey, "(or "+EnvCursorKeyARN+") is required with %s when tokens are %s: presence cursors are sealed with it so that no client can read or forge them (HMAC tokens derive it from their secret); generate one with: openssl rand -base64 32", EnvPresenceTopics, c.JWTAlg)
	}
}

// CheckJWTSecret refuses an HMAC secret shorter than the algorithm's hash
// (auth.MinSecretBytes: 32 bytes for HS256) or obviously a pattern
// ("aaaa...", "0123456789..."), either of which can be brute-forced from
// any one token, on every stage but local, whose development secret is
// short and public anyway. Load checks WSGATE_JWT_SECRET; a secret read
// from Secrets Manager is checked by whoever reads it.
func (c Config) CheckJWTSecret(secret string) error {
	if c.Stage == DefaultStage {
		return nil
	}
	if err := auth.CheckSecret(c.JWTAlg, []byte(secret)); err != nil {
		return fmt.Errorf("%w; only stage %q accepts a weak development secret; generate one with: openssl rand -base64 48", err, DefaultStage)
	}
	return nil
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
	if p.MaxWildcards != 0 {
		l.MaxWildcards = p.MaxWildcards
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

// origins reads a comma-separated list of origin patterns.
func (r *reader) origins(name, def string) []OriginPattern {
	var out []OriginPattern
	for _, s := range strings.Split(r.str(name, def), ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := ParseOriginPattern(s)
		if err != nil {
			r.fail(name, err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// OriginPattern is an allowed web origin, scheme://host[:port]. A host
// starting with "*." matches one or more DNS labels in place of the "*";
// scheme and port must match exactly (no port matches only no port, as
// browsers omit the default one).
type OriginPattern struct {
	scheme, host, port string
	wildcard           bool
}

// ParseOriginPattern parses an origin pattern such as https://app.example.com,
// https://*.example.com or http://localhost:4510.
func ParseOriginPattern(s string) (OriginPattern, error) {
	if strings.TrimSpace(s) == "*" {
		return OriginPattern{}, errors.New(`"*" is not an origin: list the origins of your pages (https://app.example.com, https://*.example.com), or leave the list empty to check no Origin (not allowed with a token cookie)`)
	}
	var p OriginPattern
	rest := strings.ToLower(s)
	if scheme, host, ok := strings.Cut(rest, "://"); ok && strings.HasPrefix(host, "*.") {
		p.wildcard, rest = true, scheme+"://"+host[len("*."):]
	}
	var err error
	if p.scheme, p.host, p.port, err = splitOrigin(rest); err != nil {
		return OriginPattern{}, fmt.Errorf("origin %q: %w", s, err)
	}
	if p.wildcard && (strings.HasPrefix(p.host, "[") || strings.Trim(p.host, "0123456789.") == "") {
		return OriginPattern{}, fmt.Errorf("origin %q: a * stands for DNS labels, not an IP address", s)
	}
	if p.wildcard && publicSuffix(p.host) {
		return OriginPattern{}, fmt.Errorf("origin %q: %q is a public suffix (anyone can register a name under it), so *.%s would admit every site there; name your own domain, e.g. https://*.example.com", s, p.host, p.host)
	}
	return p, nil
}

// Match reports whether origin, an Origin header's value, is allowed.
func (p OriginPattern) Match(origin string) bool {
	scheme, host, port, err := splitOrigin(strings.ToLower(origin))
	if err != nil || scheme != p.scheme || port != p.port {
		return false
	}
	if !p.wildcard {
		return host == p.host
	}
	// splitOrigin refuses empty labels, so a non-empty prefix is whole labels.
	prefix, ok := strings.CutSuffix(host, "."+p.host)
	return ok && prefix != ""
}

// String is the pattern as written, lower-cased.
func (p OriginPattern) String() string {
	s := p.scheme + "://"
	if p.wildcard {
		s += "*."
	}
	s += p.host
	if p.port != "" {
		s += ":" + p.port
	}
	return s
}

// AllowsOrigin reports whether any of the patterns matches origin.
func AllowsOrigin(patterns []OriginPattern, origin string) bool {
	for _, p := range patterns {
		if p.Match(origin) {
			return true
		}
	}
	return false
}

// splitOrigin splits a lower-case scheme://host[:port], the form browsers
// send in Origin: no path, user or query, DNS labels or an IP address.
func splitOrigin(s string) (scheme, host, port string, err error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || !validScheme(scheme) {
		return "", "", "", errors.New("want scheme://host[:port], e.g. https://app.example.com")
	}
	if rest == "" || strings.ContainsAny(rest, "/?#@\\ \t") {
		return "", "", "", errors.New("want scheme://host[:port] and nothing else: an origin has no path, query or user")
	}
	host = rest
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.HasSuffix(rest, "]") {
		host, port = rest[:i], rest[i+1:]
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return "", "", "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
	}
	if !validHost(host) {
		return "", "", "", fmt.Errorf("host %q is not DNS labels or an IP address (a * stands only for whole leftmost labels: https://*.example.com)", host)
	}
	return scheme, host, port, nil
}

func validScheme(s string) bool {
	for i, c := range s {
		letter := c >= 'a' && c <= 'z'
		if !letter && (i == 0 || !(c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// validHost accepts dot-separated labels of letters, digits, '-' and '_',
// or a bracketed IPv6 address.
func validHost(h string) bool {
	if inner, ok := strings.CutPrefix(h, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		return ok && strings.Contains(inner, ":") && strings.Trim(inner, "0123456789abcdef:.") == ""
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
			return false
		}
	}
	return true
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Defaults of the stack's own settings. The functions' settings (limits,
// token options) have no default here: unset, they are left out of the
// environment and the function uses the default in shared/config.
const (
	DefaultStage               = "dev"
	DefaultThrottleRate        = 2000 // requests per second, per route (default route throttling)
	DefaultThrottleBurst       = 1000
	DefaultLogRetentionDays    = 30
	DefaultQueueMaxConcurrency = 50
	// DefaultMessageReservedConcurrency is none. A reservation keeps a
	// flood of client frames from taking every concurrent execution
	// $connect and broadcast need, but Lambda refuses one that would leave
	// the account fewer than 100 unreserved executions: on a new account
	// (a quota of 10 or 50) any reservation fails the deploy, and on the
	// default quota of 1,000 a reservation of 100 is a tenth of it. Set
	// messageReservedConcurrency once the account's quota allows it.
	DefaultMessageReservedConcurrency = 0
	DefaultBinDir                     = "../bin"
	DefaultArchitecture               = "arm64"
)

// Functions are the four Lambda functions `make build` packages as
// bin/<name>.zip.
var Functions = []string{"connect", "disconnect", "message", "broadcast"}

// Settings are the stack's inputs, read from CDK context (`-c key=value` or
// cdk.json). docs/deploy.md lists them with their defaults.
type Settings struct {
	Stage string
	// Prod turns on deletion protection and RETAIN for stateful resources.
	Prod bool

	// Custom domain: both or neither.
	DomainName     string
	CertificateArn string

	JWTAlg          string
	JWTSecretArn    string // existing secret (HS*); otherwise one is generated
	JWTSecretKeyArn string // the KMS key of that secret, when it is not the AWS managed key
	JWTPublicKey    string // RS256/ES256: PEM public key (not secret)
	JWKSURL         string // RS256/ES256: JWKS endpoint

	ThrottleRate     float64
	ThrottleBurst    float64
	LogRetentionDays int
	AlarmEmail       string
	BinDir           string
	// Architecture of the function zips: arm64 (make build's default) or
	// x86_64 (make build LAMBDA_ARCH=amd64), e.g. for LocalStack on x86.
	Architecture        string
	QueueMaxConcurrency int
	// DisconnectMaxConcurrency is the most concurrent disconnect
	// invocations draining the disconnect queue: the account's
	// concurrency a cut of every connection may take at once.
	DisconnectMaxConcurrency int
	// MessageReservedConcurrency is the message function's reserved
	// concurrency: at most this many frames run at once, and the rest of
	// the account's concurrency stays for the other functions. 0 (the
	// default): none.
	MessageReservedConcurrency int
	// APIGatewayCloudWatchRole sets the account's API Gateway CloudWatch
	// Logs role (needed once per account and region for access logs).
	APIGatewayCloudWatchRole bool

	// FunctionEnv holds the function settings the user configured, by
	// environment variable name. Unset ones are absent.
	FunctionEnv map[string]string
}

// HMAC reports whether the token algorithm uses a shared secret.
func (s Settings) HMAC() bool { return strings.HasPrefix(s.JWTAlg, "HS") }

type kind int

const (
	text kind = iota
	list
	boolean
	integer
	duration
	jsonObject
)

// functionSettings maps context keys to the functions' environment
// variables. Only the ones set in context reach the functions.
var functionSettings = []struct {
	key  string
	env  string
	kind kind
}{
	{"jwtIssuer", config.EnvJWTIssuer, text},
	{"jwtAudience", config.EnvJWTAudience, text},
	{"tokenCookie", config.EnvTokenCookie, text},
	{"allowedOrigins", config.EnvAllowedOrigins, list},
	{"anonymousTopics", config.EnvAnonymousTopics, list},
	{"presenceTopics", config.EnvPresenceTopics, list},
	{"stateRequiredTopics", config.EnvStateRequiredTopics, list},
	{"authMessage", config.EnvAuthMessage, boolean},
	{"authDeadline", config.EnvAuthDeadline, duration},
	{"maxMessageBytes", config.EnvMaxMessageBytes, integer},
	{"messagesPerSecond", config.EnvMessagesPerSecond, integer},
	{"maxConnectionsPerPrincipal", config.EnvMaxConnectionsPerPrincipal, integer},
	{"maxSubscriptions", config.EnvMaxSubscriptions, integer},
	{"maxBatch", config.EnvMaxBatch, integer},
	{"frameBudget", config.EnvFrameBudget, duration},
	{"maxWildcards", config.EnvMaxWildcards, integer},
	{"maxPendingPerIp", config.EnvMaxPendingPerIP, integer},
	{"maxPending", config.EnvMaxPending, integer},
	{"maxAnonymousPerIp", config.EnvMaxAnonymousPerIP, integer},
	{"frameStoreCalls", config.EnvFrameStoreCalls, integer},
	{"maxReplayBytes", config.EnvMaxReplayBytes, integer},
	{"maxReplayBytesPerMinute", config.EnvMaxReplayBytesPerMinute, integer},
	{"maxPrincipalReplayBytesPerMinute", config.EnvMaxPrincipalReplayBytesPerMinute, integer},
	{"maxAddressReplayBytesPerMinute", config.EnvMaxAddressReplayBytesPerMinute, integer},
	{"profiles", config.EnvProfiles, jsonObject},
	{"historyRetention", config.EnvHistoryRetention, duration},
	{"historyDefault", config.EnvHistoryDefault, boolean},
	{"clientHistory", config.EnvClientHistory, boolean},
	{"clientEventsToBus", config.EnvClientEventsToBus, boolean},
	{"lifecycleEvents", config.EnvLifecycleEvents, boolean},
	{"publishHook", config.EnvPublishHook, text},
	{"publishHookTimeout", config.EnvPublishHookTimeout, duration},
	{"ticketLifetime", config.EnvTicketLifetime, duration},
	{"maxTokenLifetime", config.EnvMaxTokenLifetime, duration},
	{"connectionTtl", config.EnvConnectionTTL, duration},
	{"fanoutWorkers", config.EnvFanoutWorkers, integer},
	{"fanoutPageSize", config.EnvFanoutPageSize, integer},
	{"bucketSplitAt", config.EnvBucketSplitAt, integer},
	{"postRate", config.EnvPostRate, integer},
	{"eventLease", config.EnvEventLease, duration},
	{"logLevel", config.EnvLogLevel, text},
}

// stageName: API Gateway stage names and EventBridge bus names both accept it.
var stageName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// retention maps the days CloudWatch Logs accepts to CDK's enum.
var retention = map[int]awslogs.RetentionDays{
	1: awslogs.RetentionDays_ONE_DAY, 3: awslogs.RetentionDays_THREE_DAYS, 5: awslogs.RetentionDays_FIVE_DAYS,
	7: awslogs.RetentionDays_ONE_WEEK, 14: awslogs.RetentionDays_TWO_WEEKS, 30: awslogs.RetentionDays_ONE_MONTH,
	60: awslogs.RetentionDays_TWO_MONTHS, 90: awslogs.RetentionDays_THREE_MONTHS, 120: awslogs.RetentionDays_FOUR_MONTHS,
	150: awslogs.RetentionDays_FIVE_MONTHS, 180: awslogs.RetentionDays_SIX_MONTHS, 365: awslogs.RetentionDays_ONE_YEAR,
	400: awslogs.RetentionDays_THIRTEEN_MONTHS, 545: awslogs.RetentionDays_EIGHTEEN_MONTHS, 731: awslogs.RetentionDays_TWO_YEARS,
	1096: awslogs.RetentionDays_THREE_YEARS, 1827: awslogs.RetentionDays_FIVE_YEARS, 2192: awslogs.RetentionDays_SIX_YEARS,
	2557: awslogs.RetentionDays_SEVEN_YEARS, 2922: awslogs.RetentionDays_EIGHT_YEARS, 3288: awslogs.RetentionDays_NINE_YEARS,
	3653: awslogs.RetentionDays_TEN_YEARS,
}

// SettingsFromContext reads and validates the settings. Every error names
// the context key at fault.
func SettingsFromContext(node constructs.Node) (Settings, error) {
	return settingsFrom(func(k string) any { return node.TryGetContext(jsii.String(k)) })
}

// settingsFrom reads the settings through get, which returns a context
// value or nil.
func settingsFrom(get func(string) any) (Settings, error) {
	r := contextReader{get: get}
	s := Settings{
		Stage:                      r.str("stage", DefaultStage),
		DomainName:                 r.str("domainName", ""),
		CertificateArn:             r.str("certificateArn", ""),
		JWTAlg:                     strings.ToUpper(r.str("jwtAlg", config.DefaultJWTAlg)),
		JWTSecretArn:               r.str("jwtSecretArn", ""),
		JWTSecretKeyArn:            r.str("jwtSecretKeyArn", ""),
		JWTPublicKey:               r.str("jwtPublicKey", ""),
		JWKSURL:                    r.str("jwksUrl", ""),
		ThrottleRate:               float64(r.integer("throttleRate", DefaultThrottleRate)),
		ThrottleBurst:              float64(r.integer("throttleBurst", DefaultThrottleBurst)),
		LogRetentionDays:           r.integer("logRetentionDays", DefaultLogRetentionDays),
		AlarmEmail:                 r.str("alarmEmail", ""),
		BinDir:                     r.str("binDir", DefaultBinDir),
		Architecture:               r.str("architecture", DefaultArchitecture),
		QueueMaxConcurrency:        r.integer("queueMaxConcurrency", DefaultQueueMaxConcurrency),
		DisconnectMaxConcurrency:   r.integer("disconnectMaxConcurrency", queue.DefaultDisconnectMaxConcurrency),
		MessageReservedConcurrency: r.integer("messageReservedConcurrency", DefaultMessageReservedConcurrency),
		APIGatewayCloudWatchRole:   r.boolean("apiGatewayCloudWatchRole", true),
		FunctionEnv:                map[string]string{},
	}
	s.Prod = r.boolean("prod", false) || s.Stage == "prod"

	if !stageName.MatchString(s.Stage) {
		r.fail("stage", "%q: use 1-64 letters, digits, '-' or '_'", s.Stage)
	}
	if (s.DomainName == "") != (s.CertificateArn == "") {
		r.fail("domainName", "and certificateArn go together (the ACM certificate must be in the stack's region)")
	}
	switch s.JWTAlg {
	case "HS256", "HS384", "HS512":
		if s.JWTPublicKey != "" || s.JWKSURL != "" {
			r.fail("jwtPublicKey", "and jwksUrl are for RS256/ES256; jwtAlg is %s", s.JWTAlg)
		}
	case "RS256", "ES256":
		if s.JWTPublicKey == "" && s.JWKSURL == "" {
			r.fail("jwtPublicKey", "or jwksUrl is required for %s", s.JWTAlg)
		}
		if s.JWTSecretArn != "" {
			r.fail("jwtSecretArn", "is for HS256/HS384/HS512; jwtAlg is %s", s.JWTAlg)
		}
	default:
		r.fail("jwtAlg", "%q is not one of HS256, HS384, HS512, RS256, ES256", s.JWTAlg)
	}
	if s.JWTSecretKeyArn != "" && s.JWTSecretArn == "" {
		r.fail("jwtSecretKeyArn", "only applies with jwtSecretArn")
	}
	if s.JWTSecretArn != "" {
		r.checkSecretArn(s.JWTSecretArn)
	}
	if s.Architecture != "arm64" && s.Architecture != "x86_64" {
		r.fail("architecture", "%q is not arm64 or x86_64 (build the zips to match: make build LAMBDA_ARCH=arm64|amd64)", s.Architecture)
	}
	if s.ThrottleRate < 1 || s.ThrottleBurst < 1 {
		r.fail("throttleRate", "and throttleBurst must be at least 1")
	}
	if _, ok := retention[s.LogRetentionDays]; !ok {
		r.fail("logRetentionDays", "%d is not a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ... 3653)", s.LogRetentionDays)
	}
	if s.QueueMaxConcurrency < 2 || s.QueueMaxConcurrency > 1000 {
		r.fail("queueMaxConcurrency", "%d is outside 2..1000 (Lambda's limits for SQS event sources)", s.QueueMaxConcurrency)
	}
	if s.DisconnectMaxConcurrency < 2 || s.DisconnectMaxConcurrency > 1000 {
		r.fail("disconnectMaxConcurrency", "%d is outside 2..1000 (Lambda's limits for SQS event sources)", s.DisconnectMaxConcurrency)
	}
	if s.MessageReservedConcurrency < 0 || s.MessageReservedConcurrency > 10000 {
		r.fail("messageReservedConcurrency", "%d is outside 0..10000 (0: no reservation; it must leave the account 100 unreserved)", s.MessageReservedConcurrency)
	}
	if s.AlarmEmail != "" && !strings.Contains(s.AlarmEmail, "@") {
		r.fail("alarmEmail", "%q is not an email address", s.AlarmEmail)
	}

	for _, fs := range functionSettings {
		if v, ok := r.functionValue(fs.key, fs.kind); ok {
			s.FunctionEnv[fs.env] = v
		}
	}
	r.checkStreamFilters(s)
	if r.err != nil {
		return Settings{}, r.err
	}
	return s, nil
}

// secretArn is a Secrets Manager secret's ARN; suffixed ends with what
// may be the six random characters Secrets Manager adds to a name.
var (
	secretArn = regexp.MustCompile(`^arn:[a-z-]+:secretsmanager:[a-z0-9-]*:[0-9]*:secret:.+$`)
	suffixed  = regexp.MustCompile(`-[A-Za-z0-9]{6}$`)
)

// checkSecretArn accepts the ARN of a secret without Secrets Manager's
// random suffix (a partial ARN: the functions read the secret by it, and
// their permission covers name-??????). An ARN that ends in a hyphen and
// six characters is ambiguous, and Secrets Manager resolves it as a
// complete ARN: a secret named like wsgate-jwt-secret cannot be found by
// its partial ARN, and nothing offline tells a complete ARN from such a
// name's partial one. So both are refused, saying what to give instead.
func (r *contextReader) checkSecretArn(arn string) {
	switch {
	case !secretArn.MatchString(arn):
		r.fail("jwtSecretArn", "%q is not a Secrets Manager secret's ARN (arn:aws:secretsmanager:<region>:<account>:secret:<name>)", arn)
	case suffixed.MatchString(arn):
		end := arn[len(arn)-7:]
		r.fail("jwtSecretArn", "%q ends in a hyphen and six characters (%q), which Secrets Manager reads as a complete ARN's random suffix. "+
			"If it is that suffix, give the ARN without it: %s. "+
			"If it is the end of the secret's name, rename the secret: Secrets Manager cannot find a name ending in a hyphen and six characters by its ARN, and advises against such names",
			arn, end, strings.TrimSuffix(arn, end))
	}
}

// Lambda's limits of an event source mapping's filters.
const (
	maxStreamFilters       = 5
	maxStreamFilterPattern = 4096 // characters
)

// StreamFilters are the filters of the table stream's mapping to the
// broadcast function (store.StreamUse.Filters): lifecycle events unless
// lifecycleEvents=false, presence's join and leave on presenceTopics.
// None: the stream is not read.
func (s Settings) StreamFilters() []string {
	use := store.StreamUse{Lifecycle: s.LifecycleEvents()}
	for _, p := range s.presenceTopics() {
		if pat, err := topic.ParsePattern(p); err == nil {
			use.PresencePrefixes = append(use.PresencePrefixes, pat.LiteralPrefix())
		}
	}
	return use.Filters()
}

// LifecycleEvents reports whether connection lifecycle events are on (the
// functions' default) or off (lifecycleEvents=false).
func (s Settings) LifecycleEvents() bool { return s.FunctionEnv[config.EnvLifecycleEvents] != "false" }

// Presence reports whether presenceTopics names any topic.
func (s Settings) Presence() bool { return len(s.presenceTopics()) > 0 }

func (s Settings) presenceTopics() []string {
	if v := s.FunctionEnv[config.EnvPresenceTopics]; v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

// checkStreamFilters refuses what would make presence silently off: a
// presence pattern the stack cannot filter on, or filters Lambda refuses.
func (r *contextReader) checkStreamFilters(s Settings) {
	for _, p := range s.presenceTopics() {
		if _, err := topic.ParsePattern(p); err != nil {
			r.fail("presenceTopics", "%q is not a topic pattern: %v", p, err)
		}
	}
	filters := s.StreamFilters()
	if len(filters) > maxStreamFilters {
		r.fail("presenceTopics", "the table stream's mapping would need %d filters; Lambda takes %d", len(filters), maxStreamFilters)
	}
	for _, f := range filters {
		if len(f) > maxStreamFilterPattern {
			r.fail("presenceTopics", "%d patterns make a stream filter of %d characters, over Lambda's %d: list fewer or shorter ones (one wildcard such as room.> covers a family of topics)",
				len(s.presenceTopics()), len(f), maxStreamFilterPattern)
		}
	}
}

// Retention is the log retention as CDK's enum.
func (s Settings) Retention() awslogs.RetentionDays { return retention[s.LogRetentionDays] }

// Zip is the path of a function's deployment package.
func (s Settings) Zip(fn string) string { return filepath.Join(s.BinDir, fn+".zip") }

// CheckZips fails with a clear message when `make build` has not run.
func (s Settings) CheckZips() error {
	var missing []string
	for _, fn := range Functions {
		if st, err := os.Stat(s.Zip(fn)); err != nil || st.IsDir() {
			missing = append(missing, s.Zip(fn))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("function packages not found: %s\nRun `make build` at the repository root first (or pass -c binDir=<folder holding connect.zip, disconnect.zip, message.zip, broadcast.zip>)", strings.Join(missing, ", "))
	}
	return nil
}

// contextReader reads context values that may be strings (from -c on the
// command line) or JSON values (from cdk.json).
type contextReader struct {
	get func(string) any
	err error
}

func (r *contextReader) fail(key, format string, args ...any) {
	r.err = errors.Join(r.err, fmt.Errorf("context %s: %s", key, fmt.Sprintf(format, args...)))
}

// raw returns a value as text; ok is false when it is unset or empty.
func (r *contextReader) raw(key string) (string, bool) {
	v := r.get(key)
	switch v := v.(type) {
	case nil:
		return "", false
	case string:
		v = strings.TrimSpace(v)
		return v, v != ""
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		if v == math.Trunc(v) {
			return strconv.FormatInt(int64(v), 10), true
		}
		return strconv.FormatFloat(v, 'f', -1, 64), true
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			parts = append(parts, strings.TrimSpace(fmt.Sprint(e)))
		}
		s := strings.Join(parts, ",")
		return s, s != ""
	default:
		b, err := json.Marshal(v)
		if err != nil {
			r.fail(key, "unreadable value %v", v)
			return "", false
		}
		return string(b), true
	}
}

func (r *contextReader) str(key, def string) string {
	if v, ok := r.raw(key); ok {
		return v
	}
	return def
}

func (r *contextReader) integer(key string, def int) int {
	v, ok := r.raw(key)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.fail(key, "%q is not a whole number", v)
		return def
	}
	return n
}

func (r *contextReader) boolean(key string, def bool) bool {
	v, ok := r.raw(key)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(key, "%q is not true or false", v)
		return def
	}
	return b
}

// functionValue checks a function setting's type (the functions check the
// ranges at start-up, naming the variable) and returns it as the
// environment value.
func (r *contextReader) functionValue(key string, k kind) (string, bool) {
	v, ok := r.raw(key)
	if !ok {
		return "", false
	}
	switch k {
	case list:
		parts := strings.Split(v, ",")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		parts = slices.DeleteFunc(parts, func(p string) bool { return p == "" })
		v = strings.Join(parts, ",")
	case boolean:
		b, err := strconv.ParseBool(v)
		if err != nil {
			r.fail(key, "%q is not true or false", v)
		}
		v = strconv.FormatBool(b)
	case integer:
		if _, err := strconv.Atoi(v); err != nil {
			r.fail(key, "%q is not a whole number", v)
		}
	case duration:
		if _, err := time.ParseDuration(v); err != nil {
			r.fail(key, "%q is not a duration like 10s or 2h10m", v)
		}
	case jsonObject:
		var m map[string]any
		if err := json.Unmarshal([]byte(v), &m); err != nil {
			r.fail(key, "want a JSON object: %v", err)
		}
	}
	return v, v != ""
}

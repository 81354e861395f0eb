package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/queue"
)

func TestSettings_DefaultsLeaveFunctionSettingsToSharedConfig(t *testing.T) {
	s, err := settingsFrom(mapGetter(nil))
	require.NoError(t, err)
	assert.Equal(t, Settings{
		Stage:                      "dev",
		JWTAlg:                     config.DefaultJWTAlg,
		ThrottleRate:               DefaultThrottleRate,
		ThrottleBurst:              DefaultThrottleBurst,
		LogRetentionDays:           DefaultLogRetentionDays,
		BinDir:                     DefaultBinDir,
		Architecture:               DefaultArchitecture,
		QueueMaxConcurrency:        DefaultQueueMaxConcurrency,
		DisconnectMaxConcurrency:   queue.DefaultDisconnectMaxConcurrency,
		MessageReservedConcurrency: DefaultMessageReservedConcurrency,
		APIGatewayCloudWatchRole:   true,
		FunctionEnv:                map[string]string{},
	}, s)
	assert.False(t, s.Prod)
	assert.True(t, s.HMAC())
}

func TestSettings_ProdFromStageNameOrFlag(t *testing.T) {
	for ctx, prod := range map[*map[string]any]bool{
		{"stage": "prod"}:                  true,
		{"stage": "live", "prod": "true"}:  true,
		{"stage": "live", "prod": true}:    true,
		{"stage": "prod-eu"}:               false,
		{"stage": "staging", "prod": "no"}: false, // refused below
	} {
		s, err := settingsFrom(mapGetter(*ctx))
		if (*ctx)["prod"] == "no" {
			require.Error(t, err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, prod, s.Prod, "%v", *ctx)
	}
}

// Context values arrive as strings from `-c key=value` and as JSON values
// from cdk.json; both must give the same settings.
func TestSettings_CommandLineAndCdkJSONValuesAgree(t *testing.T) {
	fromCLI, err := settingsFrom(mapGetter(map[string]any{
		"logRetentionDays": "90", "authMessage": "false", "maxBatch": "25",
		"anonymousTopics": "a.*, b.>", "profiles": `{"p":{"max_message_bytes":1024}}`,
		"apiGatewayCloudWatchRole": "false",
	}))
	require.NoError(t, err)
	fromJSON, err := settingsFrom(mapGetter(map[string]any{
		"logRetentionDays": float64(90), "authMessage": false, "maxBatch": float64(25),
		"anonymousTopics": []any{"a.*", "b.>"}, "profiles": map[string]any{"p": map[string]any{"max_message_bytes": float64(1024)}},
		"apiGatewayCloudWatchRole": false,
	}))
	require.NoError(t, err)
	assert.Equal(t, fromCLI, fromJSON)
	assert.Equal(t, map[string]string{
		config.EnvAuthMessage:     "false",
		config.EnvMaxBatch:        "25",
		config.EnvAnonymousTopics: "a.*,b.>",
		config.EnvProfiles:        `{"p":{"max_message_bytes":1024}}`,
	}, fromCLI.FunctionEnv)
}

func TestSettings_RejectsBadValuesNamingTheKey(t *testing.T) {
	for _, tc := range []struct {
		ctx map[string]any
		key string
	}{
		{map[string]any{"stage": "my stage"}, "stage"},
		{map[string]any{"stage": "a/b"}, "stage"},
		{map[string]any{"domainName": "ws.example.com"}, "domainName"},
		{map[string]any{"certificateArn": "arn:aws:acm:eu-west-1:1:certificate/x"}, "domainName"},
		{map[string]any{"jwtAlg": "none"}, "jwtAlg"},
		{map[string]any{"jwtAlg": "RS256"}, "jwtPublicKey"},
		{map[string]any{"jwtAlg": "ES256", "jwksUrl": "https://x", "jwtSecretArn": "arn:aws:secretsmanager:x"}, "jwtSecretArn"},
		{map[string]any{"jwksUrl": "https://x"}, "jwtPublicKey"},
		{map[string]any{"jwtSecretArn": "wsgate/jwt"}, "jwtSecretArn"},
		{map[string]any{"jwtSecretKeyArn": "arn:aws:kms:x"}, "jwtSecretKeyArn"},
		{map[string]any{"throttleRate": "0"}, "throttleRate"},
		{map[string]any{"throttleBurst": "many"}, "throttleBurst"},
		{map[string]any{"logRetentionDays": "10"}, "logRetentionDays"},
		{map[string]any{"queueMaxConcurrency": "1"}, "queueMaxConcurrency"},
		{map[string]any{"disconnectMaxConcurrency": "1"}, "disconnectMaxConcurrency"},
		{map[string]any{"disconnectMaxConcurrency": "1001"}, "disconnectMaxConcurrency"},
		{map[string]any{"disconnectMaxConcurrency": "some"}, "disconnectMaxConcurrency"},
		{map[string]any{"messageReservedConcurrency": "-1"}, "messageReservedConcurrency"},
		{map[string]any{"messageReservedConcurrency": "lots"}, "messageReservedConcurrency"},
		{map[string]any{"alarmEmail": "ops"}, "alarmEmail"},
		{map[string]any{"maxBatch": "lots"}, "maxBatch"},
		{map[string]any{"authDeadline": "10"}, "authDeadline"},
		{map[string]any{"historyDefault": "maybe"}, "historyDefault"},
		{map[string]any{"profiles": "[1]"}, "profiles"},
		{map[string]any{"architecture": "amd64"}, "architecture"},
		{map[string]any{"presenceTopics": "room.*, a..b"}, "presenceTopics"},
		{map[string]any{"presenceTopics": manyTopics(300)}, "presenceTopics"},
		{map[string]any{"presenceTopics": manyTopics(300), "lifecycleEvents": "false"}, "presenceTopics"},
	} {
		_, err := settingsFrom(mapGetter(tc.ctx))
		if assert.Error(t, err, "%v", tc.ctx) {
			assert.Contains(t, err.Error(), "context "+tc.key, "%v", tc.ctx)
		}
	}
}

func TestSettings_AcceptsPublicKeyAlgorithms(t *testing.T) {
	s, err := settingsFrom(mapGetter(map[string]any{"jwtAlg": "rs256", "jwksUrl": "https://auth.example.com/.well-known/jwks.json"}))
	require.NoError(t, err)
	assert.Equal(t, "RS256", s.JWTAlg)
	assert.False(t, s.HMAC())
}

// TestDeployDoc_ListsEveryContextKey keeps docs/deploy.md's settings table
// in step with the keys settings.go reads.
func TestDeployDoc_ListsEveryContextKey(t *testing.T) {
	src, err := os.ReadFile("settings.go")
	require.NoError(t, err)
	doc, err := os.ReadFile("../docs/deploy.md")
	require.NoError(t, err)
	read := map[string]bool{}
	for _, m := range regexp.MustCompile(`r\.(?:str|integer|boolean)\("(\w+)"`).FindAllStringSubmatch(string(src), -1) {
		read[m[1]] = true
	}
	for _, fs := range functionSettings {
		read[fs.key] = true
	}
	require.Greater(t, len(read), 30)
	documented := map[string]bool{}
	for _, row := range regexp.MustCompile("(?m)^\\| (`\\w+`(?:, `\\w+`)*) \\|").FindAllStringSubmatch(string(doc), -1) {
		for _, k := range regexp.MustCompile("`(\\w+)`").FindAllStringSubmatch(row[1], -1) {
			documented[k[1]] = true
		}
	}
	for k := range read {
		assert.True(t, documented[k], "docs/deploy.md does not document context key %s", k)
	}
}

// manyTopics lists n presence topics of 20 characters or so.
func manyTopics(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("tenant-%04d.room.*", i))
	}
	return strings.Join(parts, ",")
}

// Presence is not silently off: a pattern the stack cannot filter the
// stream on, or more than Lambda's filters hold, is refused at synth
// naming the setting; what fits is served whole.
func TestSettings_PresenceTopicsFitTheStreamFilters(t *testing.T) {
	s, err := settingsFrom(mapGetter(map[string]any{"presenceTopics": manyTopics(100)}))
	require.NoError(t, err)
	filters := s.StreamFilters()
	require.Len(t, filters, 4)
	assert.Equal(t, 100, strings.Count(filters[3], `"prefix":"P#tenant-`), "every prefix")
	assert.LessOrEqual(t, len(filters[3]), maxStreamFilterPattern)

	_, err = settingsFrom(mapGetter(map[string]any{"presenceTopics": manyTopics(300)}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "300 patterns make a stream filter of")
}

// An ARN ending in a hyphen and six characters is refused: Secrets
// Manager reads it as a complete ARN, so a secret named like
// wsgate-jwt-secret is not found by it, and a complete ARN cannot be told
// from such a name's partial one. The message says what to give instead.
func TestSettings_SecretArnEndingLikeARandomSuffixIsRefused(t *testing.T) {
	const prefix = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:"
	for _, tc := range []struct{ arn, hint string }{
		{prefix + "wsgate-jwt-secret", prefix + "wsgate-jwt"},
		{prefix + "wsgate/jwt-AbCdEf", prefix + "wsgate/jwt"},
		{prefix + "wsgate-jwt-secret-a1B2c3", prefix + "wsgate-jwt-secret"},
	} {
		_, err := settingsFrom(mapGetter(map[string]any{"jwtSecretArn": tc.arn}))
		if assert.Error(t, err, tc.arn) {
			assert.Contains(t, err.Error(), "context jwtSecretArn")
			assert.Contains(t, err.Error(), "give the ARN without it: "+tc.hint+".")
			assert.Contains(t, err.Error(), "rename the secret")
		}
	}
	for _, arn := range []string{prefix + "wsgate/jwt", prefix + "wsgate-jwt-signing-key", prefix + "jwt-12345", "arn:aws-cn:secretsmanager:cn-north-1:111122223333:secret:wsgate/jwt"} {
		s, err := settingsFrom(mapGetter(map[string]any{"jwtSecretArn": arn}))
		require.NoError(t, err, arn)
		assert.Equal(t, arn, s.JWTSecretArn)
	}
	for _, bad := range []string{"wsgate/jwt", "arn:aws:ssm:eu-west-1:111122223333:parameter/jwt", prefix} {
		_, err := settingsFrom(mapGetter(map[string]any{"jwtSecretArn": bad}))
		assert.ErrorContains(t, err, "context jwtSecretArn", bad)
	}
}

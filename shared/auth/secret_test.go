package auth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckSecret_RefusesObviousPatterns(t *testing.T) {
	cases := []struct{ alg, secret string }{
		{"HS256", strings.Repeat("a", 32)},
		{"HS256", strings.Repeat("ab", 16)},
		{"HS256", strings.Repeat("0123456789", 4)},
		{"HS256", "0123456789abcdefghijklmnopqrstuv"},
		{"HS256", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"},
		{"HS256", strings.Repeat("0123456789abcdef", 2)},
		{"HS256", "zyxwvutsrqponmlkjihgfedcba9876543210"},
		{"HS256", strings.Repeat("password", 4)},
		{"HS256", strings.Repeat("password", 4) + "1!"},
		{"HS256", strings.Repeat("Xk9#Qz2!aB7$mN4%", 2)},
		{"HS256", "a8Fq" + strings.Repeat("a", 28)},
		{"HS512", strings.Repeat("x", 64)},
	}
	for _, c := range cases {
		err := CheckSecret(c.alg, []byte(c.secret))
		require.Error(t, err, "%s %q", c.alg, c.secret)
		assert.Contains(t, err.Error(), "pattern")
		assert.NotContains(t, err.Error(), c.secret, "the message never carries the secret")
	}
}

// What the docs tell deployers to run, and what the CDK stack generates,
// always passes: a refusal of a good secret would stop a deployment.
func TestCheckSecret_AcceptsRandomSecrets(t *testing.T) {
	random := func(n int) []byte {
		b := make([]byte, n)
		_, err := rand.Read(b)
		require.NoError(t, err)
		return b
	}
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	kinds := []struct {
		name, alg string
		gen       func() string
	}{
		{"openssl rand -base64 48", "HS512", func() string { return base64.StdEncoding.EncodeToString(random(48)) }},
		{"openssl rand -base64 24", "HS256", func() string { return base64.StdEncoding.EncodeToString(random(24)) }},
		{"openssl rand -hex 16", "HS256", func() string { return hex.EncodeToString(random(16)) }},
		{"openssl rand -hex 32", "HS512", func() string { return hex.EncodeToString(random(32)) }},
		{"Secrets Manager, 64 letters and digits", "HS512", func() string {
			b := random(64)
			for i := range b {
				b[i] = alnum[int(b[i])%len(alnum)]
			}
			return string(b)
		}},
	}
	for _, k := range kinds {
		for range 5000 {
			s := k.gen()
			if err := CheckSecret(k.alg, []byte(s)); err != nil {
				t.Fatalf("%s: %q refused: %v", k.name, s, err)
			}
		}
	}
	assert.NoError(t, CheckSecret("HS256", []byte("test-secret-of-decent-length-0123456789")))
	assert.NoError(t, CheckSecret("RS256", []byte(strings.Repeat("a", 32))), "no secret for RS256")
}

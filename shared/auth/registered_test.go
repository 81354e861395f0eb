package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handBuilt signs header and payload, given as JSON text exactly as they
// go on the wire, with the test secret: no JWT library decides their shape.
func handBuilt(header, payload string) string {
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signingInput))
	return signingInput + "." + enc.EncodeToString(mac.Sum(nil))
}

// RFC 7519 section 2: exp, nbf and iat are NumericDates, JSON numbers. A
// string that holds digits is not one, whatever a lenient decoder makes
// of it.
func TestVerify_RefusesDatesThatAreNotJSONNumbers(t *testing.T) {
	_, v := hsPair(t)
	now := time.Now().Unix()
	const header = `{"alg":"HS256","typ":"JWT"}`
	cases := []struct {
		name    string
		payload string
		ok      bool
	}{
		{"numbers", fmt.Sprintf(`{"sub":"u1","iat":%d,"nbf":%d,"exp":%d}`, now, now, now+60), true},
		{"a fractional number", fmt.Sprintf(`{"sub":"u1","exp":%d.5}`, now+60), true},
		{"exp as a string", fmt.Sprintf(`{"sub":"u1","exp":"%d"}`, now+60), false},
		{"exp as the issue's string", `{"sub":"u1","exp":"9999999999"}`, false},
		{"nbf as a string", fmt.Sprintf(`{"sub":"u1","nbf":"%d","exp":%d}`, now, now+60), false},
		{"iat as a string", fmt.Sprintf(`{"sub":"u1","iat":"%d","exp":%d}`, now, now+60), false},
		{"iat as null", fmt.Sprintf(`{"sub":"u1","iat":null,"exp":%d}`, now+60), false},
		{"exp as a list", fmt.Sprintf(`{"sub":"u1","exp":[%d]}`, now+60), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), handBuilt(header, c.payload))
			if c.ok {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidToken)
		})
	}
}

// RFC 7515 section 4.1.11: a recipient that does not understand every
// extension listed in crit must refuse the token. The verifier
// understands none.
func TestVerify_RefusesAnyCritHeader(t *testing.T) {
	_, v := hsPair(t)
	payload := fmt.Sprintf(`{"sub":"u1","exp":%d}`, time.Now().Unix()+60)
	_, err := v.Verify(context.Background(), handBuilt(`{"alg":"HS256","typ":"JWT"}`, payload))
	require.NoError(t, err, "the same token without crit")
	for _, header := range []string{
		`{"alg":"HS256","typ":"JWT","crit":["x-unknown"],"x-unknown":true}`,
		`{"alg":"HS256","crit":["b64"],"b64":true}`,
		`{"alg":"HS256","crit":[]}`,
		`{"alg":"HS256","crit":"x-unknown"}`,
	} {
		_, err := v.Verify(context.Background(), handBuilt(header, payload))
		assert.ErrorIs(t, err, ErrInvalidToken, header)
	}
}

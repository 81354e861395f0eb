package awsauth

import (
	"crypto/subtle"
	"errors"
	"fmt"
)

// Credentials are a key requests may be signed with.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, when set, must arrive in X-Amz-Security-Token on every
	// request signed with this key, as with temporary credentials on AWS.
	SessionToken string
}

// Dev is the key everything local signs with unless configured otherwise.
func Dev() Credentials { return Credentials{AccessKeyID: "test", SecretAccessKey: "test"} }

// ErrNoSecret is returned for Credentials without an access key or secret.
var ErrNoSecret = errors.New("awsauth: credentials need an access key ID and a secret access key")

// keyring finds the credentials of an access key.
type keyring map[string]Credentials

func newKeyring(creds []Credentials) (keyring, error) {
	if len(creds) == 0 {
		creds = []Credentials{Dev()}
	}
	k := keyring{}
	for _, c := range creds {
		if c.AccessKeyID == "" || c.SecretAccessKey == "" {
			return nil, ErrNoSecret
		}
		if _, dup := k[c.AccessKeyID]; dup {
			return nil, fmt.Errorf("awsauth: access key %q is listed twice", c.AccessKeyID)
		}
		k[c.AccessKeyID] = c
	}
	return k, nil
}

// tokenRefusal checks the session token a request carries against its
// key's; nil when acceptable. A key without a token accepts any token
// unless strict: the Lambda host hands functions AWS_SESSION_TOKEN, which
// the SDK then sends with the dev key.
func (c Credentials) tokenRefusal(got string, strict bool) *refusal {
	switch {
	case c.SessionToken != "" && subtle.ConstantTimeCompare([]byte(got), []byte(c.SessionToken)) != 1:
		return &refusal{kind: unknownKey, message: msgUnknownKey, reason: "missing or wrong X-Amz-Security-Token"}
	case c.SessionToken == "" && got != "" && strict:
		return &refusal{kind: unknownKey, message: msgUnknownKey, reason: "X-Amz-Security-Token sent for a key without one"}
	}
	return nil
}

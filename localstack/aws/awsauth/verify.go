// Package awsauth verifies the AWS Signature Version 4 of requests to the
// local AWS endpoint, so that a client signing with the wrong key, for the
// wrong service, or not at all fails locally the way it would on AWS,
// with the error its SDK decodes from the real service. The signature is
// recomputed with the SDK's own signer (aws/signer/v4), not a second
// implementation of SigV4.
package awsauth

import (
	"bytes"
	"crypto/hmac"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// DefaultMaxBodyBytes bounds the body read to hash it: above DynamoDB's
// 16 MB request limit, the largest of the services served.
const DefaultMaxBodyBytes = 32 << 20

// Options configure Verify.
type Options struct {
	// Credentials are the keys requests may be signed with; empty means
	// Dev() alone.
	Credentials []Credentials
	// MaxSkew, when above zero, replaces every service's own window for
	// X-Amz-Date: 15 minutes for DynamoDB and SQS, 5 for EventBridge and
	// the @connections API.
	MaxSkew time.Duration
	// Exempt passes the requests it reports true for unchecked, such as
	// the /_wsgate/ admin paths.
	Exempt func(*http.Request) bool
	// StrictSessionToken refuses requests that carry X-Amz-Security-Token
	// signed with a key that has no SessionToken. Off by default: Lambda
	// functions get AWS_SESSION_TOKEN and send it with the dev key.
	StrictSessionToken bool
	// MaxBodyBytes bounds the body read to hash it; zero means
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Log gets a line per refused request; nil discards them.
	Log *slog.Logger
	// Disabled passes every request unchecked.
	Disabled bool
	// Now is the clock requests' X-Amz-Date is held to; nil means time.Now.
	Now func() time.Time
}

// Verifier is an http.Handler that passes on to the next handler only the
// requests signed with one of its credentials.
type Verifier struct {
	next   http.Handler
	opts   Options
	keys   keyring
	signer *v4.Signer

	verified, exempt, refused atomic.Int64
}

// Counts are the requests a Verifier has seen, by outcome.
type Counts struct {
	Verified int64 // passed on with a good signature
	Exempt   int64 // passed on unchecked: Exempt or Disabled
	Refused  int64 // answered with an authentication error
}

// Verify wraps next in a Verifier.
func Verify(next http.Handler, opts Options) (*Verifier, error) {
	keys, err := newKeyring(opts.Credentials)
	if err != nil {
		return nil, err
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{next: next, opts: opts, keys: keys, signer: v4.NewSigner()}, nil
}

// Counts returns the requests seen so far.
func (v *Verifier) Counts() Counts {
	return Counts{Verified: v.verified.Load(), Exempt: v.exempt.Load(), Refused: v.refused.Load()}
}

func (v *Verifier) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v.opts.Disabled || (v.opts.Exempt != nil && v.opts.Exempt(r)) {
		v.exempt.Add(1)
		v.next.ServeHTTP(w, r)
		return
	}
	svc, a, ref := v.check(r)
	if ref != nil {
		v.refused.Add(1)
		v.opts.Log.Warn("aws request refused", "service", svc.String(), "error", ref.kind.jsonCode(),
			"reason", ref.reason, "access_key_id", a.accessKeyID, "method", r.Method, "path", r.URL.EscapedPath())
		svc.writeError(w, ref)
		return
	}
	v.verified.Add(1)
	v.next.ServeHTTP(w, r)
}

// check authenticates r, in the order AWS reports problems: the header,
// the key and token, the scope and time, then the signature. On success r's
// body has been read and replaced by a copy.
func (v *Verifier) check(r *http.Request) (service, authorization, *refusal) {
	h := r.Header.Get("Authorization")
	if h == "" {
		svc := classify(r, "")
		if q := r.URL.Query(); q.Has("X-Amz-Signature") || q.Has("X-Amz-Credential") {
			return svc, authorization{}, &refusal{kind: incompleteSignature, reason: "presigned request",
				message: "The local endpoint does not accept presigned (query-string) SigV4; sign with the Authorization header."}
		}
		return svc, authorization{}, refuseMissing(svc)
	}
	a, err := parseAuthorization(h)
	svc := classify(r, a.service)
	if err != nil {
		return svc, a, &refusal{kind: incompleteSignature, message: err.Error(), reason: "malformed Authorization header"}
	}
	creds, ok := v.keys[a.accessKeyID]
	if !ok {
		return svc, a, &refusal{kind: unknownKey, message: msgUnknownKey, reason: "unknown access key"}
	}
	if ref := creds.tokenRefusal(r.Header.Get("X-Amz-Security-Token"), v.opts.StrictSessionToken); ref != nil {
		return svc, a, ref
	}
	if want := svc.signingName(); want != "" && a.service != want {
		return svc, a, &refusal{kind: badSignature, reason: "credential scope names service " + a.service,
			message: fmt.Sprintf("Credential should be scoped to correct service: '%s'. ", want)}
	}
	a.signedAt, err = time.Parse(amzDateFormat, r.Header.Get("X-Amz-Date"))
	if err != nil {
		return svc, a, &refusal{kind: incompleteSignature, reason: "no usable X-Amz-Date",
			message: "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."}
	}
	window := svc.window()
	if v.opts.MaxSkew > 0 {
		window = v.opts.MaxSkew
	}
	if ref := skewRefusal(a.signedAt, v.opts.Now(), window); ref != nil {
		return svc, a, ref
	}
	return svc, a, v.checkSignature(r, svc, a, creds.SecretAccessKey)
}

// checkSignature compares the signature of r with the one the SDK's signer
// computes for it; nil when they match.
func (v *Verifier) checkSignature(r *http.Request, svc service, a authorization, secret string) *refusal {
	body, ref := v.readBody(r)
	if ref != nil {
		return ref
	}
	p := newPayload(body)
	mismatch := &refusal{kind: badSignature, message: msgBadSignature}
	if claimed := r.Header.Get("X-Amz-Content-Sha256"); claimed != "" && claimed != p.hash {
		mismatch.reason = "X-Amz-Content-Sha256 does not match the body"
		return mismatch
	}
	s, err := v.resign(r, a, secret, p)
	if err != nil {
		mismatch.reason = err.Error()
		return mismatch
	}
	if hmac.Equal([]byte(s.signature), []byte(a.signature)) {
		return nil
	}
	mismatch.reason = "signature differs"
	if claimed := strings.Join(a.signedHeaders, ";"); claimed != s.signedHeaders {
		// A header the SDK's signer never signs (User-Agent, Expect, ...)
		// or one missing from the request.
		mismatch.reason = fmt.Sprintf("signed headers %q, the signer signs %q", claimed, s.signedHeaders)
	}
	if svc == serviceManagement || svc == serviceUnknown {
		// API Gateway tells what it computed, which is what makes a
		// mismatch debuggable.
		mismatch.message += "\n\nThe Canonical String for this request should have been\n'" + redacted(s.canonical) +
			"'\n\nThe String-to-Sign should have been\n'" + s.stringToSign + "'\n"
	}
	v.opts.Log.Debug("aws signature mismatch", "canonical_request", redacted(s.canonical))
	return mismatch
}

// readBody reads r's body to hash it and puts a copy back for the next
// handler.
func (v *Verifier) readBody(r *http.Request) ([]byte, *refusal) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, v.opts.MaxBodyBytes+1))
	_ = r.Body.Close()
	if err != nil {
		return nil, &refusal{kind: badSignature, message: msgBadSignature, reason: "reading the body: " + err.Error()}
	}
	if int64(len(body)) > v.opts.MaxBodyBytes {
		return nil, &refusal{kind: tooLarge, reason: "body over MaxBodyBytes",
			message: fmt.Sprintf("Request body larger than %d bytes", v.opts.MaxBodyBytes)}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

package awsauth

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/smithy-go/logging"
)

// signing is the signature the SDK's signer computes for a request as the
// server sees it.
type signing struct {
	signature     string
	signedHeaders string // as the signer lists them
	canonical     string // the canonical request, for error messages
	stringToSign  string
}

// payload is what the signature covers of a request's body.
type payload struct {
	size int64
	hash string // hex SHA-256
}

func newPayload(body []byte) payload {
	sum := sha256.Sum256(body)
	return payload{size: int64(len(body)), hash: hex.EncodeToString(sum[:])}
}

// resign recomputes the signature of r with the SDK's own signer, over a
// copy of r that carries only the headers a lists as signed, so that what
// the client signed and what the server checks are computed by the same
// code.
func (v *Verifier) resign(r *http.Request, a authorization, secret string, body payload) (signing, error) {
	req := &http.Request{
		Method: r.Method,
		// The path as it came over the wire: what the client escaped is
		// what it signed, and r.URL.Path has lost the escaping. The signer
		// takes the path from Opaque after a "//host" prefix.
		URL:    &url.URL{Host: r.Host, Opaque: "//host" + wirePath(r), RawQuery: r.URL.RawQuery},
		Host:   r.Host, // Go moves the Host header here
		Header: http.Header{},
	}
	for _, name := range a.signedHeaders {
		key := textproto.CanonicalMIMEHeaderKey(name)
		if v := r.Header.Values(key); len(v) > 0 && name != "host" && name != "content-length" {
			req.Header[key] = v
		}
	}
	// The signer signs Content-Length from ContentLength (Go moves the
	// header there too) whenever it is above zero: set it only when the
	// client signed it, as a chunked request cannot.
	if a.signs("content-length") {
		req.ContentLength = body.size
	}
	// No session token in the credentials: the signer would set
	// X-Amz-Security-Token, and the request's own, if signed, was copied.
	creds := aws.Credentials{AccessKeyID: a.accessKeyID, SecretAccessKey: secret}
	var s signing
	capture := func(o *v4.SignerOptions) {
		// The signer shows its canonical request only to its logger.
		o.LogSigning = true
		o.Logger = logging.LoggerFunc(func(_ logging.Classification, _ string, v ...any) {
			if len(v) >= 2 {
				s.canonical, _ = v[0].(string)
				s.stringToSign, _ = v[1].(string)
			}
		})
	}
	if err := v.signer.SignHTTP(r.Context(), creds, req, body.hash, a.service, a.region, a.signedAt, capture); err != nil {
		return signing{}, fmt.Errorf("awsauth: sign: %w", err)
	}
	signed, err := parseAuthorization(req.Header.Get("Authorization"))
	if err != nil {
		return signing{}, fmt.Errorf("awsauth: parse the signer's own header: %w", err)
	}
	s.signature, s.signedHeaders = signed.signature, strings.Join(signed.signedHeaders, ";")
	return s, nil
}

// wirePath is the path of the request line, escaped as the client sent it:
// r.URL.EscapedPath() re-escapes a path holding characters Go would have
// escaped (such as '{'), which the client signed as it sent them.
func wirePath(r *http.Request) string {
	p, _, _ := strings.Cut(r.RequestURI, "?")
	if !strings.HasPrefix(p, "/") {
		// Absolute form: scheme://host/path.
		_, hostPath, ok := strings.Cut(p, "://")
		if i := strings.IndexByte(hostPath, '/'); ok && i >= 0 {
			return hostPath[i:]
		}
		return r.URL.EscapedPath() // a request built in a test, or "*"
	}
	return p
}

// redacted is a canonical request without its session token, for messages
// and logs.
func redacted(canonical string) string {
	const prefix = "x-amz-security-token:"
	lines := strings.Split(canonical, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, prefix) {
			lines[i] = prefix + "<redacted>"
		}
	}
	return strings.Join(lines, "\n")
}

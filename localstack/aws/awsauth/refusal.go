package awsauth

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"net/http"
	"strconv"
	"time"
)

// kind is what is wrong with a request's authentication.
type kind int

const (
	missingToken        kind = iota // no Authorization header
	incompleteSignature             // an Authorization header that is not well-formed SigV4
	unknownKey                      // an access key or session token we do not know
	badSignature                    // wrong secret, tampered request, stale time, wrong scope
	tooLarge                        // a body over MaxBodyBytes, not read to hash it
)

// refusal is the answer to a request that fails authentication.
type refusal struct {
	kind    kind
	message string // sent to the client, as AWS words it
	reason  string // logged: says what differed where message is generic
}

const (
	msgUnknownKey   = "The security token included in the request is invalid."
	msgBadSignature = "The request signature we calculated does not match the signature you provided. " +
		"Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)

// refuseMissing is the answer to a request without authentication, in the
// words of each service.
func refuseMissing(s service) *refusal {
	msg := "Missing Authentication Token" // API Gateway
	switch s {
	case serviceDynamoDB, serviceEvents:
		msg = "Request is missing Authentication Token"
	case serviceSQS:
		msg = "The request must contain either a valid (registered) AWS access key ID or X.509 certificate."
	}
	return &refusal{kind: missingToken, message: msg, reason: "no Authorization header"}
}

// jsonCode is the error's name in the JSON protocols' __type and in
// API Gateway's X-Amzn-ErrorType: the coral service framework in front of
// every JSON-protocol AWS service names them alike.
func (k kind) jsonCode() string {
	switch k {
	case missingToken:
		return "MissingAuthenticationTokenException"
	case incompleteSignature:
		return "IncompleteSignatureException"
	case unknownKey:
		return "UnrecognizedClientException"
	case tooLarge:
		return "RequestEntityTooLargeException"
	default:
		return "InvalidSignatureException"
	}
}

// queryCode is the legacy AWS Query code SQS also sends, in the
// X-Amzn-Query-Error header; the SDK reports it from ErrorCode().
func (k kind) queryCode() string {
	switch k {
	case missingToken:
		return "MissingAuthenticationToken"
	case incompleteSignature:
		return "IncompleteSignature"
	case unknownKey:
		return "InvalidClientTokenId"
	case tooLarge:
		return "RequestEntityTooLarge"
	default:
		return "SignatureDoesNotMatch"
	}
}

// status is the HTTP status s answers k with: the JSON-protocol services
// DynamoDB and EventBridge answer 400 (their docs list every client error
// as 400), SQS and API Gateway 403.
func (s service) status(k kind) int {
	switch {
	case k == tooLarge:
		return http.StatusRequestEntityTooLarge
	case s == serviceDynamoDB || s == serviceEvents:
		return http.StatusBadRequest
	default:
		return http.StatusForbidden
	}
}

// writeError answers ref in the error shape of s's protocol, which is what
// its SDK client decodes into an error code.
func (s service) writeError(w http.ResponseWriter, ref *refusal) {
	h := w.Header()
	h.Set("X-Amzn-RequestId", rand.Text())
	code := ref.kind.jsonCode()
	var body []byte
	switch s {
	case serviceManagement, serviceUnknown:
		// REST-JSON: the code travels in the header, the body holds only
		// the message.
		h.Set("Content-Type", "application/json")
		h.Set("X-Amzn-ErrorType", code)
		body, _ = json.Marshal(map[string]string{"message": ref.message})
	default:
		body, _ = json.Marshal(map[string]string{"__type": "com.amazon.coral.service#" + code, "message": ref.message})
		h.Set("Content-Type", "application/x-amz-json-1.0")
		if s == serviceEvents {
			h.Set("Content-Type", "application/x-amz-json-1.1")
		}
	}
	switch s {
	case serviceDynamoDB:
		// The DynamoDB client checks the body against this header.
		h.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	case serviceSQS:
		h.Set("X-Amzn-Query-Error", ref.kind.queryCode()+";Sender")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(s.status(ref.kind))
	_, _ = w.Write(body)
}

// skewRefusal is AWS's answer to a request time outside the window, e.g.
// "Signature expired: 20240805T055512Z is now earlier than 20240805T061917Z
// (20240805T063417Z - 15 min.)"; nil when t is inside it.
func skewRefusal(t, now time.Time, window time.Duration) *refusal {
	f := func(t time.Time) string { return t.UTC().Format(amzDateFormat) }
	span := fmt.Sprintf("%d min.", window/time.Minute)
	if window%time.Minute != 0 {
		span = window.String()
	}
	switch {
	case t.Before(now.Add(-window)):
		return &refusal{kind: badSignature, reason: "request time too old", message: fmt.Sprintf(
			"Signature expired: %s is now earlier than %s (%s - %s)", f(t), f(now.Add(-window)), f(now), span)}
	case t.After(now.Add(window)):
		return &refusal{kind: badSignature, reason: "request time in the future", message: fmt.Sprintf(
			"Signature not yet current: %s is still later than %s (%s + %s)", f(t), f(now.Add(window)), f(now), span)}
	}
	return nil
}

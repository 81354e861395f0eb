package awsauth

import (
	"net/http"
	"strings"
	"time"
)

// service is the AWS API a request is for: it decides the credential scope
// a signature must name, how far its time may be off, and the shape of the
// error that refuses it.
type service int

const (
	serviceUnknown service = iota
	serviceDynamoDB
	serviceEvents
	serviceSQS
	serviceManagement // API Gateway's @connections API
	serviceLambda
)

// classify names the service of a request: by X-Amz-Target for the JSON
// protocols, else by the service of the credential scope (scope may be
// empty for an unsigned request), else by an @connections path.
func classify(r *http.Request, scope string) service {
	target := r.Header.Get("X-Amz-Target")
	switch {
	case strings.HasPrefix(target, "DynamoDB_20120810."):
		return serviceDynamoDB
	case strings.HasPrefix(target, "AWSEvents."):
		return serviceEvents
	case strings.HasPrefix(target, "AmazonSQS."):
		return serviceSQS
	case target != "":
		return serviceUnknown
	}
	switch scope {
	case "dynamodb":
		return serviceDynamoDB
	case "events":
		return serviceEvents
	case "sqs":
		return serviceSQS
	case "execute-api":
		return serviceManagement
	case "lambda":
		return serviceLambda
	}
	if scope == "" && strings.Contains(r.URL.EscapedPath(), "/@connections/") {
		return serviceManagement
	}
	return serviceUnknown
}

// signingName is the service a credential scope must name for s; "" when
// any will do.
func (s service) signingName() string {
	switch s {
	case serviceDynamoDB:
		return "dynamodb"
	case serviceEvents:
		return "events"
	case serviceSQS:
		return "sqs"
	case serviceManagement:
		return "execute-api"
	case serviceLambda:
		return "lambda"
	default:
		return ""
	}
}

func (s service) String() string {
	if n := s.signingName(); n != "" {
		return n
	}
	return "unknown"
}

// window is how far X-Amz-Date may be from the server's clock, either way.
// The services differ, as their "Signature expired: ... (... - 15 min.)"
// messages show: DynamoDB and SQS allow 15 minutes; API Gateway 5, as do
// the other JSON services seen (Kinesis, Lambda, ECS) and so, presumably,
// EventBridge, the general SigV4 documentation's "within five minutes".
func (s service) window() time.Duration {
	switch s {
	case serviceDynamoDB, serviceSQS:
		return 15 * time.Minute
	default:
		return 5 * time.Minute
	}
}

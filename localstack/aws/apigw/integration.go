package apigw

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"

	"github.com/aws/aws-lambda-go/events"
)

// QueueIntegration is a route integrated with SQS SendMessage (an AWS
// service integration, IntegrationType AWS), as the stack integrates
// $disconnect: API Gateway renders the route's request template into a
// SendMessage request in SQS's query protocol and sends it with the
// integration's role. Nothing invokes a function, so nothing is throttled
// by Lambda; what SQS refuses is lost, as API Gateway does not retry it.
type QueueIntegration struct {
	// Template is the request template (the route's $default template).
	// The local gateway renders a subset of API Gateway's: $context.<name>
	// and $util.urlEncode($context.<name>); anything else in it is an
	// error at New, not at the first disconnect.
	Template string
	// Send sends a message to the integration's queue.
	Send func(ctx context.Context, body string) error
}

// templateRef matches one reference the local gateway renders:
// $util.urlEncode($context.name) or $context.name.
var templateRef = regexp.MustCompile(`\$util\.urlEncode\(\$context\.([A-Za-z]+)\)|\$context\.([A-Za-z]+)`)

// contextVars are the $context variables of a WebSocket API request that
// templates may use (the mapping template reference's, for a route
// request); a $disconnect's include its close status code and reason.
func contextVars(req events.APIGatewayWebsocketProxyRequest) map[string]string {
	rc := req.RequestContext
	v := map[string]string{
		"connectionId": rc.ConnectionID, "connectedAt": strconv.FormatInt(rc.ConnectedAt, 10),
		"domainName": rc.DomainName, "eventType": rc.EventType, "routeKey": rc.RouteKey,
		"requestId": rc.RequestID, "extendedRequestId": rc.ExtendedRequestID, "apiId": rc.APIID,
		"stage": rc.Stage, "requestTimeEpoch": strconv.FormatInt(rc.RequestTimeEpoch, 10),
		"messageDirection": rc.MessageDirection,
	}
	if rc.EventType == "DISCONNECT" {
		v["disconnectStatusCode"] = strconv.FormatInt(rc.DisconnectStatusCode, 10)
		if rc.DisconnectReason != nil {
			v["disconnectReason"] = *rc.DisconnectReason
		}
	}
	return v
}

// renderTemplate renders tmpl with vars. A reference to a variable the
// request does not have renders empty, as in API Gateway; a '$' that is
// not one of the references this gateway renders is an error.
func renderTemplate(tmpl string, vars map[string]string) (string, error) {
	var out []byte
	rest := tmpl
	for {
		loc := templateRef.FindStringSubmatchIndex(rest)
		plain := rest
		if loc != nil {
			plain = rest[:loc[0]]
		}
		for i := range len(plain) {
			if plain[i] == '$' {
				return "", fmt.Errorf("request template: %q at byte %d is not something the local gateway renders ($context.<name> or $util.urlEncode($context.<name>))",
					clip(plain[i:]), len(tmpl)-len(rest)+i)
			}
		}
		out = append(out, plain...)
		if loc == nil {
			return string(out), nil
		}
		if loc[2] >= 0 {
			out = append(out, url.QueryEscape(vars[rest[loc[2]:loc[3]]])...)
		} else {
			out = append(out, vars[rest[loc[4]:loc[5]]]...)
		}
		rest = rest[loc[1]:]
	}
}

func clip(s string) string {
	if len(s) > 24 {
		return s[:24] + "..."
	}
	return s
}

// sendMessageBody reads the message body from a rendered SendMessage
// request in SQS's query protocol: Action=SendMessage&MessageBody=...; the
// local queues take no other parameter.
func sendMessageBody(rendered string) (string, error) {
	q, err := url.ParseQuery(rendered)
	if err != nil {
		return "", fmt.Errorf("the rendered request is not form-encoded: %w", err)
	}
	if a := q.Get("Action"); a != "SendMessage" {
		return "", fmt.Errorf("the rendered request's Action is %q; the local gateway's SQS integration sends SendMessage only", a)
	}
	for k := range q {
		if k != "Action" && k != "MessageBody" && k != "Version" {
			return "", fmt.Errorf("the rendered request has %s; the local queues take MessageBody only", k)
		}
	}
	body := q.Get("MessageBody")
	if body == "" {
		return "", errors.New("the rendered request has no MessageBody (SQS refuses an empty message)")
	}
	return body, nil
}

// Check renders the template for a sample request, so a template the
// local gateway cannot render fails at start.
func (qi *QueueIntegration) Check() error {
	if qi.Send == nil {
		return errors.New("queue integration: no Send")
	}
	reason := "sample"
	sample := events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: "sample=", EventType: "DISCONNECT", RouteKey: "$disconnect", RequestID: "sample", DisconnectReason: &reason,
	}}
	rendered, err := renderTemplate(qi.Template, contextVars(sample))
	if err != nil {
		return err
	}
	_, err = sendMessageBody(rendered)
	return err
}

// send renders the template for req and sends the message.
func (qi *QueueIntegration) send(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) error {
	rendered, err := renderTemplate(qi.Template, contextVars(req))
	if err != nil {
		return err
	}
	body, err := sendMessageBody(rendered)
	if err != nil {
		return err
	}
	return qi.Send(ctx, body)
}

// Command panicky is a $default function for tests: it panics on the
// message "panic" and echoes anything else.
package main

import (
	"context"
	"encoding/json"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
)

func handle(_ context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	if req.Body == "panic" {
		panic("asked to panic")
	}
	b, _ := json.Marshal(map[string]string{"type": "echo", "body": req.Body})
	return events.APIGatewayProxyResponse{StatusCode: 200, Body: string(b)}, nil
}

func main() { lambda.Start(handle) }

package apigw

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/lambdahost"
)

// When Lambda refuses the invocation (a throttle), API Gateway answers
// 500 {"message": "Internal server error"}
// (https://docs.aws.amazon.com/lambda/latest/dg/services-apigateway-errors.html):
// on $connect the handshake fails with it, on $default the client gets
// the error frame; the connection stays open.
func TestThrottledIntegration_IsInternalServerError(t *testing.T) {
	t.Parallel()
	throttle := &lambdahost.ThrottleError{Function: fnMessage, Reason: lambdahost.ReasonReservedFunction, Limit: 2}
	fns := newFunctions()
	fns.message = func(_ context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		if req.Body == "over" {
			return events.APIGatewayProxyResponse{}, throttle
		}
		return reply("echo " + req.Body), nil
	}
	tg := start(t, Options{SerialFrames: true}, fns)
	ws, id := tg.dial(t, nil)
	send(t, ws, "over")
	var frame map[string]string
	require.NoError(t, json.Unmarshal([]byte(read(t, ws, 5*time.Second)), &frame))
	assert.Equal(t, map[string]string{"message": "Internal server error", "connectionId": id, "requestId": frame["requestId"]}, frame)
	assert.NotEmpty(t, frame["requestId"])
	send(t, ws, "after")
	assert.Equal(t, "echo after", read(t, ws, 5*time.Second), "the connection stays open")

	fns2 := newFunctions()
	fns2.connect = func(context.Context, events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
		return events.APIGatewayProxyResponse{}, &lambdahost.ThrottleError{Function: fnConnect, Reason: lambdahost.ReasonAccount, Limit: 1000}
	}
	tg2 := start(t, Options{}, fns2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, tg2.url(""), nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	assert.JSONEq(t, `{"message":"Internal server error"}`, string(body))
	tg2.CloseAll(ctx)
}

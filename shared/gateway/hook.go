package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"

	"github.com/wsgate/wsgate/shared/publish"
)

// PublishHook checks a client's event before it is numbered
// (WSGATE_PUBLISH_HOOK).
type PublishHook interface {
	Check(ctx context.Context, req publish.HookRequest) (publish.HookAnswer, error)
}

// LambdaInvoker is the part of the Lambda client a LambdaHook needs.
type LambdaInvoker interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

// LambdaHook asks a Lambda function (a name or an ARN), synchronously.
type LambdaHook struct {
	Client   LambdaInvoker
	Function string
}

// Check invokes the function with the request and reads its answer.
func (h LambdaHook) Check(ctx context.Context, req publish.HookRequest) (publish.HookAnswer, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return publish.HookAnswer{}, err
	}
	out, err := h.Client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(h.Function), Payload: payload})
	if err != nil {
		return publish.HookAnswer{}, fmt.Errorf("publish hook %s: %w", h.Function, err)
	}
	if out.FunctionError != nil {
		return publish.HookAnswer{}, fmt.Errorf("publish hook %s failed (%s): %.200s", h.Function, *out.FunctionError, out.Payload)
	}
	var ans publish.HookAnswer
	if err := json.Unmarshal(out.Payload, &ans); err != nil {
		return publish.HookAnswer{}, fmt.Errorf("publish hook %s: its answer is not {\"action\":...}: %w", h.Function, err)
	}
	switch ans.Action {
	case publish.HookAllow, publish.HookDeny, publish.HookRewrite:
		return ans, nil
	}
	return publish.HookAnswer{}, errors.New("publish hook " + h.Function + ": unknown action " + fmt.Sprintf("%q", ans.Action))
}

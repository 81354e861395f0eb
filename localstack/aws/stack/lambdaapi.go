package stack

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/wsgate/wsgate/localstack/aws/edge"
	"github.com/wsgate/wsgate/localstack/aws/lambdahost"
)

// maxInvokePayload is Lambda's limit of a synchronous invocation's request.
const maxInvokePayload = 6 << 20

// lambdaInvoke serves Lambda's Invoke API for the stack's functions (a
// publish hook among them, registered with Options.Extra):
// POST /2015-03-31/functions/{name or ARN}/invocations, synchronous only,
// with Lambda's answers: 404 ResourceNotFoundException for an unknown
// function, 200 with X-Amz-Function-Error for a failed one, 429
// TooManyRequestsException (with its Reason) for a throttled one.
func (s *Stack) lambdaInvoke(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.Path, edge.LambdaInvokePath)
	name, ok := strings.CutSuffix(rest, "/invocations")
	if r.Method != http.MethodPost || !ok || name == "" {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "the local gateway serves POST "+edge.LambdaInvokePath+"{function}/invocations only")
		return
	}
	if i := strings.LastIndex(name, ":function:"); i >= 0 {
		name = name[i+len(":function:"):] // an ARN
	}
	if t := r.Header.Get("X-Amz-Invocation-Type"); t != "" && t != "RequestResponse" {
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", "the local gateway invokes synchronously only (RequestResponse), not "+t)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxInvokePayload+1))
	if err != nil || len(body) > maxInvokePayload {
		lambdaError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "the request payload is over 6 MB")
		return
	}
	out, err := s.Host.Invoke(r.Context(), name, body)
	var fe *lambdahost.FunctionError
	var te *lambdahost.ThrottleError
	switch {
	case errors.As(err, &te):
		// Lambda's throttle: 429 TooManyRequestsException with its Reason
		// (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html).
		w.Header().Set("X-Amzn-ErrorType", "TooManyRequestsException")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		b, _ := json.Marshal(map[string]string{"Type": "User", "message": "Rate Exceeded.", "Reason": te.Reason})
		_, _ = w.Write(b)
	case errors.Is(err, lambdahost.ErrUnknownFunction):
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name)
	case errors.As(err, &fe):
		b, _ := json.Marshal(map[string]string{"errorType": fe.Type, "errorMessage": fe.Message})
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	case err != nil:
		lambdaError(w, http.StatusServiceUnavailable, "ServiceException", err.Error())
	default:
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	}
}

func lambdaError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("X-Amzn-ErrorType", code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	b, _ := json.Marshal(map[string]string{"Type": "User", "Message": msg})
	_, _ = w.Write(b)
}

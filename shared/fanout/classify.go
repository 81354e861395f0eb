package fanout

import (
	"errors"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Outcome classes of one PostToConnection call.
var (
	// ErrGone: the connection no longer exists (410); remove it.
	ErrGone = errors.New("connection gone")
	// ErrThrottled: 429 LimitExceededException, the account's rate or the
	// client's full buffer; retried.
	ErrThrottled = errors.New("throttled")
	// ErrRejected: the request can never succeed (403, 413, 400).
	ErrRejected = errors.New("rejected")
)

// Classify maps a PostToConnection error to ErrGone, ErrThrottled,
// ErrRejected, or itself (transient: 5xx, network, timeout).
func Classify(err error) error {
	if err == nil {
		return nil
	}
	var gone *types.GoneException
	var limit *types.LimitExceededException
	var tooLarge *types.PayloadTooLargeException
	var forbidden *types.ForbiddenException
	switch {
	case errors.As(err, &gone):
		return ErrGone
	case errors.As(err, &limit):
		return ErrThrottled
	case errors.As(err, &tooLarge), errors.As(err, &forbidden):
		return ErrRejected
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		switch code := re.HTTPStatusCode(); {
		case code == http.StatusGone:
			return ErrGone
		case code == http.StatusTooManyRequests:
			return ErrThrottled
		case code >= 400 && code < 500:
			return ErrRejected
		}
	}
	return err
}

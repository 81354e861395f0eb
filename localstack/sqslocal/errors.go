package sqslocal

import (
	"errors"
	"fmt"
	"net/http"
)

// Sentinel errors of the programmatic API. Errors returned by Service methods
// wrap one of these; over HTTP the same conditions become the SQS error codes
// the SDK decodes (for example *types.QueueDoesNotExist).
var (
	ErrQueueDoesNotExist     = errors.New("queue does not exist")
	ErrQueueNameExists       = errors.New("queue already exists with different attributes")
	ErrInvalidParameterValue = errors.New("invalid parameter value")
	ErrInvalidAttributeName  = errors.New("invalid attribute name")
	ErrInvalidAttributeValue = errors.New("invalid attribute value")
)

// errorCode is an SQS error shape name as it appears in the "__type" of a JSON
// error response.
type errorCode string

const (
	codeQueueDoesNotExist            errorCode = "QueueDoesNotExist"
	codeQueueNameExists              errorCode = "QueueNameExists"
	codeInvalidParameterValue        errorCode = "InvalidParameterValue"
	codeMissingParameter             errorCode = "MissingParameter"
	codeInvalidAttributeName         errorCode = "InvalidAttributeName"
	codeInvalidAttributeValue        errorCode = "InvalidAttributeValue"
	codeInvalidMessageContents       errorCode = "InvalidMessageContents"
	codeReceiptHandleIsInvalid       errorCode = "ReceiptHandleIsInvalid"
	codeMessageNotInflight           errorCode = "MessageNotInflight"
	codeBatchEntryIdsNotDistinct     errorCode = "BatchEntryIdsNotDistinct"
	codeEmptyBatchRequest            errorCode = "EmptyBatchRequest"
	codeTooManyEntriesInBatchRequest errorCode = "TooManyEntriesInBatchRequest"
	codeBatchRequestTooLong          errorCode = "BatchRequestTooLong"
	codeInvalidBatchEntryID          errorCode = "InvalidBatchEntryId"
	codeUnsupportedOperation         errorCode = "UnsupportedOperation"
	codeUnknownOperation             errorCode = "UnknownOperationException"
	codeSerialization                errorCode = "SerializationException"
)

// wireType is the "__type" value: modelled SQS errors live in the
// com.amazonaws.sqs namespace, protocol-level ones in the coral namespace.
func (c errorCode) wireType() string {
	switch c {
	case codeUnknownOperation, codeSerialization:
		return "com.amazon.coral.service#" + string(c)
	default:
		return "com.amazonaws.sqs#" + string(c)
	}
}

// queryCode is the legacy AWS Query error code SQS sends in the
// x-amzn-query-error header; the SDK reports it from ErrorCode().
func (c errorCode) queryCode() string {
	switch c {
	case codeQueueDoesNotExist:
		return "AWS.SimpleQueueService.NonExistentQueue"
	case codeQueueNameExists:
		return "QueueAlreadyExists"
	case codeMessageNotInflight, codeBatchEntryIdsNotDistinct, codeEmptyBatchRequest,
		codeTooManyEntriesInBatchRequest, codeBatchRequestTooLong, codeInvalidBatchEntryID,
		codeUnsupportedOperation:
		return "AWS.SimpleQueueService." + string(c)
	default:
		return string(c)
	}
}

// status is the HTTP status SQS answers with for the error.
func (c errorCode) status() int {
	switch c {
	case codeReceiptHandleIsInvalid:
		return http.StatusNotFound
	default:
		return http.StatusBadRequest
	}
}

// sentinel is the exported error the code unwraps to, if any.
func (c errorCode) sentinel() error {
	switch c {
	case codeQueueDoesNotExist:
		return ErrQueueDoesNotExist
	case codeQueueNameExists:
		return ErrQueueNameExists
	case codeInvalidParameterValue, codeMissingParameter, codeInvalidMessageContents:
		return ErrInvalidParameterValue
	case codeInvalidAttributeName:
		return ErrInvalidAttributeName
	case codeInvalidAttributeValue:
		return ErrInvalidAttributeValue
	default:
		return nil
	}
}

// apiError is an SQS error: a code the SDK branches on and a human message.
type apiError struct {
	code    errorCode
	message string
}

func newError(code errorCode, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}

func (e *apiError) Error() string { return string(e.code) + ": " + e.message }

func (e *apiError) Unwrap() error { return e.code.sentinel() }

func errQueueDoesNotExist() *apiError {
	return newError(codeQueueDoesNotExist, "The specified queue does not exist.")
}

func errMissing(param string) *apiError {
	return newError(codeMissingParameter, "The request must contain the parameter %s.", param)
}

func errInvalidValue(param, value, reason string) *apiError {
	return newError(codeInvalidParameterValue, "Value %s for parameter %s is invalid. Reason: %s", value, param, reason)
}

func errMessageTooLong(limit int) *apiError {
	return newError(codeInvalidParameterValue,
		"One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", limit)
}

func errBatchTooLong(sent int) *apiError {
	return newError(codeBatchRequestTooLong,
		"Batch requests cannot be longer than %d bytes. You have sent %d bytes.", maxBatchBytes, sent)
}

// errRequestTooLong answers a body longer than maxRequestBody, which
// cannot hold messages within the limits: as SQS answers messages that are
// too long, for the operations that send them.
func errRequestTooLong(op string) *apiError {
	switch op {
	case "SendMessage":
		return errMessageTooLong(maxMessageSize)
	case "SendMessageBatch":
		return newError(codeBatchRequestTooLong, "Batch requests cannot be longer than %d bytes.", maxBatchBytes)
	}
	return newError(codeInvalidParameterValue, "The request body is longer than %d bytes.", maxRequestBody)
}

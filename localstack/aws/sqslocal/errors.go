package sqslocal

import (
	"errors"
	"fmt"
)

// Sentinel errors of the Go API (CreateQueue, QueueARN, Depth).
var (
	ErrQueueDoesNotExist     = errors.New("queue does not exist")
	ErrQueueNameExists       = errors.New("a queue of that name exists")
	ErrInvalidParameterValue = errors.New("invalid parameter value")
	ErrInvalidAttributeName  = errors.New("invalid attribute name")
	ErrInvalidAttributeValue = errors.New("invalid attribute value")
)

// errorCode is an SQS error shape name as it appears in the "__type" of a
// JSON error response.
type errorCode string

const (
	codeQueueDoesNotExist            errorCode = "QueueDoesNotExist"
	codeInvalidParameterValue        errorCode = "InvalidParameterValue"
	codeMissingParameter             errorCode = "MissingParameter"
	codeInvalidMessageContents       errorCode = "InvalidMessageContents"
	codeBatchEntryIdsNotDistinct     errorCode = "BatchEntryIdsNotDistinct"
	codeEmptyBatchRequest            errorCode = "EmptyBatchRequest"
	codeTooManyEntriesInBatchRequest errorCode = "TooManyEntriesInBatchRequest"
	codeBatchRequestTooLong          errorCode = "BatchRequestTooLong"
	codeInvalidBatchEntryID          errorCode = "InvalidBatchEntryId"
	codeUnsupportedOperation         errorCode = "UnsupportedOperation"
	codeUnknownOperation             errorCode = "UnknownOperationException"
	codeSerialization                errorCode = "SerializationException"
	codeReceiptHandleIsInvalid       errorCode = "ReceiptHandleIsInvalid"
	codeMessageNotInflight           errorCode = "MessageNotInflight"
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
	case codeBatchEntryIdsNotDistinct, codeEmptyBatchRequest, codeTooManyEntriesInBatchRequest,
		codeBatchRequestTooLong, codeInvalidBatchEntryID, codeUnsupportedOperation, codeMessageNotInflight:
		return "AWS.SimpleQueueService." + string(c)
	default:
		return string(c)
	}
}

// apiError is an SQS error answered over HTTP (always a 400): a code the
// SDK branches on and a human message.
type apiError struct {
	code    errorCode
	message string
}

func newError(code errorCode, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}

func (e *apiError) Error() string { return string(e.code) + ": " + e.message }

func errQueueDoesNotExist() *apiError {
	return newError(codeQueueDoesNotExist, "The specified queue does not exist.")
}

func errMissing(param string) *apiError {
	return newError(codeMissingParameter, "The request must contain the parameter %s.", param)
}

func errMessageTooLong() *apiError {
	return newError(codeInvalidParameterValue,
		"One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", maxMessageSize)
}

func errBatchTooLong(sent int) *apiError {
	return newError(codeBatchRequestTooLong,
		"Batch requests cannot be longer than %d bytes. You have sent %d bytes.", maxBatchBytes, sent)
}

package sqslocal

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// maxRequestBody bounds a request body. JSON escaping takes at most 6
// bytes per byte of message (\u00XX), and ids and the rest of the request
// fit in the slack: a longer body cannot hold a request within
// maxBatchBytes, and is answered as one whose messages are too long.
const maxRequestBody = 6*maxBatchBytes + 2<<20

// ServeHTTP answers SendMessage, SendMessageBatch and ChangeMessageVisibility
// in the AWS JSON 1.0 protocol: POST with X-Amz-Target
// "AmazonSQS.<Operation>". Other SQS
// operations are refused with UnsupportedOperation. Signatures are checked
// in front of it (localstack/aws/awsauth), not here.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonSQS.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, newError(codeUnknownOperation, "Operation %q is not supported; use POST with X-Amz-Target AmazonSQS.<Operation>.", target))
		return
	}
	var serve func(body []byte, sender string) (any, *apiError)
	var tooLong *apiError
	switch op {
	case "SendMessage":
		serve, tooLong = s.sendMessage, errMessageTooLong()
	case "SendMessageBatch":
		serve, tooLong = s.sendMessageBatch, newError(codeBatchRequestTooLong, "Batch requests cannot be longer than %d bytes.", maxBatchBytes)
	case "ChangeMessageVisibility":
		serve, tooLong = s.changeMessageVisibility, newError(codeInvalidParameterValue, "The request is too long.")
	default:
		writeError(w, newError(codeUnsupportedOperation,
			"%s is not supported by this emulator: it serves SendMessage, SendMessageBatch and ChangeMessageVisibility, and the local stack makes the queues.", op))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	var bodyTooLong *http.MaxBytesError
	switch {
	case errors.As(err, &bodyTooLong):
		writeError(w, tooLong)
		return
	case err != nil:
		writeError(w, newError(codeInvalidParameterValue, "Request body could not be read: %v", err))
		return
	}
	out, aerr := serve(body, senderID(r))
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	payload, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		payload = []byte(`{"__type":"com.amazonaws.sqs#InternalError","message":"response encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-RequestId", newID())
	w.WriteHeader(status)
	_, _ = w.Write(payload)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("X-Amzn-Query-Error", e.code.queryCode()+";Sender")
	writeJSON(w, http.StatusBadRequest, errorOutput{Type: e.code.wireType(), Message: e.message})
}

// decode reads a request body into v, refusing members v does not have:
// what this emulator does not implement (message attributes, FIFO
// parameters) must fail loudly, not be dropped.
func decode(body []byte, v any) *apiError {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, trailing := dec.Token(); !errors.Is(trailing, io.EOF) {
			return newError(codeSerialization, "Request body is not valid for this operation: data after the JSON object.")
		}
		return nil
	}
	if json.Unmarshal(body, v) == nil {
		return newError(codeUnsupportedOperation, "This emulator does not implement a member of the request: %v.", err)
	}
	return newError(codeSerialization, "Request body is not valid for this operation: %v", err)
}

// senderID stands in for the IAM identity SQS reports as SenderId: the
// access key id of the request's SigV4 credential, else the account id.
func senderID(r *http.Request) string {
	auth := r.Header.Get("Authorization")
	if _, rest, ok := strings.Cut(auth, "Credential="); ok {
		if key, _, ok := strings.Cut(rest, "/"); ok && key != "" {
			return key
		}
	}
	return accountID
}

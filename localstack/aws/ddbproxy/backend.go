package ddbproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// backend makes the proxy's own calls to DynamoDB Local (describe and build
// replicas, read images, write them) as raw JSON: item images pass through
// as they are, never decoded into attribute values and encoded again.
type backend struct {
	url string
	rt  http.RoundTripper
}

// fakeAuth is enough for DynamoDB Local, which wants a SigV4-shaped header
// and, with -sharedDb, checks nothing in it.
const fakeAuth = "AWS4-HMAC-SHA256 Credential=ddbproxy/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0"

// apiError is an error DynamoDB Local answered with.
type apiError struct {
	Status  int
	Code    string // the part of __type after '#', e.g. ResourceNotFoundException
	Message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("dynamodb: %s (HTTP %d): %s", e.Code, e.Status, e.Message)
}

// isCode reports whether err is DynamoDB's error of that code.
func isCode(err error, code string) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Code == code
}

// call runs op with in marshalled as its request, and unmarshals the answer
// into out (if not nil).
func (b *backend) call(ctx context.Context, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("ddbproxy: %s request: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", targetPrefix+op)
	req.Header.Set("Authorization", fakeAuth)
	resp, err := b.rt.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("ddbproxy: %s: %w", op, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("ddbproxy: %s: %w", op, err)
	}
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp.StatusCode, raw)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("ddbproxy: %s answer: %w", op, err)
	}
	return nil
}

func decodeError(status int, raw []byte) error {
	var e struct {
		Type    string `json:"__type"`
		Message string `json:"message"` // matches "Message" too
	}
	_ = json.Unmarshal(raw, &e)
	code := e.Type
	if i := strings.LastIndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	return &apiError{Status: status, Code: code, Message: e.Message}
}

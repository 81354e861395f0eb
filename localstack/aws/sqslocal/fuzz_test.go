package sqslocal

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzServeHTTP feeds arbitrary operations and bodies to the service: it
// must answer each with a JSON document and a 200 or 400, never panic.
func FuzzServeHTTP(f *testing.F) {
	const queue = `"QueueUrl":"http://localhost:4566/000000000000/q"`
	seeds := []struct{ op, body string }{
		{"SendMessage", `{` + queue + `,"MessageBody":"hi","DelaySeconds":0}`},
		{"SendMessage", `{` + queue + `,"MessageBody":"hi","MessageAttributes":{"a":{"DataType":"Binary","BinaryValue":"AAE="}}}`},
		{"SendMessageBatch", `{` + queue + `,"Entries":[{"Id":"a","MessageBody":"x"},{"Id":"a","MessageBody":"y"}]}`},
		{"SendMessageBatch", `{` + queue + `,"Entries":[{"Id":"a","MessageBody":"x","DelaySeconds":901},{"Id":"b"}]}`},
		{"ReceiveMessage", `{` + queue + `}`},
		{"Nope", `null`},
	}
	for _, s := range seeds {
		f.Add(s.op, s.body)
	}
	svc := New(Options{})
	f.Cleanup(svc.Close)
	if _, err := svc.CreateQueue("q", nil); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, op, body string) {
		req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("X-Amz-Target", "AmazonSQS."+op)
		rec := httptest.NewRecorder()
		svc.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest:
		default:
			t.Fatalf("status %d for %s %q", rec.Code, op, body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("invalid JSON answer %q", rec.Body.String())
		}
	})
}

// FuzzParseRedrivePolicy checks that any policy either parses into a
// usable policy or is refused with ErrInvalidAttributeValue.
func FuzzParseRedrivePolicy(f *testing.F) {
	f.Add(`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:d","maxReceiveCount":"3"}`)
	f.Add(`{"deadLetterTargetArn":"arn","maxReceiveCount":1000}`)
	f.Add(`{"maxReceiveCount":0}`)
	f.Fuzz(func(t *testing.T, value string) {
		p, err := parseRedrivePolicy(value)
		if err != nil {
			if !errors.Is(err, ErrInvalidAttributeValue) {
				t.Fatalf("error %v", err)
			}
			return
		}
		if p.maxReceiveCount < 1 || p.maxReceiveCount > 1000 || p.deadLetterTargetARN == "" {
			t.Fatalf("accepted invalid policy %+v", p)
		}
	})
}

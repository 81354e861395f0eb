package sqslocal

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzServeHTTP feeds arbitrary bodies to every operation: the service
// must answer each with a JSON document and a 200, 400 or 404, never panic.
func FuzzServeHTTP(f *testing.F) {
	const queue = `"QueueUrl":"http://localhost:4566/000000000000/q"`
	seeds := []struct{ op, body string }{
		{"CreateQueue", `{"QueueName":"q","Attributes":{"VisibilityTimeout":"0","RedrivePolicy":"{\"deadLetterTargetArn\":\"arn:aws:sqs:us-east-1:000000000000:q\",\"maxReceiveCount\":\"1\"}"}}`},
		{"SendMessage", `{` + queue + `,"MessageBody":"hi","DelaySeconds":0,"MessageAttributes":{"a":{"DataType":"Binary","BinaryValue":"AAE="}}}`},
		{"SendMessageBatch", `{` + queue + `,"Entries":[{"Id":"a","MessageBody":"x"},{"Id":"a","MessageBody":"y"}]}`},
		{"ReceiveMessage", `{` + queue + `,"MaxNumberOfMessages":10,"AttributeNames":["All"],"MessageAttributeNames":["a.*"]}`},
		{"DeleteMessage", `{` + queue + `,"ReceiptHandle":"cQBpZABu"}`},
		{"DeleteMessageBatch", `{` + queue + `,"Entries":[{"Id":"a"}]}`},
		{"ChangeMessageVisibility", `{` + queue + `,"ReceiptHandle":"x","VisibilityTimeout":-1}`},
		{"ChangeMessageVisibilityBatch", `{` + queue + `,"Entries":[]}`},
		{"GetQueueAttributes", `{` + queue + `,"AttributeNames":["All","Nope"]}`},
		{"SetQueueAttributes", `{` + queue + `,"Attributes":{"RedrivePolicy":"{}"}}`},
		{"ListQueues", `{"MaxResults":1,"NextToken":"q"}`},
		{"GetQueueUrl", `{"QueueName":"q"}`},
		{"PurgeQueue", `{` + queue + `}`},
		{"DeleteQueue", `{` + queue + `}`},
		{"Nope", `null`},
	}
	for _, s := range seeds {
		f.Add(s.op, s.body)
	}
	svc := New(Options{})
	f.Cleanup(svc.Close)
	_, _ = svc.CreateQueue("q", nil)
	f.Fuzz(func(t *testing.T, op, body string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/", strings.NewReader(body))
		req.Header.Set("X-Amz-Target", "AmazonSQS."+op)
		rec := httptest.NewRecorder()
		svc.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
		default:
			t.Fatalf("status %d for %s %q", rec.Code, op, body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("invalid JSON answer %q", rec.Body.String())
		}
	})
}

// FuzzParseRedrivePolicy checks that any policy either parses into a
// usable policy or is rejected with InvalidAttributeValue.
func FuzzParseRedrivePolicy(f *testing.F) {
	f.Add(`{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:d","maxReceiveCount":"3"}`)
	f.Add(`{"deadLetterTargetArn":"arn","maxReceiveCount":1000}`)
	f.Add(`{"maxReceiveCount":0}`)
	f.Fuzz(func(t *testing.T, value string) {
		p, err := parseRedrivePolicy(value)
		if err != nil {
			if err.code != codeInvalidAttributeValue {
				t.Fatalf("code %s", err.code)
			}
			return
		}
		if p.maxReceiveCount < 1 || p.maxReceiveCount > 1000 || p.deadLetterTargetARN == "" {
			t.Fatalf("accepted invalid policy %+v", p)
		}
		again, err := parseRedrivePolicy(p.String())
		if err != nil || *again != *p {
			t.Fatalf("policy does not round-trip: %v %+v", err, again)
		}
	})
}

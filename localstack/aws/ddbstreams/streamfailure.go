package ddbstreams

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"
)

// Why a batch was discarded, as Lambda's invocation record says it.
const (
	conditionRetries = "RetryAttemptsExhausted"
	conditionAge     = "RecordAgeExceeded"
)

// invocationRecord is what Lambda sends an on-failure destination for a
// discarded stream batch: its metadata, never its records.
type invocationRecord struct {
	RequestContext  requestContext   `json:"requestContext"`
	ResponseContext *responseContext `json:"responseContext,omitempty"`
	Version         string           `json:"version"`
	Timestamp       string           `json:"timestamp"`
	BatchInfo       streamBatchInfo  `json:"DDBStreamBatchInfo"`
}

type requestContext struct {
	RequestID              string `json:"requestId"`
	FunctionArn            string `json:"functionArn"`
	Condition              string `json:"condition"`
	ApproximateInvokeCount int    `json:"approximateInvokeCount"`
}

type responseContext struct {
	StatusCode      int    `json:"statusCode"`
	ExecutedVersion string `json:"executedVersion"`
	FunctionError   string `json:"functionError,omitempty"`
}

type streamBatchInfo struct {
	ShardID                         string `json:"shardId"`
	StartSequenceNumber             string `json:"startSequenceNumber"`
	EndSequenceNumber               string `json:"endSequenceNumber"`
	ApproximateArrivalOfFirstRecord string `json:"approximateArrivalOfFirstRecord"`
	ApproximateArrivalOfLastRecord  string `json:"approximateArrivalOfLastRecord"`
	BatchSize                       int    `json:"batchSize"`
	StreamArn                       string `json:"streamArn"`
}

// discard gives up on a batch: OnFailure gets its invocation record.
func (r *streamRunner) discard(ctx context.Context, batch []streamRecord, condition string, t tries) {
	first, last := batch[0], batch[len(batch)-1]
	rec := invocationRecord{
		RequestContext: requestContext{
			RequestID:   newRequestID(),
			FunctionArn: "arn:aws:lambda:us-east-1:000000000000:function:" + r.m.FunctionName,
			Condition:   condition, ApproximateInvokeCount: t.invokes,
		},
		Version:   "1.0",
		Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		BatchInfo: streamBatchInfo{
			ShardID: first.shardID, StartSequenceNumber: first.seq, EndSequenceNumber: last.seq,
			ApproximateArrivalOfFirstRecord: first.arrival.UTC().Format(time.RFC3339),
			ApproximateArrivalOfLastRecord:  last.arrival.UTC().Format(time.RFC3339),
			BatchSize:                       len(batch), StreamArn: r.arn,
		},
	}
	if t.invokes > 0 {
		rec.ResponseContext = &responseContext{StatusCode: 200, ExecutedVersion: "$LATEST"}
		if t.functionError {
			rec.ResponseContext.FunctionError = "Unhandled"
		}
	}
	r.m.Log.Warn("stream: batch discarded", "condition", condition, "records", len(batch),
		"start", first.seq, "end", last.seq, "invocations", t.invokes)
	if r.m.OnFailure == nil {
		return
	}
	body, _ := json.Marshal(rec)
	if err := r.m.OnFailure(ctx, body); err != nil && ctx.Err() == nil {
		r.m.Log.Error("stream: on-failure destination refused a discarded batch's record", "error", err.Error(), "record", string(body))
	}
}

// newRequestID is a random UUID, as Lambda's request ids are.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

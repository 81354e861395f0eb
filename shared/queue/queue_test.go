package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecode_ValidatesKinds(t *testing.T) {
	ok := []string{
		`{"kind":"auth_deadline","connection_id":"c"}`,
		`{"kind":"replay","connection_id":"c","topic":"a","since":3}`,
		`{"kind":"shard","event_id":"e","detail":{"topic":"a.b"},"range":{"k":1,"r":1,"patterns":[{"p":"a.b","lv":[0,1]}]}}`,
		`{"kind":"shard","event_id":"e","detail":{"topic":"a.b"},"range":{"k":0,"r":0,"patterns":[{"p":"a.*","w":true}]}}`,
		`{"kind":"shard","event_id":"e","detail_ref":"e","range":{"k":6,"r":63,"patterns":[{"p":"a.b"}]}}`,
	}
	for _, s := range ok {
		_, err := Decode(s)
		assert.NoError(t, err, s)
	}
	for _, s := range []string{`{`, `{"kind":"x"}`, `{"kind":"replay"}`, `{"kind":"shard","event_id":"e"}`,
		`{"kind":"shard","event_id":"e","detail":{},"variants":[{}],"conns":["c1"]}`,
		`{"kind":"shard","event_id":"e","detail":{},"range":{"k":1,"r":2,"patterns":[{"p":"a.b"}]}}`,
		`{"kind":"shard","event_id":"e","detail":{},"range":{"k":7,"r":0,"patterns":[{"p":"a.b"}]}}`,
		`{"kind":"shard","event_id":"e","detail":{},"range":{"k":1,"r":0,"patterns":[]}}`,
		`{"kind":"shard","event_id":"e","detail":{"topic":"a.b"},"detail_ref":"e","range":{"k":0,"r":0,"patterns":[{"p":"a"}]}}`} {
		_, err := Decode(s)
		assert.Error(t, err, s)
	}
}

type fakeSQS struct {
	sent    []*sqs.SendMessageInput
	batches [][]types.SendMessageBatchRequestEntry
	refuse  int
	changed []*sqs.ChangeMessageVisibilityInput
}

func (f *fakeSQS) ChangeMessageVisibility(_ context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	f.changed = append(f.changed, in)
	return &sqs.ChangeMessageVisibilityOutput{}, nil
}

func (f *fakeSQS) SendMessage(_ context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	f.sent = append(f.sent, in)
	return &sqs.SendMessageOutput{}, nil
}

func (f *fakeSQS) SendMessageBatch(_ context.Context, in *sqs.SendMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	f.batches = append(f.batches, in.Entries)
	out := &sqs.SendMessageBatchOutput{}
	for _, e := range in.Entries {
		if f.refuse > 0 {
			f.refuse--
			out.Failed = append(out.Failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("Throttled"), Message: aws.String("slow")})
		}
	}
	return out, nil
}

func TestSend_DelayAndBody(t *testing.T) {
	f := &fakeSQS{}
	q := New(f, "http://q")
	require.NoError(t, q.Send(context.Background(), Task{Kind: KindAuthDeadline, ConnectionID: "c"}, 10*time.Second))
	require.NoError(t, q.Send(context.Background(), Task{Kind: KindAuthDeadline, ConnectionID: "c"}, time.Hour))
	assert.Equal(t, int32(10), f.sent[0].DelaySeconds)
	assert.Equal(t, int32(900), f.sent[1].DelaySeconds, "capped at SQS's 15 minutes")
	var back Task
	require.NoError(t, json.Unmarshal([]byte(*f.sent[0].MessageBody), &back))
	assert.Equal(t, "c", back.ConnectionID)
}

func TestSendAll_BatchesOfTenAndRetriesRefused(t *testing.T) {
	f := &fakeSQS{refuse: 2}
	var tasks []Task
	for i := range 23 {
		tasks = append(tasks, Task{Kind: KindReplay, ConnectionID: fmt.Sprint(i)})
	}
	require.NoError(t, New(f, "http://q").SendAll(context.Background(), tasks))
	var sizes []int
	for _, b := range f.batches {
		sizes = append(sizes, len(b))
	}
	assert.Equal(t, []int{10, 2, 10, 3}, sizes, "the two refused entries were sent again")
}

// Batches stay within SQS's 1 MiB per batch as well as ten entries, and a
// task larger than a message is refused before anything is sent.
func TestSendAll_BatchesByBytes(t *testing.T) {
	f := &fakeSQS{}
	detail := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n) + `"`) }
	rg := &Range{Patterns: []RangePattern{{Pattern: "a"}}}
	var tasks []Task
	for range 5 {
		tasks = append(tasks, Task{Kind: KindShard, EventID: "e", Detail: detail(310_000), Range: rg}) // ~310 KB each
	}
	require.NoError(t, New(f, "http://q").SendAll(context.Background(), tasks))
	var sizes []int
	for _, b := range f.batches {
		sizes = append(sizes, len(b))
		total := 0
		for _, e := range b {
			total += len(*e.MessageBody)
		}
		assert.LessOrEqual(t, total, MaxMessageBytes)
	}
	assert.Equal(t, []int{3, 2}, sizes)

	f = &fakeSQS{}
	huge := Task{Kind: KindShard, EventID: "e", Detail: detail(1_100_000), Range: rg}
	err := New(f, "http://q").SendAll(context.Background(), []Task{huge})
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Empty(t, f.batches)
}

// A failed task is back within a second or two, later the more often it
// failed, and every retry together stays within minutes before the
// dead-letter queue, not MaxReceives visibility timeouts.
func TestRetryDelay_SecondsAtFirstThenBackingOff(t *testing.T) {
	tests := []struct {
		receive  int
		min, max time.Duration
	}{
		{1, time.Second, time.Second},
		{2, time.Second, 2 * time.Second},
		{3, 2 * time.Second, 4 * time.Second},
		{5, 8 * time.Second, 16 * time.Second},
		{9, time.Minute, 2 * time.Minute},
		{50, time.Minute, 2 * time.Minute},
	}
	for _, tt := range tests {
		for range 50 {
			d := RetryDelay(tt.receive)
			assert.GreaterOrEqual(t, d, tt.min, "receive %d", tt.receive)
			assert.LessOrEqual(t, d, tt.max, "receive %d", tt.receive)
			assert.Zero(t, d%time.Second, "whole seconds, as SQS takes them")
		}
	}
	// The waits between MaxReceives receives: each step at least half.
	var least, most time.Duration
	for n := 1; n < MaxReceives; n++ {
		step := min(retry.Base<<(n-1), retry.Max)
		least, most = least+step/2, most+step
	}
	assert.Greater(t, least, 3*time.Minute, "a failing task has minutes to recover before the DLQ")
	assert.Less(t, most, 7*time.Minute, "not MaxReceives visibility timeouts (an hour)")
}

func TestRetry_ChangesTheMessageVisibility(t *testing.T) {
	f := &fakeSQS{}
	q := New(f, "http://q")
	require.NoError(t, q.Retry(context.Background(), "handle-1", 2*time.Second))
	require.NoError(t, q.Retry(context.Background(), "handle-2", 0))
	require.Len(t, f.changed, 2)
	assert.Equal(t, "http://q", aws.ToString(f.changed[0].QueueUrl))
	assert.Equal(t, "handle-1", aws.ToString(f.changed[0].ReceiptHandle))
	assert.Equal(t, int32(2), f.changed[0].VisibilityTimeout)
	assert.Equal(t, int32(1), f.changed[1].VisibilityTimeout, "never 0: that would hand the task straight back")
}

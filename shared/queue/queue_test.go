package queue

import (
	"context"
	"encoding/json"
	"fmt"
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
		`{"kind":"shard","event_id":"e","detail":{"topic":"a.b"},"variants":[{}],"conns":["c1","c2"]}`,
		`{"kind":"shard","event_id":"e","detail":{"topic":"a.b"},"variants":[{},{"env":true}],"conns":["c1","c2"],"variant_of":[0,1]}`,
		`{"kind":"shard","event_id":"e","detail_ref":"e","variants":[{}],"conns":["c1"]}`,
	}
	for _, s := range ok {
		_, err := Decode(s)
		assert.NoError(t, err, s)
	}
	for _, s := range []string{`{`, `{"kind":"x"}`, `{"kind":"replay"}`, `{"kind":"shard","event_id":"e"}`,
		`{"kind":"shard","event_id":"e","detail":{},"variants":[{}],"conns":["c1"],"variant_of":[0,1]}`,
		`{"kind":"shard","event_id":"e","detail":{},"variants":[{}],"conns":["c1"],"variant_of":[3]}`,
		`{"kind":"shard","event_id":"e","detail":{"topic":"a.b"},"detail_ref":"e","variants":[{}],"conns":["c1"]}`} {
		_, err := Decode(s)
		assert.Error(t, err, s)
	}
}

type fakeSQS struct {
	sent    []*sqs.SendMessageInput
	batches [][]types.SendMessageBatchRequestEntry
	refuse  int
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
	big := make([]string, 0, 30_000)
	for i := range cap(big) {
		big = append(big, fmt.Sprintf("conn-%05d", i))
	}
	var tasks []Task
	for range 5 {
		tasks = append(tasks, Task{Kind: KindShard, EventID: "e", DetailRef: "e", Variants: []Variant{{}}, Conns: big[:24_000]}) // ~310 KB each
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
	huge := Task{Kind: KindShard, EventID: "e", DetailRef: "e", Variants: []Variant{{}}, Conns: append(append(big, big...), big...)}
	err := New(f, "http://q").SendAll(context.Background(), []Task{huge})
	assert.ErrorIs(t, err, ErrTooLarge)
	assert.Empty(t, f.batches)
}

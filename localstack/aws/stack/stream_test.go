package stack_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/sqslocal"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

// The table's stream mapping runs as the CDK stack configures it: a record
// the function always fails on is split out of its batch, retried
// store.StreamRetryAttempts times and discarded, its metadata (not its
// data) going to the events DLQ, while the other records are delivered.
func TestStream_PoisonRecordIsDiscardedToTheEventsDLQ(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "streamfail", "bootstrap")
	require.NoError(t, stacktest.BuildPackage(bin, "github.com/wsgate/wsgate/localstack/aws/stack/testdata/streamfail"))
	var mu sync.Mutex
	var delivered []string
	s := stacktest.Start(t, func(o *stack.Options) {
		o.FunctionPaths = map[string]string{stack.FnBroadcast: bin}
		o.FunctionLog = func(fn string, line []byte) {
			var rec struct{ Msg, PK string }
			if fn == stack.FnBroadcast && json.Unmarshal(line, &rec) == nil && rec.Msg == "stream record" {
				mu.Lock()
				delivered = append(delivered, rec.PK)
				mu.Unlock()
			}
		}
	})
	dlq := make(chan string, 10)
	t.Cleanup(s.SQS.AddEventSource(sqslocal.EventSourceMapping{
		QueueURL: s.EventDeadLetterURL,
		Invoke: func(_ context.Context, payload []byte) ([]byte, error) {
			var e events.SQSEvent
			if err := json.Unmarshal(payload, &e); err != nil {
				return nil, err
			}
			for _, m := range e.Records {
				dlq <- m.Body
			}
			return nil, nil
		},
	}))

	db := dynamolocal.Client(s.DynamoDBEndpoint)
	for _, pk := range []string{"C#ok1", "C#poison", "C#ok2", "C#ok3"} {
		_, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(s.Table), Item: map[string]ddbtypes.AttributeValue{
			store.PartitionKey: &ddbtypes.AttributeValueMemberS{Value: pk},
			store.SortKey:      &ddbtypes.AttributeValueMemberS{Value: "#META"},
		}})
		require.NoError(t, err)
	}

	var body string
	select {
	case body = <-dlq:
	case <-time.After(30 * time.Second):
		t.Fatal("no discarded batch's record reached the events DLQ")
	}
	var rec struct {
		RequestContext struct {
			Condition              string `json:"condition"`
			ApproximateInvokeCount int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		Info struct {
			BatchSize int    `json:"batchSize"`
			StreamArn string `json:"streamArn"`
		} `json:"DDBStreamBatchInfo"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &rec), body)
	assert.Equal(t, "RetryAttemptsExhausted", rec.RequestContext.Condition)
	assert.Equal(t, store.StreamRetryAttempts+1, rec.RequestContext.ApproximateInvokeCount)
	assert.Equal(t, 1, rec.Info.BatchSize, "split down to the poison record")
	assert.Contains(t, rec.Info.StreamArn, s.Table)
	assert.NotContains(t, body, "poison", "metadata only")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) >= 3
	}, 10*time.Second, 20*time.Millisecond)
	mu.Lock()
	assert.ElementsMatch(t, []string{"C#ok1", "C#ok2", "C#ok3"}, slices.Compact(slices.Sorted(slices.Values(delivered))))
	mu.Unlock()
	select {
	case more := <-dlq:
		t.Errorf("one batch discarded, not more: %s", more)
	case <-time.After(300 * time.Millisecond):
	}
}

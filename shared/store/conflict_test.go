package store

import (
	"context"
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func cancelled(codes ...string) error {
	tce := &types.TransactionCanceledException{Message: aws.String("Transaction cancelled")}
	for _, c := range codes {
		tce.CancellationReasons = append(tce.CancellationReasons, types.CancellationReason{Code: aws.String(c)})
	}
	return tce
}

func TestIsConflict(t *testing.T) {
	assert.True(t, IsConflict(&types.TransactionConflictException{}))
	assert.True(t, IsConflict(cancelled("None", "TransactionConflict")))
	assert.False(t, IsConflict(cancelled("ConditionalCheckFailed", "TransactionConflict")), "a real refusal beside it is not retried")
	assert.False(t, IsConflict(cancelled("None", "ConditionalCheckFailed")))
	assert.False(t, IsConflict(errors.New("boom")))
	assert.False(t, IsConflict(nil))
}

// conflictingDB fails the first writes with a conflict, then succeeds.
type conflictingDB struct {
	DB
	fail  int
	calls int
}

func (c *conflictingDB) TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	c.calls++
	if c.calls <= c.fail {
		return nil, cancelled("TransactionConflict", "None")
	}
	return &dynamodb.TransactWriteItemsOutput{}, nil
}

func TestConflictRetry_RetriesConflictsAndCountsThem(t *testing.T) {
	db := &conflictingDB{fail: 3}
	m := &Meter{}
	ctx := WithMeter(context.Background(), m)
	_, err := conflictRetry{db}.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{})
	require.NoError(t, err)
	assert.Equal(t, 4, db.calls)
	assert.Equal(t, 3, m.Conflicts)

	db = &conflictingDB{fail: 100}
	_, err = conflictRetry{db}.TransactWriteItems(context.Background(), &dynamodb.TransactWriteItemsInput{})
	assert.True(t, IsConflict(err), "gives up after its attempts with the conflict")
	assert.Equal(t, conflictAttempts, db.calls)
}

// throttlingDB cancels the first transactions for throttling.
type throttlingDB struct {
	DB
	fail, calls int
}

func (c *throttlingDB) TransactWriteItems(context.Context, *dynamodb.TransactWriteItemsInput, ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	c.calls++
	if c.calls <= c.fail {
		return nil, cancelled("None", "ThrottlingError")
	}
	return &dynamodb.TransactWriteItemsOutput{}, nil
}

func TestConflictRetry_RetriesATransactionCancelledForThrottling(t *testing.T) {
	db := &throttlingDB{fail: 2}
	m := &Meter{}
	_, err := conflictRetry{db}.TransactWriteItems(WithMeter(context.Background(), m), &dynamodb.TransactWriteItemsInput{})
	require.NoError(t, err)
	assert.Equal(t, 3, db.calls)
	assert.Zero(t, m.Conflicts, "throttles are not conflicts")
	assert.Equal(t, 2, m.Throttles, "each retried throttle counted")
	assert.False(t, throttledTransaction(cancelled("ConditionalCheckFailed", "ThrottlingError")), "a real refusal beside it is not retried")
}

package store

import (
	"errors"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsretry "github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A subscriber entry's put acts on a throttle itself (it raises the
// pattern's level before it tries again), so the SDK must hand the
// throttle back at once, while it still retries what it retried before.
func TestThrottlesNotRetried_OnlyThrottlesComeBackAtOnce(t *testing.T) {
	o := dynamodb.Options{Retryer: awsretry.NewStandard()}
	throttle := &types.ProvisionedThroughputExceededException{Message: aws.String("over")}
	other := &smithy.GenericAPIError{Code: "RequestTimeoutException", Message: "slow"}
	require.True(t, o.Retryer.IsErrorRetryable(throttle), "the SDK retries a throttle by default")
	require.True(t, o.Retryer.IsErrorRetryable(other))

	throttlesNotRetried(&o)
	assert.False(t, o.Retryer.IsErrorRetryable(throttle))
	assert.True(t, o.Retryer.IsErrorRetryable(other), "other errors are retried as before")
	assert.False(t, o.Retryer.IsErrorRetryable(errors.New("not an AWS error")))
	assert.Equal(t, awsretry.DefaultMaxAttempts, o.Retryer.MaxAttempts())
	assert.True(t, isThrottled(throttle))
	assert.False(t, isThrottled(other))
}

package store

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// conflictAttempts bounds the tries of one write that keeps meeting a
// transaction conflict: with full-jitter backoff growing to 640 ms that is
// about 5 s of contention on average, inside $connect's 10 s. Ten attempts
// (about 2 s, less when the draws are short) let one of 20 simultaneous
// handshakes of one principal, all writing its connection counter, fail
// with a 500 instead of its 429, once in about ten runs of
// TestSecurity_ConnectionCapHoldsUnderConcurrentConnects.
const conflictAttempts = 16

// conflictRetry retries the writes DynamoDB refuses because another
// request was changing the same item at that moment: a transaction
// cancelled only for TransactionConflict, and a single-item write that met
// an ongoing transaction (TransactionConflictException). The SDK retries
// neither, and on AWS they happen whenever two frames of one connection,
// or two events of one topic, touch one item at once.
type conflictRetry struct {
	DB
}

// IsConflict reports whether err is a write refused only because another
// request was changing the same item (retrying may succeed).
func IsConflict(err error) bool {
	var tce *types.TransactionConflictException
	if errors.As(err, &tce) {
		return true
	}
	reasons, ok := cancelReasons(err)
	if !ok {
		return false
	}
	conflict := false
	for _, r := range reasons {
		switch aws.ToString(r.Code) {
		case "TransactionConflict":
			conflict = true
		case "None", "":
		default:
			return false // a real refusal (a condition) beside it: not ours to retry
		}
	}
	return conflict
}

// throttledTransaction reports whether err is a transaction cancelled
// only because an item's partition was over its throughput
// (ThrottlingError, beside None or TransactionConflict): the SDK retries a
// throttled single-item request itself, never a cancelled transaction.
func throttledTransaction(err error) bool {
	reasons, ok := cancelReasons(err)
	if !ok {
		return false
	}
	throttled := false
	for _, r := range reasons {
		switch aws.ToString(r.Code) {
		case "ThrottlingError":
			throttled = true
		case "None", "", "TransactionConflict":
		default:
			return false
		}
	}
	return throttled
}

// retryOnConflict runs op until it succeeds, fails for another reason, runs out of
// attempts or ctx ends; conflicts and throttles are counted on ctx's meter. A
// transaction cancelled for throttling is retried the same way (with
// backoff), as the SDK retries a throttled single-item write.
func retryOnConflict[T any](ctx context.Context, op func() (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		out, err := op()
		conflict := IsConflict(err)
		throttled := !conflict && throttledTransaction(err)
		if err == nil || !(conflict || throttled) || attempt+1 >= conflictAttempts {
			return out, err
		}
		if m, ok := ctx.Value(meterKey{}).(*Meter); ok {
			if conflict {
				m.conflict()
			} else {
				m.throttle()
			}
		}
		if serr := retry.Wait(ctx, attempt); serr != nil {
			return out, err
		}
	}
}

func (c conflictRetry) TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error) {
	return retryOnConflict(ctx, func() (*dynamodb.TransactWriteItemsOutput, error) { return c.DB.TransactWriteItems(ctx, in, optFns...) })
}

func (c conflictRetry) PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error) {
	return retryOnConflict(ctx, func() (*dynamodb.PutItemOutput, error) { return c.DB.PutItem(ctx, in, optFns...) })
}

func (c conflictRetry) UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error) {
	return retryOnConflict(ctx, func() (*dynamodb.UpdateItemOutput, error) { return c.DB.UpdateItem(ctx, in, optFns...) })
}

func (c conflictRetry) DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error) {
	return retryOnConflict(ctx, func() (*dynamodb.DeleteItemOutput, error) { return c.DB.DeleteItem(ctx, in, optFns...) })
}

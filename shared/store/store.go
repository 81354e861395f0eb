package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/wsgate/wsgate/shared/backoff"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound    = errors.New("not found")
	ErrLimit       = errors.New("limit reached")
	ErrRateLimited = errors.New("rate limited")
	// ErrInProgress: another invocation holds the event's lease.
	ErrInProgress = errors.New("event in progress elsewhere")
	// ErrExpired: a pending connection's auth deadline has passed.
	ErrExpired = errors.New("deadline passed")
	// ErrRevoked: a backend revoked the principal or its token until a
	// time not yet past.
	ErrRevoked = errors.New("revoked")
)

// DB is the part of the DynamoDB client the store uses.
type DB interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	PutItem(ctx context.Context, in *dynamodb.PutItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	DeleteItem(ctx context.Context, in *dynamodb.DeleteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	Query(ctx context.Context, in *dynamodb.QueryInput, optFns ...func(*dynamodb.Options)) (*dynamodb.QueryOutput, error)
	BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

// Store is wsgate's state in one table.
type Store struct {
	// db retries conflicts and throttled transactions with the same
	// request; subscribe reaches its DB to place a throttled entry anew.
	db    conflictRetry
	table *string
	now   func() time.Time
	// SeqTTL is how long a topic's sequence counter outlives its last event.
	SeqTTL time.Duration
	// EventTTL is how long processed event ids are remembered: longer than
	// EventBridge's 24-hour retry window.
	EventTTL time.Duration
	// Bucketing grows the levels of a pattern's subscribers (layout.go).
	Bucketing Bucketing
	layouts   *layoutCache
}

// New returns a Store on table.
func New(db DB, table string) *Store {
	return &Store{
		db: conflictRetry{db}, table: aws.String(table), now: time.Now, SeqTTL: 30 * 24 * time.Hour, EventTTL: 25 * time.Hour,
		Bucketing: Bucketing{SplitAt: 2000, Sample: randomSample}, layouts: &layoutCache{},
	}
}

// WithClock returns a copy of s that reads time from now (tests).
func (s *Store) WithClock(now func() time.Time) *Store {
	c := *s
	c.now = now
	return &c
}

// Table is the table's name.
func (s *Store) Table() string { return *s.table }

// Meter accumulates the capacity DynamoDB reports consumed, per operation
// kind, for the requests made with a context carrying it.
type Meter struct {
	mu       sync.Mutex
	Read     float64
	Write    float64
	Calls    map[string]int
	Requests int
	// Conflicts counts writes retried because another request was
	// changing the same item (see IsConflict).
	Conflicts int
	// Throttles counts transactions retried because an item's partition
	// was over its throughput (the SDK retries, and does not count here,
	// a throttled single-item request).
	Throttles int
}

type meterKey struct{}

// WithMeter returns a context whose store calls are metered into m.
func WithMeter(ctx context.Context, m *Meter) context.Context {
	return context.WithValue(ctx, meterKey{}, m)
}

func (m *Meter) add(op string, cc ...types.ConsumedCapacity) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Calls == nil {
		m.Calls = map[string]int{}
	}
	m.Calls[op]++
	m.Requests++
	for _, c := range cc {
		m.Read += aws.ToFloat64(c.ReadCapacityUnits)
		m.Write += aws.ToFloat64(c.WriteCapacityUnits)
		if c.ReadCapacityUnits == nil && c.WriteCapacityUnits == nil {
			// Some engines only report the total; attribute it by operation.
			if op == "Query" || op == "GetItem" || op == "BatchGetItem" {
				m.Read += aws.ToFloat64(c.CapacityUnits)
			} else {
				m.Write += aws.ToFloat64(c.CapacityUnits)
			}
		}
	}
}

func (m *Meter) conflict() {
	m.mu.Lock()
	m.Conflicts++
	m.mu.Unlock()
}

func (m *Meter) throttle() {
	m.mu.Lock()
	m.Throttles++
	m.mu.Unlock()
}

// Snapshot returns a copy of the meter's counts.
func (m *Meter) Snapshot() (read, write float64, calls map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	calls = make(map[string]int, len(m.Calls))
	for k, v := range m.Calls {
		calls[k] = v
	}
	return m.Read, m.Write, calls
}

func meter(ctx context.Context, op string, cc ...types.ConsumedCapacity) {
	if m, ok := ctx.Value(meterKey{}).(*Meter); ok {
		m.add(op, cc...)
	}
}

func ccOne(c *types.ConsumedCapacity) []types.ConsumedCapacity {
	if c == nil {
		return nil
	}
	return []types.ConsumedCapacity{*c}
}

const total = types.ReturnConsumedCapacityTotal

// sv, nv and uv are attribute values: a string, a number, an unsigned one.
func sv(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }

func nv(n int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(n, 10)}
}

func uv(n uint64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatUint(n, 10)}
}
func bv(b bool) types.AttributeValue { return &types.AttributeValueMemberBOOL{Value: b} }

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{PartitionKey: sv(pk), SortKey: sv(sk)}
}

func getS(item map[string]types.AttributeValue, name string) string {
	if v, ok := item[name].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

func getN(item map[string]types.AttributeValue, name string) int64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseInt(v.Value, 10, 64)
		return n
	}
	return 0
}

func getU(item map[string]types.AttributeValue, name string) uint64 {
	if v, ok := item[name].(*types.AttributeValueMemberN); ok {
		n, _ := strconv.ParseUint(v.Value, 10, 64)
		return n
	}
	return 0
}

func getB(item map[string]types.AttributeValue, name string) []byte {
	if v, ok := item[name].(*types.AttributeValueMemberB); ok {
		return v.Value
	}
	return nil
}

func getBool(item map[string]types.AttributeValue, name string) bool {
	if v, ok := item[name].(*types.AttributeValueMemberBOOL); ok {
		return v.Value
	}
	return false
}

// alive reports whether an item's ttl has not passed. DynamoDB deletes
// expired items lazily (within days), so reads must not trust presence.
func alive(item map[string]types.AttributeValue, now time.Time) bool {
	t := getN(item, TTLAttribute)
	return t == 0 || t > now.Unix()
}

func isConditionFailed(err error) bool {
	var ccf *types.ConditionalCheckFailedException
	return errors.As(err, &ccf)
}

// cancelReasons returns the per-item codes of a cancelled transaction.
func cancelReasons(err error) ([]types.CancellationReason, bool) {
	var tc *types.TransactionCanceledException
	if !errors.As(err, &tc) {
		return nil, false
	}
	return tc.CancellationReasons, true
}

func reasonIs(r []types.CancellationReason, i int, code string) bool {
	return i < len(r) && aws.ToString(r[i].Code) == code
}

// batchWrite writes requests in chunks of 25, retrying unprocessed items.
func (s *Store) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	for start := 0; start < len(reqs); start += 25 {
		chunk := reqs[start:min(start+25, len(reqs))]
		for attempt := 0; len(chunk) > 0; attempt++ {
			out, err := s.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
				RequestItems:           map[string][]types.WriteRequest{*s.table: chunk},
				ReturnConsumedCapacity: total,
			})
			if err != nil {
				return fmt.Errorf("store: batch write: %w", err)
			}
			meter(ctx, "BatchWriteItem", out.ConsumedCapacity...)
			chunk = out.UnprocessedItems[*s.table]
			if len(chunk) == 0 {
				break
			}
			if attempt >= 8 {
				return fmt.Errorf("store: batch write: %d items unprocessed after retries", len(chunk))
			}
			if err := retry.Wait(ctx, attempt); err != nil {
				return err
			}
		}
	}
	return nil
}

// retry spaces the retries of our own conditional loops (the SDK retries
// throttling itself): full jitter, 10 ms doubling to 640 ms.
var retry = backoff.Policy{Base: 10 * time.Millisecond, Max: 640 * time.Millisecond}

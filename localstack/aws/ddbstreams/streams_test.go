package ddbstreams_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/ddbstreams"
	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// fastRetries keep the tests' retries short.
var fastRetries = backoff.Policy{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, Jitter: backoff.Full}

// A batch holding a record the function always fails on is split down to
// that record, which is retried MaxRetryAttempts times and discarded: its
// metadata, not its data, goes to the destination, and every other record
// is delivered, in order.
func TestStreamMapping_PoisonRecordIsBisectedOutRetriedAndDiscarded(t *testing.T) {
	f := newFunction(func(recs []record) error {
		if slices.ContainsFunc(recs, func(r record) bool { return r.poison }) {
			return errors.New("poison")
		}
		return nil
	})
	db, table := startMapping(t, ddbstreams.Mapping{
		BatchSize: 10, Window: 300 * time.Millisecond, MaxRetryAttempts: 2, BisectOnError: true,
	}, f)
	for i := range 8 {
		put(t, db, table, "room", strconv.Itoa(i), i, i == 3)
	}

	require.Eventually(t, func() bool { return len(f.failures()) == 1 && len(f.deliveredKeys()) == 7 }, 20*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{"room/0", "room/1", "room/2", "room/4", "room/5", "room/6", "room/7"}, f.deliveredKeys())
	var sizes []int // of the invocations holding the poison record
	var poisonSeq string
	for _, call := range f.calls() {
		if i := slices.IndexFunc(call, func(r record) bool { return r.poison }); i >= 0 {
			sizes, poisonSeq = append(sizes, len(call)), call[i].Seq
		}
	}
	require.GreaterOrEqual(t, len(sizes), 4)
	assert.Greater(t, sizes[0], 1, "first in a batch with others")
	assert.Equal(t, []int{1, 1, 1}, sizes[len(sizes)-3:], "alone: invoked once and retried twice")
	assert.True(t, slices.IsSortedFunc(sizes, func(a, b int) int { return b - a }), "halved, never grown: %v", sizes)

	body := f.failures()[0]
	var rec onFailure
	require.NoError(t, json.Unmarshal(body, &rec))
	assert.Equal(t, "RetryAttemptsExhausted", rec.RequestContext.Condition)
	assert.Equal(t, 3, rec.RequestContext.ApproximateInvokeCount)
	assert.Equal(t, "Unhandled", rec.ResponseContext.FunctionError)
	assert.Equal(t, 1, rec.Info.BatchSize)
	assert.Equal(t, poisonSeq, rec.Info.StartSequenceNumber)
	assert.Equal(t, poisonSeq, rec.Info.EndSequenceNumber)
	assert.NotEmpty(t, rec.Info.ShardID)
	assert.Contains(t, rec.Info.StreamArn, table)
	assert.NotEmpty(t, rec.Info.ApproximateArrivalOfFirstRecord)
	assert.NotContains(t, string(body), "Records", "metadata only")
	assert.NotContains(t, string(body), "poison", "no record data")
}

// Shards are processed in parallel: a shard retrying a batch does not hold
// up another shard's records, only its own later ones.
func TestStreamMapping_StuckShardDoesNotBlockOtherShards(t *testing.T) {
	f := newFunction(func(recs []record) error {
		if slices.ContainsFunc(recs, func(r record) bool { return r.poison }) {
			return errors.New("stuck")
		}
		return nil
	})
	const shards = 4
	db, table := startMapping(t, ddbstreams.Mapping{
		Shards: shards, BatchSize: 10, Window: 50 * time.Millisecond, MaxRetryAttempts: -1,
	}, f)
	stuck := ddbstreams.ShardOf("stuck", shards)
	var free, behind []string
	for i := 0; len(free) < 6 || len(behind) < 1; i++ {
		pk := fmt.Sprint("pk", i)
		if ddbstreams.ShardOf(pk, shards) != stuck {
			free = append(free, pk)
		} else if len(behind) == 0 {
			behind = append(behind, pk)
		}
	}
	put(t, db, table, "stuck", "x", 0, true)
	time.Sleep(400 * time.Millisecond) // read before the others
	for _, pk := range append(slices.Clone(behind), free...) {
		put(t, db, table, pk, "x", 0, false)
	}

	want := make([]string, len(free))
	for i, pk := range free {
		want[i] = pk + "/x"
	}
	require.Eventually(t, func() bool { return len(f.deliveredKeys()) >= len(free) }, 10*time.Second, 20*time.Millisecond,
		"the other shards' records are delivered while one shard retries")
	assert.ElementsMatch(t, want, f.deliveredKeys())
	before := len(f.calls())
	time.Sleep(500 * time.Millisecond)
	assert.Greater(t, len(f.calls()), before, "the stuck batch is still being retried")
	assert.NotContains(t, f.deliveredKeys(), behind[0]+"/x", "a shard's later record waits behind its stuck batch")
}

// With ParallelizationFactor, a shard runs several batches at once, and
// each item's changes still arrive in the order they were made.
func TestStreamMapping_ItemOrderHoldsAcrossParallelBatches(t *testing.T) {
	var mu sync.Mutex
	running, most := 0, 0
	f := newFunction(func([]record) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(time.Duration(5+randByte()%20) * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	})
	db, table := startMapping(t, ddbstreams.Mapping{
		Shards: 1, ParallelizationFactor: 4, BatchSize: 3, Window: 10 * time.Millisecond, MaxRetryAttempts: -1,
	}, f)
	const items, versions = 8, 6
	for v := range versions {
		for i := range items {
			put(t, db, table, "room", fmt.Sprint("item", i), v, false)
		}
	}

	require.Eventually(t, func() bool { return len(f.delivered()) == items*versions }, 20*time.Second, 20*time.Millisecond)
	got := map[string][]int{}
	for _, r := range f.delivered() {
		got[r.key()] = append(got[r.key()], r.V)
	}
	for i := range items {
		assert.Equal(t, []int{0, 1, 2, 3, 4, 5}, got[fmt.Sprint("room/item", i)], "item %d in order, once each", i)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.GreaterOrEqual(t, most, 2, "batches of one shard ran at once")
}

// A record older than MaxRecordAge is discarded, with its metadata sent on,
// even while its invocations never happen (which no retry limit bounds).
func TestStreamMapping_RecordOlderThanMaxAgeIsDiscarded(t *testing.T) {
	f := newFunction(func(recs []record) error {
		if slices.ContainsFunc(recs, func(r record) bool { return r.poison }) {
			return fmt.Errorf("throttled: %w", ddbstreams.ErrNotInvoked)
		}
		return nil
	})
	db, table := startMapping(t, ddbstreams.Mapping{
		BatchSize: 10, Window: 100 * time.Millisecond, MaxRetryAttempts: 0, MaxRecordAge: time.Second,
	}, f)
	start := time.Now()
	put(t, db, table, "old", "a", 0, true)
	put(t, db, table, "old", "b", 1, true)

	require.Eventually(t, func() bool { return discarded(t, f, "RecordAgeExceeded") == 2 }, 10*time.Second, 20*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), time.Second, "kept until it was too old")
	var rec onFailure
	require.NoError(t, json.Unmarshal(f.failures()[0], &rec))
	assert.Equal(t, 0, rec.RequestContext.ApproximateInvokeCount, "never invoked")
	assert.Nil(t, rec.ResponseContext)

	put(t, db, table, "old", "c", 2, false)
	require.Eventually(t, func() bool { return len(f.deliveredKeys()) == 1 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{"old/c"}, f.deliveredKeys(), "the shard moved on")
}

// DynamoDB Local dates a record to the minute: one put at 12:00:59.9 and
// read at 12:01:00.1 is dated 12:00:00 and is not a minute old (a CI run
// discarded such a record 171 ms after its put, with MaxRecordAge 1 s).
// A record read long after its put keeps its creation time.
func TestStreamMapping_RecordDatedToTheMinuteIsNotOld(t *testing.T) {
	created := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	justRead := created.Add(time.Minute + 200*time.Millisecond)
	assert.Equal(t, justRead, ddbstreams.ArrivalOf(created, justRead), "read just after the minute turned")
	late := created.Add(3 * time.Minute)
	assert.Equal(t, created, ddbstreams.ArrivalOf(created, late), "read minutes after its put")
}

// trimming answers GetRecords with DynamoDB's TrimmedDataAccessException
// while refuse is set, and for every iterator it refused so, ever after
// (as DynamoDB Local did); every other call goes to DynamoDB Local.
type trimming struct {
	refuse  atomic.Bool
	refused atomic.Int32
	mu      sync.Mutex
	dead    map[string]bool
	proxy   *httputil.ReverseProxy
}

func (p *trimming) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if r.Header.Get("X-Amz-Target") == "DynamoDBStreams_20120810.GetRecords" {
		var in struct{ ShardIterator string }
		_ = json.Unmarshal(body, &in)
		p.mu.Lock()
		if p.refuse.Load() {
			p.dead[in.ShardIterator] = true
		}
		dead := p.dead[in.ShardIterator]
		p.mu.Unlock()
		if dead {
			p.refused.Add(1)
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"com.amazonaws.dynamodb.v20120810#TrimmedDataAccessException","Message":"The operation attempted to read past the oldest stream record in a shard."}`))
			return
		}
	}
	p.proxy.ServeHTTP(w, r)
}

// An iterator DynamoDB answers with TrimmedDataAccessException reads
// nothing ever again: the mapping takes a new one, from the shard's
// oldest record when it had read none (DynamoDB Local has answered a
// LATEST iterator of a new table so, and the mapping then read nothing of
// that stack's stream), after its last record read otherwise (nothing
// twice).
func TestStreamMapping_TrimmedIteratorIsRenewed(t *testing.T) {
	target, err := url.Parse(storetest.Endpoint(t))
	require.NoError(t, err)
	p := &trimming{proxy: httputil.NewSingleHostReverseProxy(target), dead: map[string]bool{}}
	p.refuse.Store(true)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	f := newFunction(func([]record) error { return nil })
	db, table := startMappingAt(t, srv.URL, ddbstreams.Mapping{BatchSize: 10, Window: 20 * time.Millisecond}, f)

	put(t, db, table, "trim", "a", 0, false)
	put(t, db, table, "trim", "b", 1, false)
	require.Eventually(t, func() bool { return p.refused.Load() >= 2 }, 10*time.Second, 10*time.Millisecond)
	p.refuse.Store(false)
	require.Eventually(t, func() bool { return len(f.deliveredKeys()) == 2 }, 10*time.Second, 20*time.Millisecond, "read from the shard's oldest record")

	p.refused.Store(0)
	p.refuse.Store(true)
	require.Eventually(t, func() bool { return p.refused.Load() >= 2 }, 10*time.Second, 10*time.Millisecond)
	put(t, db, table, "trim", "c", 2, false)
	p.refuse.Store(false)
	require.Eventually(t, func() bool { return len(f.deliveredKeys()) >= 3 }, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // a repeat would show by now
	assert.Equal(t, []string{"trim/a", "trim/b", "trim/c"}, f.deliveredKeys(), "after the last record read: nothing twice")
}

// A deletion by TTL reaches the function as DynamoDB's stream has it: a
// REMOVE by the DynamoDB service. Other deletions carry no userIdentity.
func TestStreamMapping_TTLDeletionCarriesDynamoDBServiceIdentity(t *testing.T) {
	f := newFunction(func([]record) error { return nil })
	db, table := startMapping(t, ddbstreams.Mapping{BatchSize: 10, Window: 50 * time.Millisecond}, f)
	put(t, db, table, "deleted", "x", 0, false)
	_, err := db.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: key("deleted", "x")})
	require.NoError(t, err)
	item := key("expired", "x")
	item[store.TTLAttribute] = &types.AttributeValueMemberN{Value: strconv.FormatInt(time.Now().Add(-time.Hour).Unix(), 10)}
	_, err = db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: item})
	require.NoError(t, err)

	removes := func() map[string]record {
		out := map[string]record{}
		for _, r := range f.delivered() {
			if r.EventName == "REMOVE" {
				out[r.key()] = r
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(removes()) == 2 }, 60*time.Second, 100*time.Millisecond, "DynamoDB Local deletes expired items on its own")
	ttl, deleted := removes()["expired/x"], removes()["deleted/x"]
	require.NotNil(t, ttl.UserIdentity)
	assert.Equal(t, "Service", ttl.UserIdentity.Type)
	assert.Equal(t, "dynamodb.amazonaws.com", ttl.UserIdentity.PrincipalID)
	var sr store.StreamRecord
	require.NoError(t, json.Unmarshal(ttl.raw, &sr))
	assert.True(t, sr.ByTTL(), "the store reads it as a TTL deletion")
	assert.Nil(t, deleted.UserIdentity)
}

// With ReportBatchItemFailures, the records before the one reported are
// done; the batch is retried from it.
func TestStreamMapping_ReportedItemFailureRetriesFromThatRecord(t *testing.T) {
	var once sync.Once
	f := newFunction(nil)
	f.respond = func(recs []record) (int, error) {
		failAt := len(recs)
		if i := slices.IndexFunc(recs, func(r record) bool { return r.poison }); i >= 0 {
			once.Do(func() { failAt = i })
		}
		return failAt, nil
	}
	db, table := startMapping(t, ddbstreams.Mapping{
		BatchSize: 10, Window: 300 * time.Millisecond, MaxRetryAttempts: 2, ReportBatchItemFailures: true,
	}, f)
	for i := range 5 {
		put(t, db, table, "room", strconv.Itoa(i), i, i == 2)
	}
	require.Eventually(t, func() bool { return len(f.deliveredKeys()) == 5 }, 10*time.Second, 20*time.Millisecond)
	assert.Equal(t, []string{"room/0", "room/1", "room/2", "room/3", "room/4"}, f.deliveredKeys(), "each once, in order")
	assert.Len(t, f.calls(), 2)
	assert.Empty(t, f.failures())
}

// record is what the tests read of a delivered stream record.
type record struct {
	EventName    string `json:"eventName"`
	UserIdentity *struct {
		Type        string `json:"type"`
		PrincipalID string `json:"principalId"`
	} `json:"userIdentity"`
	Seq    string
	PK, SK string
	V      int
	poison bool
	raw    json.RawMessage
}

func (r record) key() string { return r.PK + "/" + r.SK }

// function stands for the mapped function: fail decides an invocation's
// error; it records every invocation and what was delivered.
type function struct {
	fail    func([]record) error
	respond func([]record) (done int, err error) // with ReportBatchItemFailures
	mu      sync.Mutex
	invoked [][]record
	done    []record
	discard [][]byte
}

func newFunction(fail func([]record) error) *function { return &function{fail: fail} }

func (f *function) invoke(_ context.Context, payload []byte) ([]byte, error) {
	recs := decodeRecords(payload)
	f.mu.Lock()
	f.invoked = append(f.invoked, recs)
	f.mu.Unlock()
	if f.respond != nil {
		done, err := f.respond(recs)
		f.mu.Lock()
		f.done = append(f.done, recs[:done]...)
		f.mu.Unlock()
		if done == len(recs) {
			return []byte(`{"batchItemFailures":[]}`), err
		}
		return fmt.Appendf(nil, `{"batchItemFailures":[{"itemIdentifier":%q}]}`, recs[done].Seq), err
	}
	if err := f.fail(recs); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.done = append(f.done, recs...)
	f.mu.Unlock()
	return nil, nil
}

func (f *function) onFailure(_ context.Context, body []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.discard = append(f.discard, body)
	return nil
}

func (f *function) calls() [][]record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.invoked)
}

func (f *function) delivered() []record {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.done)
}

func (f *function) deliveredKeys() []string {
	var out []string
	for _, r := range f.delivered() {
		out = append(out, r.key())
	}
	return out
}

func (f *function) failures() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.discard)
}

// discarded counts the records of the discarded batches of a condition.
func discarded(t *testing.T, f *function, condition string) int {
	n := 0
	for _, body := range f.failures() {
		var rec onFailure
		require.NoError(t, json.Unmarshal(body, &rec))
		if rec.RequestContext.Condition == condition {
			n += rec.Info.BatchSize
		}
	}
	return n
}

// onFailure is Lambda's invocation record of a discarded stream batch.
type onFailure struct {
	RequestContext struct {
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	} `json:"requestContext"`
	ResponseContext *struct {
		FunctionError string `json:"functionError"`
	} `json:"responseContext"`
	Info struct {
		ShardID                         string `json:"shardId"`
		StartSequenceNumber             string `json:"startSequenceNumber"`
		EndSequenceNumber               string `json:"endSequenceNumber"`
		ApproximateArrivalOfFirstRecord string `json:"approximateArrivalOfFirstRecord"`
		BatchSize                       int    `json:"batchSize"`
		StreamArn                       string `json:"streamArn"`
	} `json:"DDBStreamBatchInfo"`
}

func decodeRecords(payload []byte) []record {
	var in struct{ Records []json.RawMessage }
	if json.Unmarshal(payload, &in) != nil {
		panic("not a stream event: " + string(payload))
	}
	var out []record
	for _, raw := range in.Records {
		var r record
		var d struct {
			Dynamodb struct {
				SequenceNumber     string
				Keys               map[string]map[string]string
				NewImage, OldImage map[string]map[string]any
			} `json:"dynamodb"`
		}
		_ = json.Unmarshal(raw, &r)
		_ = json.Unmarshal(raw, &d)
		r.raw, r.Seq = raw, d.Dynamodb.SequenceNumber
		r.PK, r.SK = d.Dynamodb.Keys[store.PartitionKey]["S"], d.Dynamodb.Keys[store.SortKey]["S"]
		image := d.Dynamodb.NewImage
		if image == nil {
			image = d.Dynamodb.OldImage
		}
		if v, ok := image["v"]["N"].(string); ok {
			r.V, _ = strconv.Atoi(v)
		}
		_, r.poison = image["poison"]
		out = append(out, r)
	}
	return out
}

// startMapping makes a table with its stream and runs m on it, invoking f.
func startMapping(t *testing.T, m ddbstreams.Mapping, f *function) (*dynamodb.Client, string) {
	t.Helper()
	return startMappingAt(t, storetest.Endpoint(t), m, f)
}

// startMappingAt is startMapping with the mapping reading the stream at
// endpoint (a proxy of DynamoDB Local's).
func startMappingAt(t *testing.T, endpoint string, m ddbstreams.Mapping, f *function) (*dynamodb.Client, string) {
	t.Helper()
	db := storetest.Client(t)
	table := "wsgate-stream-" + hex.EncodeToString(randBytes(6))
	// Dropped afterwards: DynamoDB Local's TTL sweeps get slower with
	// every table it holds.
	t.Cleanup(func() {
		_, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, store.CreateTable(ctx, db, table))
	m.Endpoint, m.Table, m.FunctionName = endpoint, table, "broadcast"
	m.Invoke, m.OnFailure, m.RetryDelay, m.Poll = f.invoke, f.onFailure, fastRetries, 50*time.Millisecond
	require.NoError(t, m.Start(ctx))
	return db, table
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		store.PartitionKey: &types.AttributeValueMemberS{Value: pk},
		store.SortKey:      &types.AttributeValueMemberS{Value: sk},
	}
}

// put writes item pk/sk with v, marked poison if asked.
func put(t *testing.T, db *dynamodb.Client, table, pk, sk string, v int, poison bool) {
	t.Helper()
	item := key(pk, sk)
	item["v"] = &types.AttributeValueMemberN{Value: strconv.Itoa(v)}
	if poison {
		item["poison"] = &types.AttributeValueMemberBOOL{Value: true}
	}
	_, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: item})
	require.NoError(t, err)
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func randByte() byte { return randBytes(1)[0] }

// Settle returns once every record written before it is delivered: read
// from the stream and through the function, none queued or in flight.
func TestStreamMapping_SettleWaitsForEveryRecordWritten(t *testing.T) {
	f := newFunction(func([]record) error {
		time.Sleep(20 * time.Millisecond) // a function that takes its time
		return nil
	})
	db := storetest.Client(t)
	table := "wsgate-stream-" + hex.EncodeToString(randBytes(6))
	t.Cleanup(func() {
		_, _ = db.DeleteTable(context.Background(), &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, store.CreateTable(ctx, db, table))
	running, err := ddbstreams.Mapping{
		Endpoint: storetest.Endpoint(t), Table: table, FunctionName: "broadcast", BatchSize: 5, Window: 30 * time.Millisecond,
		Invoke: f.invoke, OnFailure: f.onFailure, RetryDelay: fastRetries, Poll: 50 * time.Millisecond,
	}.Open(ctx)
	require.NoError(t, err)
	for i := range 60 {
		put(t, db, table, fmt.Sprintf("k%d", i%7), strconv.Itoa(i), i, false)
	}
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	defer scancel()
	require.NoError(t, running.Settle(sctx))
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, 60, len(f.done), "every record written before Settle was delivered when it returned")
}

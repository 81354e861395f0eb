// Package ddbstreams runs Lambda's event source mapping for a DynamoDB
// table's stream on DynamoDB Local, as Lambda runs it: the emulator's
// stand-in for the mapping the CDK stack deploys.
package ddbstreams

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// Mapping is Lambda's event source mapping for a table's DynamoDB
// stream, on DynamoDB Local (which serves the Streams API), run as Lambda
// runs it:
//
//   - shards are processed in parallel. DynamoDB Local keeps a table's
//     stream in one shard where AWS has one per partition, so the mapping
//     spreads the records over Shards shards by a hash of their partition
//     key, as partitions do; within a shard, ParallelizationFactor batches
//     run at once, each item (partition and sort key) always in the same
//     lane. Records are in order per item only.
//   - a lane hands Invoke a batch of at most BatchSize records after at
//     most Window, as {"Records":[...]}, each record with its
//     eventSourceARN, and waits for it before its next batch.
//   - a batch whose function fails (an error, or with
//     ReportBatchItemFailures a reported record) is retried up to
//     MaxRetryAttempts times, split in halves first when BisectOnError
//     (a split costs no retry, each half has its own), then discarded:
//     OnFailure gets Lambda's invocation record, the batch's metadata
//     without its records, and the lane moves on. An invocation that
//     never ran (ErrNotInvoked) is retried without counting.
//   - records older than MaxRecordAge, and always those older than the
//     stream's 24 hours, are discarded the same way.
//   - a deletion by TTL carries userIdentity {"type":"Service",
//     "principalId":"dynamodb.amazonaws.com"} and eventName REMOVE
//     (DynamoDB Local's own record has neither).
type Mapping struct {
	// Endpoint is DynamoDB Local's (not a proxy's: the Streams API is not
	// the DynamoDB API).
	Endpoint string
	Table    string
	// FunctionName names the function in the on-failure records.
	FunctionName string
	BatchSize    int           // default 100
	Window       time.Duration // default 1s, the CDK stack's batching window
	// Shards stand for the table's partitions (default 4, an on-demand
	// table's first partitions); ParallelizationFactor is the concurrent
	// batches per shard (default 1, at most 10).
	Shards                int
	ParallelizationFactor int
	// MaxRetryAttempts of a failed batch: 0 none, -1 until its records
	// expire (Lambda's default when unset).
	MaxRetryAttempts int
	BisectOnError    bool
	// MaxRecordAge discards older records; 0, or more than the stream's
	// retention of 24 hours, means 24 hours. (Lambda's least is 60 s;
	// tests use less.)
	MaxRecordAge time.Duration
	// ReportBatchItemFailures reads the function's response as
	// {"batchItemFailures":[{"itemIdentifier":"<sequence number>"}]}: the
	// records before the first one listed are done, the rest is retried.
	ReportBatchItemFailures bool
	Filter                  func(record json.RawMessage) bool
	// Invoke calls the function and returns its response. An error
	// wrapping ErrNotInvoked means the function did not run (throttled,
	// no instance): retried until the records expire, never counted as a
	// retry nor splitting the batch. Any other error is the function's.
	Invoke func(ctx context.Context, payload []byte) ([]byte, error)
	// OnFailure receives the invocation record of each discarded batch
	// (for an SQS destination, the message body). Nil drops it.
	OnFailure func(ctx context.Context, record []byte) error
	// RetryDelay paces the retries of a batch (default
	// DefaultRetryBase doubling to DefaultRetryMax, full
	// jitter).
	RetryDelay backoff.Policy
	Log        *slog.Logger
	// Poll is how often each shard is read (Lambda reads 4 times a second).
	Poll time.Duration
}

// ErrNotInvoked marks an Invoke error where the function never ran.
var ErrNotInvoked = errors.New("ddbstreams: function not invoked")

// streamRetention is how long DynamoDB Streams keeps a record.
const streamRetention = 24 * time.Hour

// Defaults of Mapping.
const (
	DefaultShards            = 4
	DefaultRetryBase         = 200 * time.Millisecond
	DefaultRetryMax          = 10 * time.Second
	maxParallelizationFactor = 10
)

func (m *Mapping) defaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&m.BatchSize, 100)
	def(&m.Shards, DefaultShards)
	def(&m.ParallelizationFactor, 1)
	m.ParallelizationFactor = min(m.ParallelizationFactor, maxParallelizationFactor)
	if m.Window <= 0 {
		m.Window = time.Second
	}
	if m.Poll <= 0 {
		m.Poll = 250 * time.Millisecond
	}
	if m.MaxRecordAge <= 0 || m.MaxRecordAge > streamRetention {
		m.MaxRecordAge = streamRetention
	}
	if m.RetryDelay == (backoff.Policy{}) {
		m.RetryDelay = backoff.Policy{Base: DefaultRetryBase, Max: DefaultRetryMax, Jitter: backoff.Full}
	}
	if m.Log == nil {
		m.Log = slog.New(slog.DiscardHandler)
	}
}

type shardState struct {
	iterator string
	parent   string
	last     string // the sequence number of the last record read
}

type streamRunner struct {
	m       Mapping
	client  *http.Client
	arn     string
	hashKey string // the table's partition key
	mu      sync.Mutex
	shards  map[string]*shardState
	done    map[string]bool // closed shards, read to their end
	lanes   []*lane         // Shards × ParallelizationFactor
	// passes counts the reads of every shard done; quiet is the last one
	// that found no record.
	passes, quiet int64
}

// Start enables the table's stream if it is off, takes an iterator at the
// end of every shard (so the mapping sees what happens from now on), and
// polls and delivers until ctx ends.
func (m Mapping) Start(ctx context.Context) error {
	_, err := m.Open(ctx)
	return err
}

// Running is a mapping started by Open.
type Running struct{ r *streamRunner }

// Open starts the mapping as Start does and returns it, to wait on.
func (m Mapping) Open(ctx context.Context) (*Running, error) {
	m.defaults()
	r := &streamRunner{m: m, client: &http.Client{Timeout: 10 * time.Second}, shards: map[string]*shardState{}, done: map[string]bool{}}
	var err error
	if r.arn, err = r.streamARN(ctx); err != nil {
		return nil, err
	}
	if err := r.discover(ctx, "LATEST"); err != nil {
		return nil, err
	}
	for range m.Shards * m.ParallelizationFactor {
		l := newLane()
		r.lanes = append(r.lanes, l)
		go r.drain(ctx, l)
	}
	go r.run(ctx)
	return &Running{r: r}, nil
}

// Settle waits until no stream record is pending: a read of every shard
// begun after the call found nothing new, and every record read so far is
// delivered or discarded (none queued, none in a batch in flight).
func (s *Running) Settle(ctx context.Context) error {
	r := s.r
	r.mu.Lock()
	from := r.passes + 1 // that pass may have begun before the call
	r.mu.Unlock()
	t := time.NewTicker(r.m.Poll / 2)
	defer t.Stop()
	for {
		r.mu.Lock()
		quiet := r.quiet > from
		r.mu.Unlock()
		pending := 0
		for _, l := range r.lanes {
			pending += l.pending()
		}
		if quiet && pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ddbstreams: settle: %d records pending: %w", pending, ctx.Err())
		case <-t.C:
		}
	}
}

// call posts one JSON API call to DynamoDB Local.
func (r *streamRunner) call(ctx context.Context, target string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.m.Endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	req.Header.Set("X-Amz-Target", target)
	// DynamoDB Local wants a signature's shape, not a valid one.
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Type string `json:"__type"`
		}
		_ = json.Unmarshal(b, &e)
		return &apiError{target: target, status: resp.StatusCode, typ: e.Type[strings.LastIndex(e.Type, "#")+1:], body: string(b)}
	}
	return json.Unmarshal(b, out)
}

// apiError is an error answer of DynamoDB Local's API.
type apiError struct {
	target string
	status int
	typ    string // the exception's name: TrimmedDataAccessException
	body   string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("ddbstreams: %s: HTTP %d: %s", e.target, e.status, e.body)
}

// iteratorLost reports whether err says a shard iterator can read no more:
// it points past the trim horizon, or expired.
func iteratorLost(err error) bool {
	var e *apiError
	return errors.As(err, &e) && (e.typ == "TrimmedDataAccessException" || e.typ == "ExpiredIteratorException")
}

// streamARN is the table's stream, turned on (NEW_AND_OLD_IMAGES) when a
// table made before streams were used has none. It also learns the
// table's partition key.
func (r *streamRunner) streamARN(ctx context.Context) (string, error) {
	for attempt := 0; ; attempt++ {
		var t struct {
			Table struct {
				LatestStreamArn     string
				StreamSpecification *struct{ StreamEnabled bool }
				KeySchema           []struct{ AttributeName, KeyType string }
			}
		}
		if err := r.call(ctx, "DynamoDB_20120810.DescribeTable", map[string]string{"TableName": r.m.Table}, &t); err != nil {
			return "", err
		}
		for _, k := range t.Table.KeySchema {
			if k.KeyType == "HASH" {
				r.hashKey = k.AttributeName
			}
		}
		if s := t.Table.StreamSpecification; s != nil && s.StreamEnabled && t.Table.LatestStreamArn != "" {
			return t.Table.LatestStreamArn, nil
		}
		if attempt > 0 {
			return "", fmt.Errorf("ddbstreams: table %s has no stream", r.m.Table)
		}
		in := map[string]any{"TableName": r.m.Table, "StreamSpecification": map[string]any{"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
		if err := r.call(ctx, "DynamoDB_20120810.UpdateTable", in, &struct{}{}); err != nil {
			return "", fmt.Errorf("ddbstreams: turn on the stream of %s: %w", r.m.Table, err)
		}
	}
}

// discover takes an iterator for every shard not seen yet: of type at
// start, from the shard's beginning for shards that appear later (children
// of a closed one), so that nothing is skipped.
func (r *streamRunner) discover(ctx context.Context, typ string) error {
	var d struct {
		StreamDescription struct {
			Shards []struct{ ShardId, ParentShardId string }
		}
	}
	if err := r.call(ctx, "DynamoDBStreams_20120810.DescribeStream", map[string]string{"StreamArn": r.arn}, &d); err != nil {
		return err
	}
	for _, sh := range d.StreamDescription.Shards {
		r.mu.Lock()
		known := r.shards[sh.ShardId] != nil || r.done[sh.ShardId]
		r.mu.Unlock()
		if known {
			continue
		}
		var it struct{ ShardIterator string }
		in := map[string]string{"StreamArn": r.arn, "ShardId": sh.ShardId, "ShardIteratorType": typ}
		if err := r.call(ctx, "DynamoDBStreams_20120810.GetShardIterator", in, &it); err != nil {
			return err
		}
		r.mu.Lock()
		r.shards[sh.ShardId] = &shardState{iterator: it.ShardIterator, parent: sh.ParentShardId}
		r.mu.Unlock()
		r.m.Log.Debug("stream: shard found", "shard", sh.ShardId, "parent", sh.ParentShardId, "from", typ)
	}
	return nil
}

// run reads the stream until ctx ends, handing each record to its lane.
func (r *streamRunner) run(ctx context.Context) {
	tick := time.NewTicker(r.m.Poll)
	defer tick.Stop()
	lastDiscover := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(lastDiscover) > time.Second {
			if err := r.discover(ctx, "TRIM_HORIZON"); err != nil && ctx.Err() == nil {
				r.m.Log.Warn("stream: describe failed", "error", err.Error())
			}
			lastDiscover = time.Now()
		}
		r.read(ctx)
	}
}

// read takes the new records of every open shard whose parent is read to
// its end, parents first (shard ids sort by creation time).
func (r *streamRunner) read(ctx context.Context) {
	r.mu.Lock()
	ids := make([]string, 0, len(r.shards))
	for id, sh := range r.shards {
		if r.shards[sh.parent] == nil {
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	slices.Sort(ids)
	found, failed := 0, false
	defer func() {
		r.mu.Lock()
		r.passes++
		if found == 0 && !failed {
			r.quiet = r.passes
		}
		r.mu.Unlock()
	}()
	for _, id := range ids {
		r.mu.Lock()
		sh := r.shards[id]
		r.mu.Unlock()
		var res struct {
			Records           []json.RawMessage
			NextShardIterator *string
		}
		if err := r.call(ctx, "DynamoDBStreams_20120810.GetRecords", map[string]any{"ShardIterator": sh.iterator, "Limit": 1000}, &res); err != nil {
			if ctx.Err() == nil {
				r.m.Log.Warn("stream: GetRecords failed", "shard", id, "error", err.Error())
			}
			if iteratorLost(err) {
				r.renew(ctx, id, sh)
			}
			failed = true
			continue
		}
		now := time.Now()
		closed := res.NextShardIterator == nil || *res.NextShardIterator == ""
		if len(res.Records) > 0 || closed {
			r.m.Log.Debug("stream: read", "shard", id, "records", len(res.Records), "closed", closed)
		}
		found += len(res.Records)
		last := ""
		for _, raw := range res.Records {
			last = cmp.Or(r.route(raw, id, now), last)
		}
		r.mu.Lock()
		sh.last = cmp.Or(last, sh.last)
		if closed {
			delete(r.shards, id) // closed and read to its end
			r.done[id] = true
		} else {
			sh.iterator = *res.NextShardIterator
		}
		r.mu.Unlock()
	}
}

// renew takes a new iterator for a shard whose iterator can read no more
// (DynamoDB Local has answered a LATEST iterator of a new table's shard
// with TrimmedDataAccessException, so the mapping read nothing from it
// again): after the last record read from it, or from its oldest record
// when none was, as Lambda goes on from the trim horizon.
func (r *streamRunner) renew(ctx context.Context, id string, sh *shardState) {
	r.mu.Lock()
	last := sh.last
	r.mu.Unlock()
	in := map[string]string{"StreamArn": r.arn, "ShardId": id, "ShardIteratorType": "TRIM_HORIZON"}
	if last != "" {
		in["ShardIteratorType"], in["SequenceNumber"] = "AFTER_SEQUENCE_NUMBER", last
	}
	var it struct{ ShardIterator string }
	if err := r.call(ctx, "DynamoDBStreams_20120810.GetShardIterator", in, &it); err != nil {
		r.m.Log.Warn("stream: new iterator refused", "shard", id, "error", err.Error())
		return
	}
	r.mu.Lock()
	sh.iterator = it.ShardIterator
	r.mu.Unlock()
	r.m.Log.Warn("stream: iterator lost; reading on", "shard", id, "from", in["ShardIteratorType"], "after", last)
}

// route puts a record, as the function will get it, in its lane, unless
// Filter drops it, and returns its sequence number ("" when unreadable).
func (r *streamRunner) route(raw json.RawMessage, shardID string, now time.Time) (seq string) {
	rec, err := r.parse(raw, shardID, now)
	if err != nil {
		r.m.Log.Warn("stream: record dropped", "shard", shardID, "error", err.Error())
		return ""
	}
	if r.m.Filter == nil || r.m.Filter(rec.raw) {
		r.lanes[rec.lane].push(rec)
	}
	return rec.seq
}

package dynamolocal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// StreamMapping is Lambda's event source mapping for a table's DynamoDB
// stream, on DynamoDB Local (which serves the Streams API): it reads every
// shard's records in order, keeps those Filter accepts, and hands them to
// Invoke in batches of at most BatchSize, after at most Window, as
// {"Records":[...]} with each record's eventSourceARN. A failed batch is
// retried, with backoff, before the next one: records of a shard are
// delivered in order, at least once.
type StreamMapping struct {
	// Endpoint is DynamoDB Local's (not a proxy's: the Streams API is not
	// the DynamoDB API).
	Endpoint  string
	Table     string
	BatchSize int           // default 100
	Window    time.Duration // default 1s, the CDK stack's batching window
	Filter    func(record json.RawMessage) bool
	Invoke    func(ctx context.Context, payload []byte) error
	Log       *slog.Logger
	// Poll is how often each shard is read (Lambda reads 4 times a second).
	Poll time.Duration
}

type shardState struct {
	iterator string
}

type streamRunner struct {
	m      StreamMapping
	client *http.Client
	arn    string
	mu     sync.Mutex
	shards map[string]*shardState
	done   map[string]bool // closed shards, read to their end
}

// Start enables the table's stream if it is off, takes an iterator at the
// end of every shard (so the mapping sees what happens from now on), and
// polls until ctx ends.
func (m StreamMapping) Start(ctx context.Context) error {
	if m.BatchSize <= 0 {
		m.BatchSize = 100
	}
	if m.Window <= 0 {
		m.Window = time.Second
	}
	if m.Poll <= 0 {
		m.Poll = 250 * time.Millisecond
	}
	if m.Log == nil {
		m.Log = slog.New(slog.DiscardHandler)
	}
	r := &streamRunner{m: m, client: &http.Client{Timeout: 10 * time.Second}, shards: map[string]*shardState{}, done: map[string]bool{}}
	var err error
	if r.arn, err = r.streamARN(ctx); err != nil {
		return err
	}
	if err := r.discover(ctx, "LATEST"); err != nil {
		return err
	}
	go r.run(ctx)
	return nil
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
		return fmt.Errorf("dynamolocal: %s: HTTP %d: %s", target, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// streamARN is the table's stream, turned on (NEW_AND_OLD_IMAGES) when a
// table made before streams were used has none.
func (r *streamRunner) streamARN(ctx context.Context) (string, error) {
	for attempt := 0; ; attempt++ {
		var t struct {
			Table struct {
				LatestStreamArn     string
				StreamSpecification *struct{ StreamEnabled bool }
			}
		}
		if err := r.call(ctx, "DynamoDB_20120810.DescribeTable", map[string]string{"TableName": r.m.Table}, &t); err != nil {
			return "", err
		}
		if s := t.Table.StreamSpecification; s != nil && s.StreamEnabled && t.Table.LatestStreamArn != "" {
			return t.Table.LatestStreamArn, nil
		}
		if attempt > 0 {
			return "", fmt.Errorf("dynamolocal: table %s has no stream", r.m.Table)
		}
		in := map[string]any{"TableName": r.m.Table, "StreamSpecification": map[string]any{"StreamEnabled": true, "StreamViewType": "NEW_AND_OLD_IMAGES"}}
		if err := r.call(ctx, "DynamoDB_20120810.UpdateTable", in, &struct{}{}); err != nil {
			return "", fmt.Errorf("dynamolocal: turn on the stream of %s: %w", r.m.Table, err)
		}
	}
}

// discover takes an iterator for every shard not seen yet: of type at
// start, from the shard's beginning for shards that appear later (children
// of a closed one), so that nothing is skipped.
func (r *streamRunner) discover(ctx context.Context, typ string) error {
	var d struct {
		StreamDescription struct {
			Shards []struct{ ShardId string }
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
		r.shards[sh.ShardId] = &shardState{iterator: it.ShardIterator}
		r.mu.Unlock()
	}
	return nil
}

func (r *streamRunner) run(ctx context.Context) {
	tick := time.NewTicker(r.m.Poll)
	defer tick.Stop()
	var batch []json.RawMessage
	var first time.Time
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
		for _, rec := range r.read(ctx) {
			if r.m.Filter != nil && !r.m.Filter(rec) {
				continue
			}
			if len(batch) == 0 {
				first = time.Now()
			}
			batch = append(batch, rec)
		}
		for len(batch) > 0 && (len(batch) >= r.m.BatchSize || time.Since(first) >= r.m.Window) {
			n := min(len(batch), r.m.BatchSize)
			if !r.deliver(ctx, batch[:n]) {
				return
			}
			batch = batch[n:]
			first = time.Now()
		}
	}
}

// read takes the new records of every open shard.
func (r *streamRunner) read(ctx context.Context) []json.RawMessage {
	r.mu.Lock()
	ids := make([]string, 0, len(r.shards))
	for id := range r.shards {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	var out []json.RawMessage
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
			continue
		}
		out = append(out, res.Records...)
		r.mu.Lock()
		if res.NextShardIterator == nil || *res.NextShardIterator == "" {
			delete(r.shards, id) // closed and read to its end
			r.done[id] = true
		} else {
			sh.iterator = *res.NextShardIterator
		}
		r.mu.Unlock()
	}
	return out
}

// deliver invokes the function with one batch until it succeeds (false:
// ctx ended first).
func (r *streamRunner) deliver(ctx context.Context, batch []json.RawMessage) bool {
	records := make([]json.RawMessage, len(batch))
	for i, rec := range batch {
		records[i] = withSourceARN(rec, r.arn)
	}
	payload, _ := json.Marshal(map[string]any{"Records": records})
	policy := backoff.Policy{Base: 200 * time.Millisecond, Max: 10 * time.Second, Jitter: backoff.Full}
	for attempt := 0; ; attempt++ {
		err := r.m.Invoke(ctx, payload)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		r.m.Log.Warn("stream: batch failed; retrying it", "records", len(batch), "attempt", attempt+1, "error", err.Error())
		if policy.Wait(ctx, attempt) != nil {
			return false
		}
	}
}

// withSourceARN adds eventSourceARN to a record, as Lambda's does.
func withSourceARN(rec json.RawMessage, arn string) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(rec, &m) != nil {
		return rec
	}
	m["eventSourceARN"], _ = json.Marshal(arn)
	out, err := json.Marshal(m)
	if err != nil {
		return rec
	}
	return out
}

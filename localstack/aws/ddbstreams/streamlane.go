package ddbstreams

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"
)

// lane is one of a shard's ParallelizationFactor queues: its records go to
// the function one batch at a time, in order.
type lane struct {
	mu    sync.Mutex
	queue []streamRecord
	wake  chan struct{}
}

func newLane() *lane { return &lane{wake: make(chan struct{}, 1)} }

func (l *lane) push(rec streamRecord) {
	l.mu.Lock()
	l.queue = append(l.queue, rec)
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// next waits for a batch: size records, or fewer once the first has
// waited window. Nil when ctx ends.
func (l *lane) next(ctx context.Context, size int, window time.Duration) []streamRecord {
	for {
		l.mu.Lock()
		var timeout <-chan time.Time
		if n := len(l.queue); n > 0 {
			wait := window - time.Since(l.queue[0].queued)
			if n >= size || wait <= 0 {
				batch := slices.Clone(l.queue[:min(n, size)])
				l.mu.Unlock()
				return batch
			}
			timeout = time.After(wait)
		}
		l.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-l.wake:
		case <-timeout:
		}
	}
}

// pending counts the lane's records not yet delivered or discarded.
func (l *lane) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}

// done removes the first n records, delivered or discarded.
func (l *lane) done(n int) {
	l.mu.Lock()
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = nil
	}
	l.mu.Unlock()
}

// drain delivers a lane's batches until ctx ends.
func (r *streamRunner) drain(ctx context.Context, l *lane) {
	for {
		batch := l.next(ctx, r.m.BatchSize, r.m.Window)
		if batch == nil {
			return
		}
		r.deliver(ctx, batch)
		l.done(len(batch))
	}
}

// outcome is what one invocation of a batch came to.
type outcome struct {
	invoked bool
	// done counts the records the function finished: all on success, those
	// before the first reported failure with ReportBatchItemFailures.
	done int
	// functionError: the function failed (rather than reporting items).
	functionError bool
}

// tries counts a batch's invocations: all of them, the retries after a
// function failure, and the waits for an invocation that did not happen.
type tries struct {
	invokes, retries, waits int
	functionError           bool // the last invocation failed in the function
}

// deliver runs a batch to its end: delivered, or discarded with its
// metadata sent on, as Lambda's mapping does. It returns when ctx ends.
func (r *streamRunner) deliver(ctx context.Context, batch []streamRecord) {
	var t tries
	for ctx.Err() == nil {
		if batch = r.dropExpired(ctx, batch, t); len(batch) == 0 {
			return
		}
		out := r.invoke(ctx, batch)
		if ctx.Err() != nil {
			return
		}
		if out.done == len(batch) {
			r.m.Log.Debug("stream: batch delivered", "records", len(batch), "first", batch[0].seq)
			return
		}
		if !out.invoked {
			r.m.Log.Debug("stream: batch not invoked; waiting", "records", len(batch), "waits", t.waits)
			t.waits++
			_ = r.m.RetryDelay.Wait(ctx, t.waits-1)
			continue
		}
		t.invokes++
		t.functionError = out.functionError
		switch {
		case out.done > 0 && r.m.BisectOnError:
			// Split at the reported record: the rest is a new batch.
			batch, t = batch[out.done:], tries{}
			continue
		case out.done > 0:
			batch = batch[out.done:]
		case r.m.BisectOnError && len(batch) > 1:
			half := len(batch) / 2
			r.deliver(ctx, batch[:half])
			r.deliver(ctx, batch[half:])
			return
		}
		if r.m.MaxRetryAttempts >= 0 && t.retries >= r.m.MaxRetryAttempts {
			r.discard(ctx, batch, conditionRetries, t)
			return
		}
		t.retries++
		r.m.Log.Warn("stream: batch failed; retrying it", "records", len(batch), "retry", t.retries)
		_ = r.m.RetryDelay.Wait(ctx, t.retries-1)
	}
}

// dropExpired discards the records older than MaxRecordAge and returns
// the others.
func (r *streamRunner) dropExpired(ctx context.Context, batch []streamRecord, t tries) []streamRecord {
	now := time.Now()
	var fresh, old []streamRecord
	for _, rec := range batch {
		if now.Sub(rec.arrival) > r.m.MaxRecordAge {
			old = append(old, rec)
		} else {
			fresh = append(fresh, rec)
		}
	}
	if len(old) > 0 {
		r.discard(ctx, old, conditionAge, t)
	}
	return fresh
}

// invoke hands the batch to the function once.
func (r *streamRunner) invoke(ctx context.Context, batch []streamRecord) outcome {
	records := make([]json.RawMessage, len(batch))
	for i, rec := range batch {
		records[i] = rec.raw
	}
	payload, _ := json.Marshal(map[string]any{"Records": records})
	resp, err := r.m.Invoke(ctx, payload)
	switch {
	case errors.Is(err, ErrNotInvoked):
		return outcome{}
	case err != nil:
		return outcome{invoked: true, functionError: true}
	case !r.m.ReportBatchItemFailures:
		return outcome{invoked: true, done: len(batch)}
	}
	done, ok := firstFailure(resp, batch)
	return outcome{invoked: true, done: done, functionError: !ok}
}

// firstFailure reads a response with batchItemFailures: the index of the
// first record reported (len(batch) for none). A response Lambda cannot
// read, or naming a record not in the batch, fails it all (ok false).
func firstFailure(resp []byte, batch []streamRecord) (done int, ok bool) {
	var r struct {
		BatchItemFailures []struct {
			ItemIdentifier *string `json:"itemIdentifier"`
		} `json:"batchItemFailures"`
	}
	if len(resp) == 0 || string(resp) == "null" {
		return len(batch), true
	}
	if json.Unmarshal(resp, &r) != nil {
		return 0, false
	}
	done = len(batch)
	for _, f := range r.BatchItemFailures {
		if f.ItemIdentifier == nil {
			return 0, false
		}
		i := slices.IndexFunc(batch, func(rec streamRecord) bool { return rec.seq == *f.ItemIdentifier })
		if i < 0 {
			return 0, false
		}
		done = min(done, i)
	}
	return done, true
}

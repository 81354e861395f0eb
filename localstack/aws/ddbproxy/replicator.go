package ddbproxy

import (
	"context"
	"encoding/json"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// replicator carries each write to the replicas: right after a write
// succeeds it reads each written item's image from the table (consistently)
// and queues it on the item's lane, to be put into (or, if the item is gone,
// deleted from) the replica ReadLag later. A lane applies its images in
// order, one at a time, so a replica never goes back to an older image.
type replicator struct {
	p    *Proxy
	lag  time.Duration
	seed maphash.Seed
	// pending counts written items whose image has not reached the replica
	// yet, and replicas being built: Settle waits for it to be 0.
	pending atomic.Int64
	shards  [laneShards]laneShard
}

const laneShards = 64

type laneShard struct {
	mu    sync.Mutex
	lanes map[string]*lane
}

// lane is one item's way to the replica. Its fields but read are guarded
// by the shard's mu.
type lane struct {
	// read is held from reading an image until it is queued, so images
	// queue in the order they were read: each later one at least as new.
	read sync.Mutex
	// next is the read not started yet. Writes finished before it starts
	// join it rather than read again: a hot item is read once per round
	// trip, not once per write.
	next    *snapshot
	queue   []image
	running bool // an applier goroutine owns the queue's head
	refs    int  // snapshots and the applier using the lane
}

// snapshot is a read of an item owed to writes.
type snapshot struct {
	due    time.Time // the last write's time plus ReadLag
	writes int
}

// image is an item as the table held it after some writes.
type image struct {
	key    itemKey
	item   json.RawMessage // nil: no such item any more
	due    time.Time
	writes int
}

func newReplicator(p *Proxy) *replicator {
	r := &replicator{p: p, lag: p.opts.ReadLag, seed: maphash.MakeSeed()}
	for i := range r.shards {
		r.shards[i].lanes = map[string]*lane{}
	}
	return r
}

// written schedules the replica update of items a write changed at t.
// Called before the write is answered, so Settle covers it; the items'
// lanes exist from now on until their images are applied, which tells a
// replica being seeded to leave them to their lanes.
//
// Only tables someone has read eventually consistently have a replica:
// the first such read builds it, seeded from the table, and from then on
// every write reaches it after the lag. Until then a write costs nothing
// extra, so a client that only reads consistently (as wsgate's store
// does) does not pay for a replica it never reads.
func (r *replicator) written(keys []itemKey, t time.Time) {
	if r.lag <= 0 || len(keys) == 0 {
		return
	}
	keys = r.p.replicated(keys)
	if len(keys) == 0 {
		return
	}
	r.pending.Add(int64(len(keys)))
	due := t.Add(r.lag)
	var reads []itemKey
	var lanes []*lane
	for _, k := range keys {
		if ln := r.join(k.id, due); ln != nil {
			reads, lanes = append(reads, k), append(lanes, ln)
		}
	}
	if len(reads) == 0 {
		return
	}
	ok := r.p.background(func() {
		for i, k := range reads {
			r.snapshot(k, lanes[i])
		}
	})
	if !ok {
		r.pending.Add(-int64(len(reads))) // closed: nothing will be read
	}
}

func (r *replicator) shard(id string) *laneShard {
	return &r.shards[maphash.String(r.seed, id)%laneShards]
}

// join adds a write due then to id's next read, and returns its lane if
// that read is new (the caller starts it), or nil.
func (r *replicator) join(id string, due time.Time) *lane {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ln := sh.lanes[id]
	if ln == nil {
		ln = &lane{}
		sh.lanes[id] = ln
	}
	if ln.next != nil {
		ln.next.due = maxTime(ln.next.due, due)
		ln.next.writes++
		return nil
	}
	ln.next = &snapshot{due: due, writes: 1}
	ln.refs++
	return ln
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// busy reports whether an item has images on their way to the replica.
func (r *replicator) busy(id string) bool {
	sh := r.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, ok := sh.lanes[id]
	return ok
}

// snapshot makes the lane's next read and queues the image it gets.
func (r *replicator) snapshot(k itemKey, ln *lane) {
	sh := r.shard(k.id)
	defer r.release(sh, k.id, ln)

	ln.read.Lock()
	defer ln.read.Unlock()
	sh.mu.Lock()
	s := ln.next // writes from now on need a read of their own
	ln.next = nil
	sh.mu.Unlock()
	item, err := r.readImage(k)
	if err != nil {
		r.pending.Add(-int64(s.writes))
		r.gaveUp(k, "read image", err)
		return
	}
	sh.mu.Lock()
	ln.queue = append(ln.queue, image{key: k, item: item, due: s.due, writes: s.writes})
	start := !ln.running
	if start {
		ln.running = true
		ln.refs++
	}
	sh.mu.Unlock()
	if start && !r.p.background(func() { r.apply(sh, k.id, ln) }) {
		r.pending.Add(-int64(s.writes)) // closed: the applier never runs
	}
}

// release drops a use of the lane, and the lane with its last use.
func (r *replicator) release(sh *laneShard, id string, ln *lane) {
	sh.mu.Lock()
	ln.refs--
	if ln.refs == 0 {
		delete(sh.lanes, id)
	}
	sh.mu.Unlock()
}

// apply works through a lane's queue: at each head's due time it writes the
// newest image due by then (skipping older ones, which the replica would
// have held only for an instant), until the queue is empty.
func (r *replicator) apply(sh *laneShard, id string, ln *lane) {
	defer r.release(sh, id, ln)
	for {
		sh.mu.Lock()
		if len(ln.queue) == 0 {
			ln.running = false
			ln.queue = nil
			sh.mu.Unlock()
			return
		}
		due := ln.queue[0].due
		sh.mu.Unlock()
		if backoff.Sleep(r.p.ctx, time.Until(due)) != nil {
			return // closed
		}
		sh.mu.Lock()
		now := time.Now()
		n, writes := 0, 0
		for n < len(ln.queue) && (n == 0 || !ln.queue[n].due.After(now)) {
			writes += ln.queue[n].writes
			n++
		}
		img := ln.queue[n-1]
		ln.queue = ln.queue[n:]
		sh.mu.Unlock()
		r.write(img)
		r.pending.Add(-int64(writes))
	}
}

// readImage reads k from the table, consistently.
func (r *replicator) readImage(k itemKey) (json.RawMessage, error) {
	in := map[string]any{"TableName": k.table, "Key": k.raw, "ConsistentRead": true}
	var out struct{ Item json.RawMessage }
	err := r.retry(func(ctx context.Context) error { return r.p.db.call(ctx, "GetItem", in, &out) })
	if err != nil {
		return nil, err
	}
	if len(out.Item) == 0 || string(out.Item) == "null" {
		return nil, nil
	}
	return out.Item, nil
}

// write puts img into the replica, or deletes its item there.
func (r *replicator) write(img image) {
	replica := img.key.table + ReplicaSuffix
	op, in := "PutItem", map[string]any{"TableName": replica, "Item": img.item}
	if img.item == nil {
		op, in = "DeleteItem", map[string]any{"TableName": replica, "Key": img.key.raw}
	}
	err := r.retry(func(ctx context.Context) error {
		if err := r.p.replicaReady(ctx, img.key.table); err != nil {
			return err
		}
		err := r.p.db.call(ctx, op, in, nil)
		if isCode(err, "ResourceNotFoundException") {
			// Rebuilt or deleted under us: the next try waits for the
			// new one, or finds the table gone.
			r.p.dropReplica(img.key.table, nil)
		}
		return err
	})
	if err != nil {
		r.gaveUp(img.key, "write replica", err)
		return
	}
	r.p.replicaWrites.Add(1)
}

// retry runs call up to 4 times with backoff, each try bounded, while the
// proxy runs.
func (r *replicator) retry(call func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 && retry.Wait(r.p.ctx, attempt-1) != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(r.p.ctx, 10*time.Second)
		err = call(ctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	return err
}

func (r *replicator) gaveUp(k itemKey, step string, err error) {
	if r.p.ctx.Err() != nil {
		return // closing
	}
	if isCode(err, "ResourceNotFoundException") {
		return // the table is gone, and its replica with it
	}
	r.p.replicaErrors.Add(1)
	r.p.log.Error("ddbproxy: replica update dropped", "table", k.table, "step", step, "error", err.Error())
}

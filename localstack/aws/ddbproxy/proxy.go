// Package ddbproxy sits in front of DynamoDB Local and makes it as harsh as
// DynamoDB on the two promises DynamoDB Local keeps better than AWS does:
//
//   - Eventually consistent reads are stale. A read without ConsistentRead
//     (and every read of a global secondary index) is served from a replica
//     table, "<table>.replica" in the same DynamoDB Local, that receives each
//     item's new image ReadLag after the write, in order per item.
//   - Transactions conflict. A TransactWriteItems touching an item another
//     one is writing is cancelled with TransactionConflict, a single-item
//     write to such an item fails with TransactionConflictException, and a
//     TransactGetItems reading an item being written is cancelled, as the
//     DynamoDB developer guide ("Transaction conflict handling") documents.
//
// It also adds the X-Amz-Crc32 header DynamoDB Local leaves off its errors,
// as DynamoDB does on every response. One proxy per DynamoDB Local: the replicas'
// bookkeeping lives in the proxy, and DynamoDB Local must run with -sharedDb
// (the proxy's own requests carry credentials of their own).
package ddbproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ReplicaSuffix names a table's replica: "<table>" + ReplicaSuffix. ListTables
// through the proxy leaves replicas out.
const ReplicaSuffix = ".replica"

// Options configure a Proxy.
type Options struct {
	// Backend is DynamoDB Local's URL, e.g. http://127.0.0.1:8000.
	Backend string
	// ReadLag is how long after a write eventually consistent reads start
	// to see it. 0 (the default) turns replicas off: every read is served
	// by the table itself, consistently.
	ReadLag time.Duration
	// Conflicts turns on transaction conflicts. Off by default.
	Conflicts bool
	// TransactionHold keeps each transaction's items held this long before
	// it runs, so tests can collide with it reliably. Only with Conflicts.
	TransactionHold time.Duration
	// CapacityScale turns on DynamoDB's per-partition throughput ceilings
	// (ReadCeiling and WriteCeiling units a second per partition key
	// value) scaled by it: 1 is AWS's, 0.01 a hundredth, so the machine is
	// a scale model of a deployment a hundred times larger. 0 (the
	// default) turns the accounting off: requests stream through. A
	// negative value counts every key's units (Capacity) with no ceiling.
	CapacityScale float64
	// ScaledKeys names the partition key values (of tables and global
	// indexes) whose load grows with the modelled audience: only they are
	// held to the ceilings times CapacityScale, and a Query of one is
	// charged for the audience slice it stands for (see serveMetered);
	// every other key keeps AWS's own ceilings, as the model stands for a
	// larger audience, not for more events. Nil scales every key.
	ScaledKeys func(pk string) bool
	// Log receives the replicas' errors; nil discards them.
	Log *slog.Logger
}

// Stats counts what the proxy did.
type Stats struct {
	// StaleReads are eventually consistent reads served from a replica
	// (stale by up to ReadLag, whether or not anything changed).
	StaleReads int64
	// ReplicaWrites are item images applied to replicas (puts and deletes).
	ReplicaWrites int64
	// ReplicaErrors are replica updates given up after retries.
	ReplicaErrors int64
	// Conflicts are requests answered with a transaction conflict.
	Conflicts int64
	// HeldItems are the items transactions in flight (TransactWriteItems
	// and TransactGetItems) hold now.
	HeldItems int
}

// Proxy is an http.Handler for DynamoDB's JSON API.
type Proxy struct {
	opts    Options
	target  *url.URL
	rt      http.RoundTripper
	db      *backend
	log     *slog.Logger
	schemas *schemaCache
	locks   *lockTable

	replicaMu sync.Mutex
	replicas  map[string]*replicaState
	initMu    sync.Mutex // one replica (re)build at a time
	repl      *replicator
	cap       *capacity // nil: no accounting

	staleReads, replicaWrites, replicaErrors, conflicts atomic.Int64

	ctx    context.Context // ends on Close: stops the replicas' work
	cancel context.CancelFunc
	bgMu   sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// New returns a proxy to opts.Backend.
func New(opts Options) (*Proxy, error) {
	if opts.Backend == "" {
		return nil, errors.New("ddbproxy: Options.Backend is required")
	}
	u, err := url.Parse(opts.Backend)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("ddbproxy: backend %q is not an absolute URL", opts.Backend)
	}
	if math.IsNaN(opts.CapacityScale) || math.IsInf(opts.CapacityScale, 0) {
		return nil, errors.New("ddbproxy: CapacityScale must be a finite number")
	}
	if opts.ReadLag < 0 || opts.TransactionHold < 0 {
		return nil, errors.New("ddbproxy: ReadLag and TransactionHold must not be negative")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	rt := newTransport()
	p := &Proxy{
		opts: opts, target: u, rt: rt, log: opts.Log,
		db:       &backend{url: strings.TrimSuffix(opts.Backend, "/") + "/", rt: rt},
		locks:    newLockTable(),
		replicas: map[string]*replicaState{},
	}
	if opts.CapacityScale != 0 {
		p.cap = newCapacity(opts.CapacityScale, opts.ScaledKeys)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.schemas = newSchemaCache(p.ctx, p.db)
	p.repl = newReplicator(p)
	return p, nil
}

// Close stops the replicas' work in flight and waits for it to end. Writes
// not yet applied to replicas are dropped.
func (p *Proxy) Close() {
	p.bgMu.Lock()
	p.closed = true
	p.bgMu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// background runs f on its own goroutine, which Close waits for; false if
// the proxy is closed.
func (p *Proxy) background(f func()) bool {
	p.bgMu.Lock()
	defer p.bgMu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
	return true
}

// Settle waits until every write answered so far is visible to eventually
// consistent reads (and every replica being built is ready).
func (p *Proxy) Settle(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for p.repl.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("ddbproxy: settle: %d replica updates pending: %w", p.repl.pending.Load(), ctx.Err())
		case <-p.ctx.Done():
			return errors.New("ddbproxy: settle: proxy closed")
		case <-t.C:
		}
	}
	return nil
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		StaleReads:    p.staleReads.Load(),
		ReplicaWrites: p.replicaWrites.Load(),
		ReplicaErrors: p.replicaErrors.Load(),
		Conflicts:     p.conflicts.Load(),
		HeldItems:     p.locks.heldItems(),
	}
}

const targetPrefix = "DynamoDB_20120810."

// maxRequest bounds a request body the proxy reads to inspect: DynamoDB's
// own limit is 16 MB.
const maxRequest = 32 << 20

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), targetPrefix)
	if !ok || !p.inspects(op) {
		p.pass(w, r)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequest))
	if err != nil {
		serviceError(w, http.StatusBadRequest, "com.amazon.coral.service#SerializationException", "request body: "+err.Error())
		return
	}
	if p.cap != nil && metered(op) {
		p.serveMetered(w, r, op, body)
		return
	}
	p.dispatch(w, r, op, body)
}

// dispatch serves op's request body.
func (p *Proxy) dispatch(w http.ResponseWriter, r *http.Request, op string, body []byte) {
	switch op {
	case "GetItem", "Query", "Scan":
		p.serveRead(w, r, body)
	case "BatchGetItem":
		p.serveBatchGet(w, r, body)
	case "PutItem", "UpdateItem", "DeleteItem":
		p.serveWrite(w, r, op, body)
	case "BatchWriteItem":
		p.serveBatchWrite(w, r, body)
	case "TransactWriteItems":
		p.serveTransactWrite(w, r, body)
	case "TransactGetItems":
		p.serveTransactGet(w, r, body)
	case "CreateTable", "DeleteTable", "UpdateTable", "UpdateTimeToLive":
		p.serveTableChange(w, r, op, body)
	case "ListTables":
		p.serveListTables(w, r, body)
	default:
		p.forward(w, r, body)
	}
}

// inspects reports whether op needs its request read: everything else
// streams through untouched.
func (p *Proxy) inspects(op string) bool {
	if p.cap != nil && metered(op) {
		return true
	}
	replicas := p.opts.ReadLag > 0
	switch op {
	case "GetItem", "Query", "Scan", "BatchGetItem",
		"CreateTable", "DeleteTable", "UpdateTable", "UpdateTimeToLive":
		return replicas
	case "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems":
		return replicas || p.opts.Conflicts
	case "TransactGetItems":
		return p.opts.Conflicts
	case "ListTables":
		return true
	}
	return false
}

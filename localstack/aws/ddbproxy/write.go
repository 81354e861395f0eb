package ddbproxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// serveWrite handles PutItem, UpdateItem and DeleteItem: refused while a
// transaction holds the item, replicated once done.
func (p *Proxy) serveWrite(w http.ResponseWriter, r *http.Request, op string, body []byte) {
	f, err := parseFields(body)
	var k itemKey
	if err == nil {
		k, err = p.writeKey(r.Context(), op, f)
	}
	if err != nil {
		p.forward(w, r, body) // DynamoDB Local says what is wrong with it
		return
	}
	ids := []string{k.id}
	if p.opts.Conflicts {
		if !p.locks.tryLockWrites(ids) {
			p.transactionConflict(w)
			return
		}
	}
	resp, err := p.roundTrip(r, body)
	if p.opts.Conflicts {
		p.locks.unlockWrites(ids)
	}
	if err != nil {
		backendDown(w, err)
		return
	}
	if resp.StatusCode == http.StatusOK {
		p.repl.written([]itemKey{k}, time.Now())
	}
	relay(w, resp)
}

func (p *Proxy) writeKey(ctx context.Context, op string, f fields) (itemKey, error) {
	table := f.str("TableName")
	if op == "PutItem" {
		var item map[string]json.RawMessage
		if err := json.Unmarshal(f["Item"], &item); err != nil {
			return itemKey{}, err
		}
		return p.putKey(ctx, table, item)
	}
	var key map[string]json.RawMessage
	if err := json.Unmarshal(f["Key"], &key); err != nil {
		return itemKey{}, err
	}
	return keyFromKey(table, key)
}

// putKey is the key of an item a Put writes, by the table's key schema.
func (p *Proxy) putKey(ctx context.Context, table string, item map[string]json.RawMessage) (itemKey, error) {
	if table == "" {
		return itemKey{}, errBadKey
	}
	s, err := p.schemas.get(ctx, table)
	if err != nil {
		return itemKey{}, err
	}
	return keyFromItem(table, item, s.keyNames)
}

// writeRequest is one entry of BatchWriteItem's RequestItems (and of its
// UnprocessedItems).
type writeRequest struct {
	PutRequest    *struct{ Item map[string]json.RawMessage }
	DeleteRequest *struct{ Key map[string]json.RawMessage }
}

func (p *Proxy) batchKeys(ctx context.Context, items map[string][]writeRequest) ([]itemKey, error) {
	var keys []itemKey
	for table, reqs := range items {
		for _, wr := range reqs {
			var k itemKey
			var err error
			switch {
			case wr.PutRequest != nil:
				k, err = p.putKey(ctx, table, wr.PutRequest.Item)
			case wr.DeleteRequest != nil:
				k, err = keyFromKey(table, wr.DeleteRequest.Key)
			default:
				err = errBadKey
			}
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// serveBatchWrite replicates what a BatchWriteItem wrote (all but its
// UnprocessedItems). It proceeds whatever transactions hold: the conflict
// rules DynamoDB documents name only single-item writes.
func (p *Proxy) serveBatchWrite(w http.ResponseWriter, r *http.Request, body []byte) {
	var req struct{ RequestItems map[string][]writeRequest }
	err := json.Unmarshal(body, &req)
	var keys []itemKey
	if err == nil {
		keys, err = p.batchKeys(r.Context(), req.RequestItems)
	}
	if err != nil {
		p.forward(w, r, body)
		return
	}
	ids := keyIDs(keys)
	if p.opts.Conflicts {
		p.locks.lockWrites(ids)
	}
	resp, b, err := p.exchange(r, body)
	if p.opts.Conflicts {
		p.locks.unlockWrites(ids)
	}
	if err != nil {
		backendDown(w, err)
		return
	}
	if resp.StatusCode == http.StatusOK && p.opts.ReadLag > 0 {
		p.repl.written(p.processed(r.Context(), keys, b), time.Now())
	}
	writeResponse(w, resp, b)
}

// processed is keys less the UnprocessedItems of the answer b.
func (p *Proxy) processed(ctx context.Context, keys []itemKey, b []byte) []itemKey {
	var out struct{ UnprocessedItems map[string][]writeRequest }
	if json.Unmarshal(b, &out) != nil || len(out.UnprocessedItems) == 0 {
		return keys
	}
	left, err := p.batchKeys(ctx, out.UnprocessedItems)
	if err != nil {
		return keys // replicating an unwritten item is harmless: its image is read
	}
	skip := make(map[string]bool, len(left))
	for _, k := range left {
		skip[k.id] = true
	}
	done := keys[:0:0]
	for _, k := range keys {
		if !skip[k.id] {
			done = append(done, k)
		}
	}
	return done
}

func keyIDs(keys []itemKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.id
	}
	return ids
}

// transactItem is the part of a transaction's action the proxy reads.
type transactItem struct {
	TableName string
	Key       map[string]json.RawMessage
	Item      map[string]json.RawMessage
}

// transactKeys are the items of a TransactWriteItems in request order, and
// those it writes (all but its ConditionChecks).
func (p *Proxy) transactKeys(ctx context.Context, body []byte) (all, writes []itemKey, err error) {
	var req struct{ TransactItems []map[string]transactItem }
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, nil, err
	}
	for _, action := range req.TransactItems {
		if len(action) != 1 {
			return nil, nil, errBadKey
		}
		for kind, it := range action {
			var k itemKey
			if kind == "Put" {
				k, err = p.putKey(ctx, it.TableName, it.Item)
			} else {
				k, err = keyFromKey(it.TableName, it.Key)
			}
			if err != nil {
				return nil, nil, err
			}
			all = append(all, k)
			if kind != "ConditionCheck" {
				writes = append(writes, k)
			}
		}
	}
	return all, writes, nil
}

// serveTransactWrite cancels a TransactWriteItems that meets another on an
// item, holds its items while it runs, and replicates what it wrote.
func (p *Proxy) serveTransactWrite(w http.ResponseWriter, r *http.Request, body []byte) {
	all, writes, err := p.transactKeys(r.Context(), body)
	if err != nil {
		p.forward(w, r, body)
		return
	}
	ids := keyIDs(all)
	if p.opts.Conflicts {
		if conflicted, ok := p.locks.lockTx(ids); !ok {
			p.transactionCanceled(w, conflicted)
			return
		}
		if err := backoff.Sleep(r.Context(), p.opts.TransactionHold); err != nil {
			p.locks.unlockTx(ids)
			return // the client gave up
		}
	}
	resp, err := p.roundTrip(r, body)
	if p.opts.Conflicts {
		// Before answering: a client that writes the item next must not
		// meet its own finished transaction.
		p.locks.unlockTx(ids)
	}
	if err != nil {
		backendDown(w, err)
		return
	}
	if resp.StatusCode == http.StatusOK {
		p.repl.written(writes, time.Now())
	}
	relay(w, resp)
}

// serveTransactGet cancels a TransactGetItems that meets a write on an item,
// before it runs or while it runs.
func (p *Proxy) serveTransactGet(w http.ResponseWriter, r *http.Request, body []byte) {
	ids, err := transactGetIDs(body)
	if err != nil {
		p.forward(w, r, body)
		return
	}
	g, conflicted, ok := p.locks.lockGet(ids)
	if !ok {
		p.transactionCanceled(w, conflicted)
		return
	}
	var resp *http.Response
	var b []byte
	if err = backoff.Sleep(r.Context(), p.opts.TransactionHold); err == nil {
		resp, b, err = p.exchange(r, body)
	}
	conflicted = p.locks.unlockGet(g, ids)
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client gave up
	case err != nil:
		backendDown(w, err)
	case resp.StatusCode == http.StatusOK && conflicted != nil:
		p.transactionCanceled(w, conflicted)
	default:
		writeResponse(w, resp, b)
	}
}

func transactGetIDs(body []byte) ([]string, error) {
	var req struct {
		TransactItems []struct{ Get *transactItem }
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	ids := make([]string, len(req.TransactItems))
	for i, it := range req.TransactItems {
		if it.Get == nil {
			return nil, errBadKey
		}
		k, err := keyFromKey(it.Get.TableName, it.Get.Key)
		if err != nil {
			return nil, err
		}
		ids[i] = k.id
	}
	return ids, nil
}

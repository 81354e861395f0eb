package ddbproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/backoff"
)

// replicaState is one table's replica as this proxy built it.
type replicaState struct {
	done chan struct{} // closed once built (or failed)
	err  error
}

// replicated keeps the keys of tables that have a replica (built or being
// built).
func (p *Proxy) replicated(keys []itemKey) []itemKey {
	p.replicaMu.Lock()
	defer p.replicaMu.Unlock()
	out := keys[:0:0]
	for _, k := range keys {
		if _, ok := p.replicas[k.table]; ok {
			out = append(out, k)
		}
	}
	return out
}

// replicaReady returns once table's replica is built and seeded, building it
// on first need.
func (p *Proxy) replicaReady(ctx context.Context, table string) error {
	p.replicaMu.Lock()
	st, ok := p.replicas[table]
	if !ok {
		st = &replicaState{done: make(chan struct{})}
		p.repl.pending.Add(1) // Settle waits for the build too
		if !p.background(func() { p.buildReplica(table, st) }) {
			p.repl.pending.Add(-1)
			p.replicaMu.Unlock()
			return errors.New("ddbproxy: closed")
		}
		p.replicas[table] = st
	}
	p.replicaMu.Unlock()
	select {
	case <-st.done:
		return st.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *Proxy) buildReplica(table string, st *replicaState) {
	defer p.repl.pending.Add(-1)
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Minute)
	defer cancel()
	st.err = p.rebuild(ctx, table)
	if st.err != nil {
		// Not kept: the table may exist next time.
		p.dropReplica(table, st)
		if !isCode(st.err, "ResourceNotFoundException") && p.ctx.Err() == nil {
			p.log.Error("ddbproxy: build replica", "table", table, "error", st.err.Error())
		}
	}
	close(st.done)
}

// dropReplica forgets table's replica if it is st (any if st is nil): the
// next read or write builds it afresh.
func (p *Proxy) dropReplica(table string, st *replicaState) {
	p.replicaMu.Lock()
	if cur, ok := p.replicas[table]; ok && (st == nil || cur == st) {
		delete(p.replicas, table)
	}
	p.replicaMu.Unlock()
}

// rebuild (re)creates table's replica from its current description and
// copies its items: a replica left by an earlier run, or built before the
// table changed, may be stale in ways no queued write would repair.
func (p *Proxy) rebuild(ctx context.Context, table string) error {
	p.initMu.Lock()
	defer p.initMu.Unlock()
	p.schemas.invalidate(table) // its indexes may have changed
	s, err := p.schemas.get(ctx, table)
	if err != nil {
		return err
	}
	replica := table + ReplicaSuffix
	err = p.db.call(ctx, "DeleteTable", map[string]string{"TableName": replica}, nil)
	if err != nil && !isCode(err, "ResourceNotFoundException") {
		return fmt.Errorf("delete old replica: %w", err)
	}
	if err := p.createReplica(ctx, replica, s.desc); err != nil {
		return err
	}
	p.copyTTL(ctx, table, replica)
	return p.seed(ctx, s, table, replica)
}

func (p *Proxy) createReplica(ctx context.Context, replica string, d tableDescription) error {
	in := map[string]any{
		"TableName":            replica,
		"BillingMode":          "PAY_PER_REQUEST",
		"AttributeDefinitions": d.AttributeDefinitions,
		"KeySchema":            d.KeySchema,
	}
	if len(d.GlobalSecondaryIndexes) > 0 {
		in["GlobalSecondaryIndexes"] = d.GlobalSecondaryIndexes
	}
	if len(d.LocalSecondaryIndexes) > 0 {
		in["LocalSecondaryIndexes"] = d.LocalSecondaryIndexes
	}
	for attempt := 0; ; attempt++ {
		err := p.db.call(ctx, "CreateTable", in, nil)
		if err == nil {
			break
		}
		// The old replica may still be going away.
		if !isCode(err, "ResourceInUseException") || attempt >= 100 {
			return fmt.Errorf("create replica: %w", err)
		}
		if err := backoff.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		var out struct{ Table tableDescription }
		err := p.db.call(ctx, "DescribeTable", map[string]string{"TableName": replica}, &out)
		if err == nil && out.Table.TableStatus == "ACTIVE" {
			return nil
		}
		if attempt >= 200 {
			return fmt.Errorf("replica %s not active: %v", replica, err)
		}
		if err := backoff.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// copyTTL turns on the replica's TTL if the table has it on, so expired
// items leave both (each on its own schedule, as DynamoDB's own sweeper
// keeps none). Best effort.
func (p *Proxy) copyTTL(ctx context.Context, table, replica string) {
	var out struct {
		TimeToLiveDescription struct{ TimeToLiveStatus, AttributeName string }
	}
	if err := p.db.call(ctx, "DescribeTimeToLive", map[string]string{"TableName": table}, &out); err != nil {
		return
	}
	d := out.TimeToLiveDescription
	if d.TimeToLiveStatus != "ENABLED" && d.TimeToLiveStatus != "ENABLING" {
		return
	}
	err := p.db.call(ctx, "UpdateTimeToLive", map[string]any{
		"TableName":               replica,
		"TimeToLiveSpecification": map[string]any{"Enabled": true, "AttributeName": d.AttributeName},
	}, nil)
	if err != nil {
		p.log.Warn("ddbproxy: replica TTL", "table", table, "error", err.Error())
	}
}

// seed copies the table's items into its new replica, but for items with
// writes on their way (their lanes put their images when due: the replica
// must not show them sooner). Writes racing the copy queue behind it, as
// replica writes wait for the build.
func (p *Proxy) seed(ctx context.Context, s *schema, table, replica string) error {
	var start json.RawMessage
	for {
		in := map[string]any{"TableName": table, "ConsistentRead": true}
		if start != nil {
			in["ExclusiveStartKey"] = start
		}
		var out struct {
			Items            []map[string]json.RawMessage
			LastEvaluatedKey json.RawMessage
		}
		if err := p.db.call(ctx, "Scan", in, &out); err != nil {
			return fmt.Errorf("seed replica: %w", err)
		}
		var items []map[string]json.RawMessage
		for _, it := range out.Items {
			if k, err := keyFromItem(table, it, s.keyNames); err != nil || !p.repl.busy(k.id) {
				items = append(items, it)
			}
		}
		for len(items) > 0 {
			n := min(len(items), 25) // BatchWriteItem's limit
			if err := p.putAll(ctx, replica, items[:n]); err != nil {
				return fmt.Errorf("seed replica: %w", err)
			}
			items = items[n:]
		}
		if len(out.LastEvaluatedKey) == 0 || string(out.LastEvaluatedKey) == "null" {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

// putAll writes up to 25 items to table, retrying what DynamoDB leaves
// unprocessed.
func (p *Proxy) putAll(ctx context.Context, table string, items []map[string]json.RawMessage) error {
	reqs := make([]json.RawMessage, len(items))
	for i, it := range items {
		reqs[i], _ = json.Marshal(map[string]map[string]any{"PutRequest": {"Item": it}})
	}
	for attempt := 0; len(reqs) > 0; attempt++ {
		if attempt > 0 {
			if err := retry.Wait(ctx, attempt-1); err != nil {
				return err
			}
		}
		var out struct {
			UnprocessedItems map[string][]json.RawMessage
		}
		in := map[string]any{"RequestItems": map[string][]json.RawMessage{table: reqs}}
		if err := p.db.call(ctx, "BatchWriteItem", in, &out); err != nil {
			return err
		}
		reqs = out.UnprocessedItems[table]
	}
	return nil
}

// retry spaces the replicator's retries of a write the replica refused:
// full jitter, 20 ms doubling to about a second.
var retry = backoff.Policy{Base: 20 * time.Millisecond, Max: 1280 * time.Millisecond}

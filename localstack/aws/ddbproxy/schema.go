package ddbproxy

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// tableDescription is the part of DescribeTable's answer the proxy uses.
type tableDescription struct {
	TableName              string
	TableStatus            string
	AttributeDefinitions   json.RawMessage
	KeySchema              []keyElement
	GlobalSecondaryIndexes []indexDescription
	LocalSecondaryIndexes  []indexDescription
}

type keyElement struct {
	AttributeName string
	KeyType       string
}

type indexDescription struct {
	IndexName  string
	KeySchema  json.RawMessage
	Projection json.RawMessage
}

// schema is what the proxy knows of a table.
type schema struct {
	desc tableDescription
	// keyNames are the key attributes, to find an item's key in a Put.
	keyNames []string
	// global tells a global secondary index (true) from a local one.
	global map[string]bool
	// hash is the table's partition key attribute; indexHash each global
	// index's.
	hash      string
	indexHash map[string]string
}

func newSchema(d tableDescription) *schema {
	s := &schema{desc: d, global: map[string]bool{}, indexHash: map[string]string{}}
	for _, k := range d.KeySchema {
		s.keyNames = append(s.keyNames, k.AttributeName)
	}
	s.hash = hashName(d.KeySchema)
	for _, ix := range d.GlobalSecondaryIndexes {
		s.global[ix.IndexName] = true
		var ks []keyElement
		if json.Unmarshal(ix.KeySchema, &ks) == nil {
			s.indexHash[ix.IndexName] = hashName(ks)
		}
	}
	for _, ix := range d.LocalSecondaryIndexes {
		s.global[ix.IndexName] = false
	}
	return s
}

func hashName(ks []keyElement) string {
	for _, k := range ks {
		if k.KeyType == "HASH" {
			return k.AttributeName
		}
	}
	return ""
}

// schemaCache describes each table once, on first need, and keeps it until
// the table is created, deleted or updated through the proxy.
type schemaCache struct {
	ctx context.Context
	db  *backend
	mu  sync.Mutex
	m   map[string]*schemaEntry
}

type schemaEntry struct {
	done chan struct{}
	s    *schema
	err  error
}

func newSchemaCache(ctx context.Context, db *backend) *schemaCache {
	return &schemaCache{ctx: ctx, db: db, m: map[string]*schemaEntry{}}
}

// get returns table's schema. A failure is not kept: the next call asks
// again (the table may exist by then).
func (c *schemaCache) get(ctx context.Context, table string) (*schema, error) {
	c.mu.Lock()
	e, ok := c.m[table]
	if !ok {
		e = &schemaEntry{done: make(chan struct{})}
		c.m[table] = e
	}
	c.mu.Unlock()
	if !ok {
		// Described on the proxy's context: one caller giving up must
		// not fail the others waiting for the same answer.
		dctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		e.s, e.err = describe(dctx, c.db, table)
		cancel()
		if e.err != nil {
			c.forget(table, e)
		}
		close(e.done)
	}
	select {
	case <-e.done:
		return e.s, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// invalidate drops what is known of table.
func (c *schemaCache) invalidate(table string) { c.forget(table, nil) }

// forget drops table's entry if it is e (any entry if e is nil).
func (c *schemaCache) forget(table string, e *schemaEntry) {
	c.mu.Lock()
	if cur, ok := c.m[table]; ok && (e == nil || cur == e) {
		delete(c.m, table)
	}
	c.mu.Unlock()
}

func describe(ctx context.Context, db *backend, table string) (*schema, error) {
	var out struct{ Table tableDescription }
	if err := db.call(ctx, "DescribeTable", map[string]string{"TableName": table}, &out); err != nil {
		return nil, err
	}
	return newSchema(out.Table), nil
}

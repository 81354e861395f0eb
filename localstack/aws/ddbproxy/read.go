package ddbproxy

import (
	"encoding/json"
	"net/http"
)

const validationType = "com.amazon.coral.validate#ValidationException"

// serveRead routes GetItem, Query and Scan: consistent reads to the table,
// the others to its replica.
func (p *Proxy) serveRead(w http.ResponseWriter, r *http.Request, body []byte) {
	f, err := parseFields(body)
	if err != nil {
		p.forward(w, r, body) // DynamoDB Local says what is wrong with it
		return
	}
	table, index := f.str("TableName"), f.str("IndexName")
	if f.flag("ConsistentRead") {
		if index != "" && p.isGlobalIndex(r, table, index) {
			serviceError(w, http.StatusBadRequest, validationType, "Consistent reads are not supported on global secondary indexes")
			return
		}
		p.forward(w, r, body)
		return
	}
	if err := p.replicaReady(r.Context(), table); err != nil {
		p.forward(w, r, body) // no such table: let DynamoDB Local say so
		return
	}
	f.setStr("TableName", table+ReplicaSuffix)
	rewritten, err := json.Marshal(f)
	if err != nil {
		p.forward(w, r, body)
		return
	}
	renamed := map[string]string{}
	if wantsCapacity(f) {
		renamed[table+ReplicaSuffix] = table
	}
	p.readReplicas(w, r, rewritten, 1, renamed)
}

// readReplicas sends a read rewritten to replicas, counts its stale reads
// (n tables) and names the tables back in a successful answer.
func (p *Proxy) readReplicas(w http.ResponseWriter, r *http.Request, rewritten []byte, n int, renamed map[string]string) {
	resp, b, err := p.exchange(r, rewritten)
	if err != nil {
		backendDown(w, err)
		return
	}
	if resp.StatusCode == http.StatusOK {
		p.staleReads.Add(int64(n))
		if len(renamed) > 0 {
			b = renameTables(b, renamed)
		}
	}
	writeResponse(w, resp, b)
}

func (p *Proxy) isGlobalIndex(r *http.Request, table, index string) bool {
	s, err := p.schemas.get(r.Context(), table)
	return err == nil && s.global[index]
}

func wantsCapacity(f fields) bool {
	v := f.str("ReturnConsumedCapacity")
	return v != "" && v != "NONE"
}

// serveBatchGet sends each table's eventually consistent entry to its
// replica, and names the tables back in the answer.
func (p *Proxy) serveBatchGet(w http.ResponseWriter, r *http.Request, body []byte) {
	f, err := parseFields(body)
	var items map[string]json.RawMessage
	if err == nil {
		err = json.Unmarshal(f["RequestItems"], &items)
	}
	if err != nil {
		p.forward(w, r, body)
		return
	}
	renamed := map[string]string{} // replica → table
	routed := make(map[string]json.RawMessage, len(items))
	for table, entry := range items {
		e, err := parseFields(entry)
		if err == nil && !e.flag("ConsistentRead") && p.replicaReady(r.Context(), table) == nil {
			routed[table+ReplicaSuffix] = entry
			renamed[table+ReplicaSuffix] = table
			continue
		}
		routed[table] = entry
	}
	if len(renamed) == 0 {
		p.forward(w, r, body)
		return
	}
	f["RequestItems"], err = json.Marshal(routed)
	var rewritten []byte
	if err == nil {
		rewritten, err = json.Marshal(f)
	}
	if err != nil {
		p.forward(w, r, body)
		return
	}
	p.readReplicas(w, r, rewritten, len(renamed), renamed)
}

// renameTables names tables back in a read's answer: the keys of Responses
// and UnprocessedKeys (a BatchGetItem's), and ConsumedCapacity's TableName
// (one or a list). The rest of the answer is passed on as it came: a
// GetItem, Query or Scan answer changes in its ConsumedCapacity only.
// An answer it cannot parse is returned as it is.
func renameTables(b []byte, names map[string]string) []byte {
	_, responses := member(b, "Responses")
	_, unprocessed := member(b, "UnprocessedKeys")
	if !responses && !unprocessed {
		if m, ok := member(b, "ConsumedCapacity"); ok {
			return withValue(b, m, renameCapacity(b[m.value:m.close], names))
		}
		return b
	}
	f, err := parseFields(b)
	if err != nil {
		return b
	}
	for _, member := range []string{"Responses", "UnprocessedKeys"} {
		var m map[string]json.RawMessage
		if raw, ok := f[member]; !ok || json.Unmarshal(raw, &m) != nil {
			continue
		}
		out := make(map[string]json.RawMessage, len(m))
		for k, v := range m {
			if t, ok := names[k]; ok {
				k = t
			}
			out[k] = v
		}
		f[member], _ = json.Marshal(out)
	}
	if raw, ok := f["ConsumedCapacity"]; ok {
		f["ConsumedCapacity"] = renameCapacity(raw, names)
	}
	out, err := json.Marshal(f)
	if err != nil {
		return b
	}
	return out
}

func renameCapacity(raw json.RawMessage, names map[string]string) json.RawMessage {
	rename := func(c fields) {
		if t, ok := names[c.str("TableName")]; ok {
			c.setStr("TableName", t)
		}
	}
	var list []fields
	if json.Unmarshal(raw, &list) == nil {
		for _, c := range list {
			rename(c)
		}
		out, _ := json.Marshal(list)
		return out
	}
	var one fields
	if json.Unmarshal(raw, &one) == nil && one != nil {
		rename(one)
		out, _ := json.Marshal(one)
		return out
	}
	return raw
}

// serveListTables leaves the replicas out of the list.
func (p *Proxy) serveListTables(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, b, err := p.exchange(r, body)
	if err != nil {
		backendDown(w, err)
		return
	}
	if resp.StatusCode == http.StatusOK {
		b = hideReplicas(b)
	}
	writeResponse(w, resp, b)
}

func hideReplicas(b []byte) []byte {
	f, err := parseFields(b)
	var names []string
	if err != nil || json.Unmarshal(f["TableNames"], &names) != nil {
		return b
	}
	kept := make([]string, 0, len(names))
	for _, n := range names {
		if !isReplica(n) {
			kept = append(kept, n)
		}
	}
	if len(kept) == len(names) {
		return b
	}
	f["TableNames"], _ = json.Marshal(kept)
	out, err := json.Marshal(f)
	if err != nil {
		return b
	}
	return out
}

func isReplica(table string) bool {
	return len(table) > len(ReplicaSuffix) && table[len(table)-len(ReplicaSuffix):] == ReplicaSuffix
}

// serveTableChange passes table administration through and keeps the
// replicas in step: a created, updated or deleted table's replica is built
// afresh on next need (a deleted one's removed now), and TTL settings are
// copied.
func (p *Proxy) serveTableChange(w http.ResponseWriter, r *http.Request, op string, body []byte) {
	resp, b, err := p.exchange(r, body)
	if err != nil {
		backendDown(w, err)
		return
	}
	if f, perr := parseFields(body); perr == nil && resp.StatusCode == http.StatusOK {
		p.tableChanged(op, f)
	}
	writeResponse(w, resp, b)
}

func (p *Proxy) tableChanged(op string, f fields) {
	table := f.str("TableName")
	if op == "UpdateTimeToLive" {
		p.replicaMu.Lock()
		st, ok := p.replicas[table]
		p.replicaMu.Unlock()
		if !ok {
			return // a replica built later copies the setting
		}
		f.setStr("TableName", table+ReplicaSuffix)
		p.background(func() {
			select {
			case <-st.done: // a build in progress may have copied the old setting
			case <-p.ctx.Done():
				return
			}
			if st.err != nil {
				return
			}
			// Already on: the build copied the new setting.
			if err := p.db.call(p.ctx, "UpdateTimeToLive", f, nil); err != nil && !isCode(err, "ValidationException") {
				p.log.Warn("ddbproxy: replica TTL", "table", table, "error", err.Error())
			}
		})
		return
	}
	p.schemas.invalidate(table)
	p.dropReplica(table, nil)
	if op == "DeleteTable" {
		p.background(func() {
			p.initMu.Lock() // not under a rebuild of a table of that name
			defer p.initMu.Unlock()
			_ = p.db.call(p.ctx, "DeleteTable", map[string]string{"TableName": table + ReplicaSuffix}, nil)
		})
	}
}

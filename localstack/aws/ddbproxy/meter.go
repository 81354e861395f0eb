package ddbproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Capacity returns the units each partition key consumed, and the
// ceilings; zero when Options.CapacityScale is 0.
func (p *Proxy) Capacity() CapacityStats {
	if p.cap == nil {
		return CapacityStats{Keys: []KeyCapacity{}}
	}
	return p.cap.stats()
}

// ResetCapacityCounts zeroes the units, peaks and throttles counted so
// far (a benchmark's setup from its measured part); the ceilings' buckets
// carry on.
func (p *Proxy) ResetCapacityCounts() {
	if p.cap != nil {
		p.cap.reset()
	}
}

// SuspendCeilings lifts every key's ceiling until resume is called: a
// scale model's setup writes its audience (100 times API Gateway's
// admission rate at a scale of 0.01 would take minutes) without being
// throttled. Units are still counted (ResetCapacityCounts zeroes them),
// and the buckets are not drawn on, so the ceilings hold again, full, on
// resume. Calls nest; resume runs once however often it is called.
func (p *Proxy) SuspendCeilings() (resume func()) {
	if p.cap == nil {
		return func() {}
	}
	return p.cap.suspend()
}

// metered are the operations that consume capacity.
func metered(op string) bool {
	switch op {
	case "GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems",
		"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems":
		return true
	}
	return false
}

// capacityPlan is what a request touches: one partition per item (a Query
// or Scan: one), each with a weight to split the request's units by.
type capacityPlan struct {
	write   bool
	parts   []partition
	weights []float64
	// entries locate a batch's items: table and place in its list.
	entries []batchEntry
}

type batchEntry struct {
	table string
	i     int
}

func (pl *capacityPlan) add(p partition, weight float64) {
	pl.parts = append(pl.parts, p)
	pl.weights = append(pl.weights, max(weight, 1))
}

// serveMetered holds op to its keys' ceilings, runs it, and charges what
// DynamoDB Local says it consumed to the keys it touched.
//
// Units are DynamoDB Local's ConsumedCapacity, asked for on every request
// (and left out of the answer when the client did not ask): it computes
// them as the developer guide's "DynamoDB read and write operations"
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html)
// documents, which this package's tests check: reads in 4 KB units of the
// whole item (projections do not reduce them), halved when eventually
// consistent, doubled in TransactGetItems; writes in 1 KB units of the
// larger of the item's before and after images, doubled in
// TransactWriteItems; Query and Scan by the bytes of the items read before
// any filter, rounded up to 4 KB; batches per item. What it leaves out,
// a conditional write whose condition fails (which still consumes write
// units, at least one), the proxy charges itself from the item's before
// image. A Query of a scaled key in a scale model is charged for the
// audience it stands for (queryUnits).
//
// The answer goes back as DynamoDB Local wrote it: the proxy reads only
// its ConsumedCapacity (and a scaled Query's Items), and splices that
// member out when the client did not ask for it. Only a batch the
// ceilings split is decoded and encoded again.
func (p *Proxy) serveMetered(w http.ResponseWriter, r *http.Request, op string, body []byte) {
	f, err := parseFields(body)
	var plan *capacityPlan
	if err == nil {
		plan, err = p.plan(r.Context(), op, f)
	}
	if err != nil {
		p.dispatch(w, r, op, body) // DynamoDB Local says what is wrong with it
		return
	}
	admitted := p.cap.admit(plan.parts, plan.write)
	refused := 0
	for _, ok := range admitted {
		if !ok {
			refused++
		}
	}
	var deferred json.RawMessage // a batch's refused entries
	if refused > 0 {
		switch op {
		case "TransactWriteItems", "TransactGetItems":
			p.transactionThrottled(w, admitted)
			return
		case "BatchWriteItem", "BatchGetItem":
			if refused < len(admitted) {
				if deferred, err = splitBatch(op, f, plan, admitted); err == nil {
					plan = plan.only(admitted)
					break
				}
			}
			fallthrough
		default:
			p.throughputExceeded(w, r, plan, admitted)
			return
		}
	}
	asked := wantsCapacity(f)
	switch {
	case deferred != nil: // the batch's admitted entries only
		if !asked {
			f.setStr("ReturnConsumedCapacity", "TOTAL")
		}
		if body, err = json.Marshal(f); err != nil {
			serviceError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
			return
		}
	case !asked:
		body = askCapacity(body)
	}
	rec := newRecorder()
	defer rec.free()
	p.dispatch(rec, r, op, body)
	out := rec.body.Bytes()
	changed := false
	if rec.status == http.StatusOK {
		p.chargeAnswer(op, f, plan, out)
		switch {
		case deferred != nil:
			out, changed = rewriteAnswer(out, asked, op, deferred), true
		case !asked:
			if m, ok := member(out, "ConsumedCapacity"); ok {
				out, changed = withoutMember(out, m), true
			}
		}
	} else if plan.write && len(plan.parts) == 1 && strings.Contains(rec.header.Get("X-Amzn-ErrorType")+string(out), "ConditionalCheckFailed") {
		p.chargeFailedCondition(r.Context(), op, f, plan.parts[0], out)
	}
	rec.send(w, out, changed)
}

// askCapacity is the request body with ReturnConsumedCapacity TOTAL, the
// rest of it as the client wrote it.
func askCapacity(body []byte) []byte {
	const total = `"TOTAL"`
	if m, ok := member(body, "ReturnConsumedCapacity"); ok {
		return withValue(body, m, []byte(total))
	}
	return withMember(body, "ReturnConsumedCapacity", []byte(total))
}

// only keeps the plan's admitted items.
func (pl *capacityPlan) only(admitted []bool) *capacityPlan {
	out := &capacityPlan{write: pl.write}
	for i, ok := range admitted {
		if ok {
			out.add(pl.parts[i], pl.weights[i])
		}
	}
	return out
}

// chargeAnswer splits the units of a successful answer over the plan's
// items by weight.
func (p *Proxy) chargeAnswer(op string, f fields, plan *capacityPlan, answer []byte) {
	units := consumedUnits(answer)
	if op == "Query" && len(plan.parts) == 1 {
		if scale := p.cap.modelScale(plan.parts[0]); scale > 0 {
			units = queryUnits(f, answer, scale, units)
		}
	}
	var sum float64
	for _, w := range plan.weights {
		sum += w
	}
	if op == "TransactWriteItems" || op == "TransactGetItems" {
		// DynamoDB prepares and commits every item of a transaction: two
		// units of its size each, a condition check too. DynamoDB Local
		// reports less for several small items (2 units for three).
		units = max(units, 2*sum)
	}
	for i, part := range plan.parts {
		u := units * plan.weights[i] / sum
		if plan.write {
			p.cap.charge(part, 0, u)
		} else {
			p.cap.charge(part, u, 0)
		}
	}
}

// queryUnits is what AWS would charge a Query of a scaled key for the
// audience slice it stands for: the items here stand for 1/scale times as
// many, so the bytes read are bytes/scale, charged in 4 KB units (at least
// one, as every Query is), halved when eventually consistent, and the
// model's ceiling is scale times AWS's:
//
//	units = max(1, ceil((bytes / scale) / 4 KB)) * scale
//
// DynamoDB Local's own figure rounds the small slice up to a whole unit,
// which weighs 1/scale times more against the scaled ceiling than the
// slice's share does on AWS. The bytes are the items of the answer, as
// DynamoDB counts them (itemSize); a projected or filtered Query returns
// less than it read, and keeps local, DynamoDB Local's figure.
func queryUnits(f fields, answer []byte, scale, local float64) float64 {
	for _, narrowed := range []string{"ProjectionExpression", "AttributesToGet", "FilterExpression", "QueryFilter"} {
		if _, ok := f[narrowed]; ok {
			return local
		}
	}
	if sel := f.str("Select"); sel != "" && sel != "ALL_ATTRIBUTES" {
		return local
	}
	m, ok := member(answer, "Items")
	if !ok {
		return local
	}
	var items []map[string]json.RawMessage
	if json.Unmarshal(answer[m.value:m.close], &items) != nil {
		return local
	}
	size := 0
	for _, it := range items {
		size += itemSize(it)
	}
	units := max(1, math.Ceil(float64(size)/scale/4096)) * scale
	if !f.flag("ConsistentRead") {
		units /= 2
	}
	return units
}

// consumedUnits sums ConsumedCapacity.CapacityUnits (one or a list),
// reading that member only.
func consumedUnits(answer []byte) float64 {
	m, ok := member(answer, "ConsumedCapacity")
	if !ok {
		return 0
	}
	raw := answer[m.value:m.close]
	type cc struct{ CapacityUnits float64 }
	var list []cc
	if json.Unmarshal(raw, &list) != nil {
		var one cc
		_ = json.Unmarshal(raw, &one)
		list = []cc{one}
	}
	var n float64
	for _, c := range list {
		n += c.CapacityUnits
	}
	return n
}

// rewriteAnswer drops the ConsumedCapacity the client did not ask for and
// adds a batch's refused entries to its unprocessed ones.
func rewriteAnswer(answer []byte, asked bool, op string, deferred json.RawMessage) []byte {
	f, err := parseFields(answer)
	if err != nil {
		return answer
	}
	if !asked {
		delete(f, "ConsumedCapacity")
	}
	if deferred != nil {
		member := "UnprocessedItems"
		if op == "BatchGetItem" {
			member = "UnprocessedKeys"
		}
		f[member] = mergeUnprocessed(op, f[member], deferred)
	}
	out, err := json.Marshal(f)
	if err != nil {
		return answer
	}
	return out
}

// chargeFailedCondition charges a single-item write whose condition failed:
// DynamoDB still consumes write units for the size of the existing item, at
// least one ("If a ConditionExpression evaluates to false, DynamoDB still
// consumes write capacity units from the table", read-write-operations.html
// above). The size comes from the answer's Item
// (ReturnValuesOnConditionCheckFailure ALL_OLD) or a consistent read.
func (p *Proxy) chargeFailedCondition(ctx context.Context, op string, f fields, part partition, answer []byte) {
	var e struct{ Item map[string]json.RawMessage }
	_ = json.Unmarshal(answer, &e)
	old := e.Item
	if old == nil {
		if k, err := p.writeKey(ctx, op, f); err == nil {
			var out struct{ Item map[string]json.RawMessage }
			if p.db.call(ctx, "GetItem", map[string]any{"TableName": k.table, "Key": k.raw, "ConsistentRead": true}, &out) == nil {
				old = out.Item
			}
		}
	}
	p.cap.charge(part, 0, max(1, float64((itemSize(old)+1023)/1024)))
}

// recorder keeps an answer to meter it before it goes out.
type recorder struct {
	header http.Header
	status int
	body   *bytes.Buffer
}

// answers are the recorders' buffers, reused: a Query page is up to 1 MB.
var answers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func newRecorder() *recorder {
	b := answers.Get().(*bytes.Buffer)
	b.Reset()
	return &recorder{header: http.Header{}, status: http.StatusOK, body: b}
}

// free returns the buffer, once the answer is sent.
func (rc *recorder) free() {
	if rc.body.Cap() <= 4<<20 {
		answers.Put(rc.body)
	}
	rc.body = nil
}

func (rc *recorder) Header() http.Header         { return rc.header }
func (rc *recorder) WriteHeader(status int)      { rc.status = status }
func (rc *recorder) Write(b []byte) (int, error) { return rc.body.Write(b) }

// send answers with body: the recorded headers as they are when unchanged
// (DynamoDB Local's checksum included), else with its length and checksum.
func (rc *recorder) send(w http.ResponseWriter, body []byte, changed bool) {
	h := w.Header()
	copyHeader(h, rc.header)
	if changed || h.Get(crc32Header) == "" {
		h.Set(crc32Header, strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(rc.status)
	_, _ = w.Write(body)
}

// plan finds the partitions op touches.
func (p *Proxy) plan(ctx context.Context, op string, f fields) (*capacityPlan, error) {
	pl := &capacityPlan{}
	table := f.str("TableName")
	switch op {
	case "GetItem", "UpdateItem", "DeleteItem", "PutItem":
		pl.write = op != "GetItem"
		member, weight := "Key", 1.0
		if op == "PutItem" {
			member = "Item"
		}
		var item map[string]json.RawMessage
		if err := json.Unmarshal(f[member], &item); err != nil {
			return nil, err
		}
		part, err := p.partitionOf(ctx, table, "", item)
		if err != nil {
			return nil, err
		}
		pl.add(part, weight)
	case "Query":
		part, err := p.queryPartition(ctx, f)
		if err != nil {
			return nil, err
		}
		pl.add(part, 1)
	case "Scan":
		pl.add(partition{table: table, index: f.str("IndexName"), key: "(scan)", id: "scan\x00" + table + "\x00" + f.str("IndexName"), scan: true}, 1)
	case "BatchGetItem":
		return pl, p.planBatchGet(ctx, f, pl)
	case "BatchWriteItem":
		pl.write = true
		return pl, p.planBatchWrite(ctx, f, pl)
	case "TransactGetItems", "TransactWriteItems":
		pl.write = op == "TransactWriteItems"
		return pl, p.planTransact(ctx, f, pl)
	}
	return pl, nil
}

// partitionOf is the partition of an item (or key) of table, or of its
// global index.
func (p *Proxy) partitionOf(ctx context.Context, table, index string, item map[string]json.RawMessage) (partition, error) {
	if table == "" {
		return partition{}, errBadKey
	}
	s, err := p.schemas.get(ctx, table)
	if err != nil {
		return partition{}, err
	}
	name := s.hash
	if index != "" {
		if name = s.indexHash[index]; name == "" {
			return partition{table: table, index: index, key: "(local index)", id: "lsi\x00" + table + "\x00" + index, scan: true}, nil
		}
	}
	raw, ok := item[name]
	if !ok {
		return partition{}, errBadKey
	}
	return partitionFor(table, index, raw)
}

func partitionFor(table, index string, raw json.RawMessage) (partition, error) {
	typ, v, err := keyValue(raw)
	if err != nil {
		return partition{}, err
	}
	return partition{table: table, index: index, key: v, id: table + "\x00" + index + "\x00" + string(typ) + v}, nil
}

var (
	andSplit   = regexp.MustCompile(`(?i)\s+and\s+`)
	equalsExpr = regexp.MustCompile(`^\(*\s*([#:]?[A-Za-z0-9_.]+)\s*=\s*([#:]?[A-Za-z0-9_.]+)\s*\)*$`)
)

// queryPartition finds a Query's partition key value in its
// KeyConditionExpression (or legacy KeyConditions): "pk = :v".
func (p *Proxy) queryPartition(ctx context.Context, f fields) (partition, error) {
	table, index := f.str("TableName"), f.str("IndexName")
	s, err := p.schemas.get(ctx, table)
	if err != nil {
		return partition{}, err
	}
	hash := s.hash
	if index != "" {
		if hash = s.indexHash[index]; hash == "" { // a local index shares the table's key
			hash = s.hash
			index = ""
		}
	}
	var names map[string]string
	var values map[string]json.RawMessage
	_ = json.Unmarshal(f["ExpressionAttributeNames"], &names)
	_ = json.Unmarshal(f["ExpressionAttributeValues"], &values)
	resolve := func(tok string) string {
		if n, ok := names[tok]; ok {
			return n
		}
		return tok
	}
	for _, clause := range andSplit.Split(f.str("KeyConditionExpression"), -1) {
		m := equalsExpr.FindStringSubmatch(strings.TrimSpace(clause))
		if m == nil {
			continue
		}
		for _, pair := range [][2]string{{m[1], m[2]}, {m[2], m[1]}} {
			if resolve(pair[0]) == hash && strings.HasPrefix(pair[1], ":") {
				if v, ok := values[pair[1]]; ok {
					return partitionFor(table, index, v)
				}
			}
		}
	}
	var legacy map[string]struct{ AttributeValueList []json.RawMessage }
	if json.Unmarshal(f["KeyConditions"], &legacy) == nil {
		if c, ok := legacy[hash]; ok && len(c.AttributeValueList) == 1 {
			return partitionFor(table, index, c.AttributeValueList[0])
		}
	}
	return partition{}, errors.New("ddbproxy: no partition key in the query")
}

func (p *Proxy) planBatchGet(ctx context.Context, f fields, pl *capacityPlan) error {
	var items map[string]struct{ Keys []map[string]json.RawMessage }
	if err := json.Unmarshal(f["RequestItems"], &items); err != nil {
		return err
	}
	for table, e := range items {
		for i, k := range e.Keys {
			part, err := p.partitionOf(ctx, table, "", k)
			if err != nil {
				return err
			}
			pl.add(part, 1)
			pl.entries = append(pl.entries, batchEntry{table, i})
		}
	}
	return nil
}

func (p *Proxy) planBatchWrite(ctx context.Context, f fields, pl *capacityPlan) error {
	var items map[string][]writeRequest
	if err := json.Unmarshal(f["RequestItems"], &items); err != nil {
		return err
	}
	for table, reqs := range items {
		for i, wr := range reqs {
			var part partition
			var err error
			weight := 1.0
			switch {
			case wr.PutRequest != nil:
				part, err = p.partitionOf(ctx, table, "", wr.PutRequest.Item)
				weight = float64((itemSize(wr.PutRequest.Item) + 1023) / 1024)
			case wr.DeleteRequest != nil:
				part, err = p.partitionOf(ctx, table, "", wr.DeleteRequest.Key)
			default:
				err = errBadKey
			}
			if err != nil {
				return err
			}
			pl.add(part, weight)
			pl.entries = append(pl.entries, batchEntry{table, i})
		}
	}
	return nil
}

// planTransact weighs each action by the item a Put writes (1 KB units):
// DynamoDB Local reports a transaction's units per table, not per item.
func (p *Proxy) planTransact(ctx context.Context, f fields, pl *capacityPlan) error {
	var actions []map[string]transactItem
	if err := json.Unmarshal(f["TransactItems"], &actions); err != nil {
		return err
	}
	for _, action := range actions {
		if len(action) != 1 {
			return errBadKey
		}
		for kind, it := range action {
			src, weight := it.Key, 1.0
			if kind == "Put" {
				src, weight = it.Item, float64((itemSize(it.Item)+1023)/1024)
			}
			part, err := p.partitionOf(ctx, it.TableName, "", src)
			if err != nil {
				return err
			}
			pl.add(part, weight)
		}
	}
	return nil
}

package ddbproxy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
)

// throughputType is the error DynamoDB answers a request over a
// partition's ceiling with, HTTP 400, naming the reason and the table (or
// index) in ThrottlingReasons, as the API reference documents
// (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_ThrottlingReason.html:
// reason is ResourceType+OperationType+LimitType, e.g.
// TableWriteKeyRangeThroughputExceeded for "the request rate directed at a
// specific partition key value"). The AWS SDKs retry it.
const (
	throughputType    = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
	throughputMessage = "Throughput exceeds the current capacity for one or more partition key values. Consider spreading your requests over more keys."
	// throttledItemMessage is a transaction item's CancellationReason
	// Message for Code ThrottlingError (API_TransactWriteItems.html).
	throttledItemMessage = "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly."
)

type throttlingReason struct {
	Reason   string `json:"reason"`
	Resource string `json:"resource"`
}

// throughputExceeded refuses a whole request: every refused item's
// partition is named once.
func (p *Proxy) throughputExceeded(w http.ResponseWriter, r *http.Request, plan *capacityPlan, admitted []bool) {
	region := requestRegion(r)
	var reasons []throttlingReason
	seen := map[throttlingReason]bool{}
	for i, ok := range admitted {
		if ok {
			continue
		}
		tr := throttlingReason{Reason: limitReason(plan.parts[i], plan.write), Resource: resourceARN(region, plan.parts[i])}
		if !seen[tr] {
			seen[tr] = true
			reasons = append(reasons, tr)
		}
	}
	body, _ := json.Marshal(struct {
		Type    string             `json:"__type"`
		Message string             `json:"message"`
		Reasons []throttlingReason `json:"ThrottlingReasons"`
	}{throughputType, throughputMessage, reasons})
	writeError(w, http.StatusBadRequest, throughputType, body)
}

func limitReason(part partition, write bool) string {
	res, kind := "Table", "Read"
	if part.index != "" {
		res = "Index"
	}
	if write {
		kind = "Write"
	}
	return res + kind + "KeyRangeThroughputExceeded"
}

// resourceARN names a table or index as DynamoDB does; the account is
// LocalStack's usual placeholder.
func resourceARN(region string, part partition) string {
	arn := "arn:aws:dynamodb:" + region + ":000000000000:table/" + part.table
	if part.index != "" {
		arn += "/index/" + part.index
	}
	return arn
}

var credentialScope = regexp.MustCompile(`Credential=[^/]+/\d{8}/([a-z0-9-]+)/dynamodb/`)

// requestRegion is the region the request was signed for (us-east-1 when
// it says none).
func requestRegion(r *http.Request) string {
	if m := credentialScope.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		return m[1]
	}
	return "us-east-1"
}

// transactionThrottled cancels a transaction one of whose items is on a
// key over its ceiling: ThrottlingError for those, None for the others.
func (p *Proxy) transactionThrottled(w http.ResponseWriter, admitted []bool) {
	reasons := make([]cancellationReason, len(admitted))
	codes := make([]string, len(admitted))
	for i, ok := range admitted {
		reasons[i] = cancellationReason{Code: "None"}
		if !ok {
			reasons[i] = cancellationReason{Code: "ThrottlingError", Message: throttledItemMessage}
		}
		codes[i] = reasons[i].Code
	}
	body, _ := json.Marshal(struct {
		Type    string               `json:"__type"`
		Reasons []cancellationReason `json:"CancellationReasons"`
		Message string               `json:"Message"`
	}{canceledType, reasons, "Transaction cancelled, please refer cancellation reasons for specific reasons [" + strings.Join(codes, ", ") + "]"})
	writeError(w, http.StatusBadRequest, canceledType, body)
}

// splitBatch keeps a batch's admitted entries in f and returns the others
// as its unprocessed ones (UnprocessedItems or UnprocessedKeys), as
// DynamoDB returns the items it throttled ("If DynamoDB returns any
// unprocessed items, you should retry the batch operation on those items";
// it fails the whole call only when none could be processed:
// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchWriteItem.html).
func splitBatch(op string, f fields, plan *capacityPlan, admitted []bool) (json.RawMessage, error) {
	if op == "BatchWriteItem" {
		var items map[string][]json.RawMessage
		if err := json.Unmarshal(f["RequestItems"], &items); err != nil {
			return nil, err
		}
		kept, left := map[string][]json.RawMessage{}, map[string][]json.RawMessage{}
		for n, e := range plan.entries {
			dst := kept
			if !admitted[n] {
				dst = left
			}
			dst[e.table] = append(dst[e.table], items[e.table][e.i])
		}
		var err error
		if f["RequestItems"], err = json.Marshal(kept); err != nil {
			return nil, err
		}
		return json.Marshal(left)
	}
	var items map[string]fields
	if err := json.Unmarshal(f["RequestItems"], &items); err != nil {
		return nil, err
	}
	keys := map[string][]json.RawMessage{}
	for table, e := range items {
		var ks []json.RawMessage
		if err := json.Unmarshal(e["Keys"], &ks); err != nil {
			return nil, err
		}
		keys[table] = ks
	}
	kept, left := map[string]fields{}, map[string]fields{}
	for n, e := range plan.entries {
		dst := kept
		if !admitted[n] {
			dst = left
		}
		entry := dst[e.table]
		if entry == nil {
			entry = fields{}
			for k, v := range items[e.table] {
				entry[k] = v
			}
			entry["Keys"] = json.RawMessage("[]")
			dst[e.table] = entry
		}
		var ks []json.RawMessage
		_ = json.Unmarshal(entry["Keys"], &ks)
		entry["Keys"], _ = json.Marshal(append(ks, keys[e.table][e.i]))
	}
	var err error
	if f["RequestItems"], err = json.Marshal(kept); err != nil {
		return nil, err
	}
	return json.Marshal(left)
}

// mergeUnprocessed adds the proxy's refused entries to DynamoDB Local's
// unprocessed ones.
func mergeUnprocessed(op string, existing, deferred json.RawMessage) json.RawMessage {
	if op == "BatchWriteItem" {
		var a, b map[string][]json.RawMessage
		_ = json.Unmarshal(existing, &a)
		_ = json.Unmarshal(deferred, &b)
		if a == nil {
			a = map[string][]json.RawMessage{}
		}
		for t, l := range b {
			a[t] = append(a[t], l...)
		}
		out, _ := json.Marshal(a)
		return out
	}
	var a, b map[string]fields
	_ = json.Unmarshal(existing, &a)
	_ = json.Unmarshal(deferred, &b)
	if a == nil {
		a = map[string]fields{}
	}
	for t, e := range b {
		cur, ok := a[t]
		if !ok {
			a[t] = e
			continue
		}
		var x, y []json.RawMessage
		_ = json.Unmarshal(cur["Keys"], &x)
		_ = json.Unmarshal(e["Keys"], &y)
		cur["Keys"], _ = json.Marshal(append(x, y...))
	}
	out, _ := json.Marshal(a)
	return out
}

// itemSize is an item's size as DynamoDB counts it: each attribute's name
// and value, in UTF-8 bytes (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html):
// a string its bytes, a binary its bytes, a number 1 byte per two
// significant digits plus 1, a Boolean or null 1, a list or map 3 plus 1
// per element, a set the sum of its elements.
func itemSize(item map[string]json.RawMessage) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

func valueSize(raw json.RawMessage) int {
	var av map[string]json.RawMessage
	if json.Unmarshal(raw, &av) != nil {
		return 0
	}
	n := 0
	for typ, v := range av {
		switch typ {
		case "S", "N", "B":
			var s string
			_ = json.Unmarshal(v, &s)
			n += scalarSize(typ, s)
		case "SS", "NS", "BS":
			var ss []string
			_ = json.Unmarshal(v, &ss)
			for _, s := range ss {
				n += scalarSize(typ[:1], s)
			}
		case "L":
			var l []json.RawMessage
			_ = json.Unmarshal(v, &l)
			n += 3
			for _, e := range l {
				n += 1 + valueSize(e)
			}
		case "M":
			var m map[string]json.RawMessage
			_ = json.Unmarshal(v, &m)
			n += 3
			for k, e := range m {
				n += len(k) + 1 + valueSize(e)
			}
		default: // BOOL, NULL
			n++
		}
	}
	return n
}

func scalarSize(typ, s string) int {
	switch typ {
	case "B":
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			return len(b)
		}
		return len(s)
	case "N":
		mant, _, _ := strings.Cut(strings.ToLower(s), "e")
		digits := strings.Trim(strings.NewReplacer("-", "", "+", "", ".", "").Replace(mant), "0")
		return (len(digits)+1)/2 + 1
	}
	return len(s)
}

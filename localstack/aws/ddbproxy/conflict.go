package ddbproxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"
)

// lockTable knows which items requests in flight are writing or reading
// transactionally, to answer as DynamoDB's transaction conflict handling
// documents:
//
//   - a TransactWriteItems touching an item another TransactWriteItems in
//     flight holds is cancelled (TransactionConflict for that item);
//   - a PutItem, UpdateItem or DeleteItem of such an item fails with
//     TransactionConflictException;
//   - a TransactGetItems reading an item a write in flight (transactional
//     or not) is changing is cancelled, whether the write came first or
//     arrives while the read is in flight.
//
// Anything else overlapping proceeds: DynamoDB Local runs it in some order.
type lockTable struct {
	mu    sync.Mutex
	items map[string]*holders
}

type holders struct {
	tx     int      // TransactWriteItems holding the item
	writes int      // single-item and batch writes in flight
	gets   []getRef // TransactGetItems in flight reading it
}

type getRef struct {
	g *txGet
	i int // the item's place in the TransactGetItems
}

// txGet is a TransactGetItems in flight: conflicted marks the items a
// write touched meanwhile.
type txGet struct {
	conflicted []bool // guarded by lockTable.mu
}

func newLockTable() *lockTable { return &lockTable{items: map[string]*holders{}} }

// heldItems counts the items transactions in flight (writes or reads) hold.
func (lt *lockTable) heldItems() int {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	n := 0
	for _, h := range lt.items {
		if h.tx > 0 || len(h.gets) > 0 {
			n++
		}
	}
	return n
}

func (lt *lockTable) holders(id string) *holders {
	h := lt.items[id]
	if h == nil {
		h = &holders{}
		lt.items[id] = h
	}
	return h
}

func (lt *lockTable) tidy(id string, h *holders) {
	if h.tx == 0 && h.writes == 0 && len(h.gets) == 0 {
		delete(lt.items, id)
	}
}

// conflictGets marks the transactional reads of h's item as conflicted:
// a write meets them.
func (h *holders) conflictGets() {
	for _, ref := range h.gets {
		ref.g.conflicted[ref.i] = true
	}
}

// lockTx holds ids for a TransactWriteItems, or reports which of them
// another one holds.
func (lt *lockTable) lockTx(ids []string) (conflicted []bool, ok bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for i, id := range ids {
		if h := lt.items[id]; h != nil && h.tx > 0 {
			if conflicted == nil {
				conflicted = make([]bool, len(ids))
			}
			conflicted[i] = true
		}
	}
	if conflicted != nil {
		return conflicted, false
	}
	for _, id := range ids {
		h := lt.holders(id)
		h.tx++
		h.conflictGets()
	}
	return nil, true
}

func (lt *lockTable) unlockTx(ids []string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for _, id := range ids {
		h := lt.items[id]
		h.tx--
		lt.tidy(id, h)
	}
}

// tryLockWrites marks ids as being written by a single-item write, or
// refuses (false) if a transaction holds any of them.
func (lt *lockTable) tryLockWrites(ids []string) bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for _, id := range ids {
		if h := lt.items[id]; h != nil && h.tx > 0 {
			return false
		}
	}
	lt.markWrites(ids)
	return true
}

// lockWrites marks ids as being written by a BatchWriteItem, which no
// transaction refuses.
func (lt *lockTable) lockWrites(ids []string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.markWrites(ids)
}

func (lt *lockTable) markWrites(ids []string) {
	for _, id := range ids {
		h := lt.holders(id)
		h.writes++
		h.conflictGets()
	}
}

func (lt *lockTable) unlockWrites(ids []string) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for _, id := range ids {
		h := lt.items[id]
		h.writes--
		lt.tidy(id, h)
	}
}

// lockGet registers a TransactGetItems reading ids, or reports which of
// them a write in flight is changing.
func (lt *lockTable) lockGet(ids []string) (g *txGet, conflicted []bool, ok bool) {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for i, id := range ids {
		if h := lt.items[id]; h != nil && (h.tx > 0 || h.writes > 0) {
			if conflicted == nil {
				conflicted = make([]bool, len(ids))
			}
			conflicted[i] = true
		}
	}
	if conflicted != nil {
		return nil, conflicted, false
	}
	g = &txGet{conflicted: make([]bool, len(ids))}
	for i, id := range ids {
		h := lt.holders(id)
		h.gets = append(h.gets, getRef{g: g, i: i})
	}
	return g, nil, true
}

// unlockGet ends g and reports which of its items a write touched while it
// was in flight (nil if none).
func (lt *lockTable) unlockGet(g *txGet, ids []string) []bool {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	for _, id := range ids {
		h := lt.items[id]
		kept := h.gets[:0]
		for _, ref := range h.gets {
			if ref.g != g {
				kept = append(kept, ref)
			}
		}
		clear(h.gets[len(kept):])
		h.gets = kept
		lt.tidy(id, h)
	}
	for _, c := range g.conflicted {
		if c {
			return g.conflicted
		}
	}
	return nil
}

const (
	canceledType    = "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
	conflictType    = "com.amazonaws.dynamodb.v20120810#TransactionConflictException"
	conflictMessage = "Transaction is ongoing for the item"
)

// transactionConflict answers a single-item write to an item a transaction
// holds.
func (p *Proxy) transactionConflict(w http.ResponseWriter) {
	p.conflicts.Add(1)
	serviceError(w, http.StatusBadRequest, conflictType, conflictMessage)
}

type cancellationReason struct {
	Code    string `json:"Code"`
	Message string `json:"Message,omitempty"` // DynamoDB leaves it out for None
}

// transactionCanceled answers a transaction cancelled for conflicts, one
// reason per item in request order, as DynamoDB does.
func (p *Proxy) transactionCanceled(w http.ResponseWriter, conflicted []bool) {
	p.conflicts.Add(1)
	reasons := make([]cancellationReason, len(conflicted))
	codes := make([]string, len(conflicted))
	for i, c := range conflicted {
		reasons[i] = cancellationReason{Code: "None"}
		if c {
			reasons[i] = cancellationReason{Code: "TransactionConflict", Message: conflictMessage}
		}
		codes[i] = reasons[i].Code
	}
	body, _ := json.Marshal(struct {
		Type    string               `json:"__type"`
		Reasons []cancellationReason `json:"CancellationReasons"`
		Message string               `json:"Message"`
	}{
		Type:    canceledType,
		Reasons: reasons,
		Message: "Transaction cancelled, please refer cancellation reasons for specific reasons [" + strings.Join(codes, ", ") + "]",
	})
	writeError(w, http.StatusBadRequest, canceledType, body)
}

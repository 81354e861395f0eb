package storetest

import (
	"context"
	"sort"
	"sync"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// KeyLoad counts, per partition key, the writes and reads a client sends
// to DynamoDB (whether they succeed or are refused: a refused write
// consumes capacity too). A transaction's actions count twice, as
// DynamoDB charges them. It sees the requests, not the table, so a test
// can tell which keys a workload makes hot.
type KeyLoad struct {
	mu     sync.Mutex
	writes map[string]int
	reads  map[string]int
}

// NewKeyLoad returns an empty KeyLoad.
func NewKeyLoad() *KeyLoad {
	return &KeyLoad{writes: map[string]int{}, reads: map[string]int{}}
}

// Option records the requests of the client it configures into k: pass it
// to Client.
func (k *KeyLoad) Option() func(*dynamodb.Options) {
	return func(o *dynamodb.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("storetest.KeyLoad",
				func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
					k.record(in.Parameters)
					return next.HandleInitialize(ctx, in)
				}), middleware.After)
		})
	}
}

func (k *KeyLoad) record(params any) {
	k.mu.Lock()
	defer k.mu.Unlock()
	w := func(key map[string]types.AttributeValue, n int) { k.writes[pkOf(key)] += n }
	switch in := params.(type) {
	case *dynamodb.PutItemInput:
		w(in.Item, 1)
	case *dynamodb.UpdateItemInput:
		w(in.Key, 1)
	case *dynamodb.DeleteItemInput:
		w(in.Key, 1)
	case *dynamodb.BatchWriteItemInput:
		for _, reqs := range in.RequestItems {
			for _, r := range reqs {
				if r.PutRequest != nil {
					w(r.PutRequest.Item, 1)
				} else if r.DeleteRequest != nil {
					w(r.DeleteRequest.Key, 1)
				}
			}
		}
	case *dynamodb.TransactWriteItemsInput:
		for _, it := range in.TransactItems {
			switch {
			case it.Put != nil:
				w(it.Put.Item, 2)
			case it.Update != nil:
				w(it.Update.Key, 2)
			case it.Delete != nil:
				w(it.Delete.Key, 2)
			case it.ConditionCheck != nil:
				w(it.ConditionCheck.Key, 2)
			}
		}
	case *dynamodb.GetItemInput:
		k.reads[pkOf(in.Key)]++
	case *dynamodb.QueryInput:
		if v, ok := in.ExpressionAttributeValues[":pk"].(*types.AttributeValueMemberS); ok {
			k.reads[v.Value]++
		}
	}
}

func pkOf(item map[string]types.AttributeValue) string {
	if v, ok := item["pk"].(*types.AttributeValueMemberS); ok {
		return v.Value
	}
	return ""
}

// Writes returns the write units counted per partition key.
func (k *KeyLoad) Writes() map[string]int { return k.copyOf(k.writes) }

// Reads returns the read requests counted per partition key.
func (k *KeyLoad) Reads() map[string]int { return k.copyOf(k.reads) }

func (k *KeyLoad) copyOf(m map[string]int) map[string]int {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]int, len(m))
	for key, n := range m {
		out[key] = n
	}
	return out
}

// Hottest returns the keys of m with the most counted, most first, and
// their counts.
func Hottest(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] || m[keys[i]] == m[keys[j]] && keys[i] < keys[j] })
	return keys
}

package ddbproxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// BenchmarkMeteredQuery is what metering costs the proxy per request: a
// Query of a 1,000-item page of ~100 B subscriber-like items (the
// broadcast function's read, ~130 KB of answer), consistent with and
// without ReturnConsumedCapacity (the proxy asks for it either way, and
// takes it out when the client did not) and eventually consistent (served
// by the replica, its table named back), through a proxy that streams (no
// metering) and one that meters. The client sends raw JSON and discards
// the answer, so B/op and allocs/op are nearly all the proxy's.
func BenchmarkMeteredQuery(b *testing.B) {
	direct := storetest.Client(b)
	table := storetest.NewTable(b, direct)
	ctx := context.Background()
	var reqs []types.WriteRequest
	for i := range 1000 {
		reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: item("P#bench.>", fmt.Sprintf("Sk%013d=", i), "{\"sub\":\"u1\",\"type\":\"user\",\"topics\":[\"bench.>\"]}")}})
		if len(reqs) == 25 {
			_, err := direct.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
			require.NoError(b, err)
			reqs = nil
		}
	}
	for _, bc := range []struct {
		name string
		opts ddbproxy.Options
	}{
		{"streamed", ddbproxy.Options{ReadLag: 100 * time.Millisecond, Conflicts: true}},
		{"metered", ddbproxy.Options{ReadLag: 100 * time.Millisecond, Conflicts: true, CapacityScale: 1}},
	} {
		for _, req := range []struct{ name, consistent, capacity string }{
			{"consistent/TOTAL", "true", "TOTAL"},
			{"consistent/NONE", "true", "NONE"},
			{"eventual/TOTAL", "false", "TOTAL"},
		} {
			b.Run(bc.name+"/"+req.name, func(b *testing.B) {
				bc.opts.Backend = storetest.Endpoint(b)
				p, err := ddbproxy.New(bc.opts)
				require.NoError(b, err)
				defer p.Close()
				srv := httptest.NewServer(p)
				defer srv.Close()
				body := fmt.Sprintf(`{"TableName":%q,"ConsistentRead":%s,"KeyConditionExpression":"pk = :pk",`+
					`"ExpressionAttributeValues":{":pk":{"S":"P#bench.>"}},"ReturnConsumedCapacity":%q}`, table, req.consistent, req.capacity)
				query := func() int {
					r, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(body))
					require.NoError(b, err)
					r.Header.Set("X-Amz-Target", "DynamoDB_20120810.Query")
					r.Header.Set("Content-Type", "application/x-amz-json-1.0")
					r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=bench/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
					resp, err := srv.Client().Do(r)
					require.NoError(b, err)
					defer resp.Body.Close()
					n, _ := io.Copy(io.Discard, resp.Body)
					require.Equal(b, http.StatusOK, resp.StatusCode)
					return int(n)
				}
				if req.consistent == "false" {
					query()           // the replica is built on the first eventual read
					_ = p.Settle(ctx) // and filled
				}
				if n := query(); n < 100_000 {
					b.Fatalf("answer of %d bytes", n)
				}
				b.ReportAllocs()
				b.ResetTimer()
				cpu := cpuTime(b)
				for b.Loop() {
					query()
				}
				b.ReportMetric(float64((cpuTime(b)-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the CPU this process has used (user and system): the proxy's
// and the client's, not DynamoDB Local's.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	require.NoError(b, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

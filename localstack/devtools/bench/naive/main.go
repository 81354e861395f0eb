// Command naive is the fan-out the AWS samples (simple-websockets-chat-app)
// teach, for make bench to compare against: Scan the table for the
// subscribers, then post to every one of them at once (Promise.all), with
// the SDK's default retries and, as the JavaScript SDK's default HTTP agent
// allows, 50 sockets. It reads every item of the table on every event.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	mgmttypes "github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// sockets is the JavaScript SDK's default maxSockets per host.
const sockets = 50

// Result is what one event cost.
type Result struct {
	Scanned   int     `json:"scanned"`
	Audience  int     `json:"audience"`
	Delivered int64   `json:"delivered"`
	Gone      int64   `json:"gone"`
	Failed    int64   `json:"failed"`
	Error     string  `json:"error,omitempty"`
	Calls     int64   `json:"calls"`
	Read      float64 `json:"read_capacity"`
	Write     float64 `json:"write_capacity"`
}

type counting struct {
	next  http.RoundTripper
	calls *atomic.Int64
}

func (c counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.calls.Add(1)
	return c.next.RoundTrip(r)
}

type handler struct {
	db    *dynamodb.Client
	mgmt  *apigatewaymanagementapi.Client
	table string
	calls *atomic.Int64
}

func (h handler) handle(ctx context.Context, ev events.CloudWatchEvent) (Result, error) {
	var d struct {
		Topic   string          `json:"topic"`
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		return Result{}, err
	}
	var r Result
	var ids []string
	var keys []map[string]types.AttributeValue
	// The topic's subscriber entries on every level of wsgate's layout:
	// P#<topic>, and P#<topic> <level> <bucket> (store/layout.go).
	in := &dynamodb.ScanInput{
		TableName:        aws.String(h.table),
		FilterExpression: aws.String("pk = :p OR begins_with(pk, :lp)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":p": &types.AttributeValueMemberS{Value: "P#" + d.Topic}, ":lp": &types.AttributeValueMemberS{Value: "P#" + d.Topic + " "},
		},
		ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
	}
	for {
		out, err := h.db.Scan(ctx, in)
		if err != nil {
			return r, err
		}
		r.Scanned += int(out.ScannedCount)
		if out.ConsumedCapacity != nil {
			r.Read += aws.ToFloat64(out.ConsumedCapacity.CapacityUnits)
		}
		for _, it := range out.Items {
			sk := it["sk"].(*types.AttributeValueMemberS).Value
			// The sort key is <hash, 16 hex>#<connection id>.
			if len(sk) > 17 && sk[16] == '#' {
				ids = append(ids, sk[17:])
			} else {
				ids = append(ids, sk)
			}
			keys = append(keys, map[string]types.AttributeValue{"pk": it["pk"], "sk": it["sk"]})
		}
		if out.LastEvaluatedKey == nil {
			break
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
	r.Audience = len(ids)
	h.calls.Store(0)
	var wg sync.WaitGroup
	var delivered, gone, failed atomic.Int64
	var mu sync.Mutex
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.mgmt.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(id), Data: d.Payload})
			var goneErr *mgmttypes.GoneException
			switch {
			case err == nil:
				delivered.Add(1)
			case errors.As(err, &goneErr):
				gone.Add(1)
				out, err := h.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{
					TableName: aws.String(h.table), ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
					Key: keys[i],
				})
				if err == nil && out.ConsumedCapacity != nil {
					mu.Lock()
					r.Write += aws.ToFloat64(out.ConsumedCapacity.CapacityUnits)
					mu.Unlock()
				}
			default:
				failed.Add(1)
				mu.Lock()
				if r.Error == "" {
					r.Error = err.Error()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.Delivered, r.Gone, r.Failed = delivered.Load(), gone.Load(), failed.Load()
	r.Calls = h.calls.Load()
	return r, nil
}

func main() {
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	calls := &atomic.Int64{}
	endpoint := strings.TrimSuffix(os.Getenv("AWS_ENDPOINT_URL"), "/") + "/" + os.Getenv("WSGATE_STAGE")
	if e := os.Getenv("WSGATE_MANAGEMENT_ENDPOINT"); e != "" {
		endpoint = e
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxConnsPerHost = sockets
	transport.MaxIdleConnsPerHost = sockets
	h := handler{
		db:    dynamodb.NewFromConfig(cfg),
		table: os.Getenv("WSGATE_TABLE"),
		calls: calls,
		mgmt: apigatewaymanagementapi.NewFromConfig(cfg, func(o *apigatewaymanagementapi.Options) {
			o.BaseEndpoint = aws.String(endpoint)
			o.HTTPClient = &http.Client{Transport: counting{next: transport, calls: calls}}
		}),
	}
	lambda.Start(h.handle)
}

package ddbproxy_test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

// sized is an item of pk whose size is n bytes as DynamoDB counts it
// (names and values: "pk"+pk, "sk"+"s", "v"+padding).
func sized(pk string, n int) map[string]types.AttributeValue {
	return item(pk, "s", strings.Repeat("x", n-len("pk")-len(pk)-len("sk")-len("s")-len("v")))
}

// keyLoad is pk's line in the proxy's capacity snapshot.
func keyLoad(t *testing.T, p *ddbproxy.Proxy, table, pk string) ddbproxy.KeyCapacity {
	t.Helper()
	for _, k := range p.Capacity().Keys {
		if k.Table == table && k.Key == pk {
			return k
		}
	}
	t.Fatalf("no capacity line for %s/%s in %+v", table, pk, p.Capacity().Keys)
	return ddbproxy.KeyCapacity{}
}

func TestCapacity_UnitsAsDynamoDBDocuments(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{CapacityScale: -1}) // count only
	ctx := context.Background()
	tb := aws.String(f.table)

	// A 1.5 KB put is 2 write units; in a transaction 4.
	_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized("put", 1536)})
	require.NoError(t, err)
	assert.InDelta(t, 2, keyLoad(t, f.p, f.table, "put").WriteUnits, 1e-9, "PutItem 1.5 KB")
	_, err = f.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: tb, Item: sized("tx", 1536)}},
	}})
	require.NoError(t, err)
	assert.InDelta(t, 4, keyLoad(t, f.p, f.table, "tx").WriteUnits, 1e-9, "TransactWriteItems 1.5 KB")

	// A 3.5 KB item: 1 read unit consistently, 0.5 eventually, 2 in a transaction.
	_, err = f.direct.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized("read", 3584)})
	require.NoError(t, err)
	_, err = f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tb, Key: key("read", "s"), ConsistentRead: aws.Bool(true)})
	require.NoError(t, err)
	assert.InDelta(t, 1, keyLoad(t, f.p, f.table, "read").ReadUnits, 1e-9, "consistent GetItem 3.5 KB")
	_, err = f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tb, Key: key("read", "s"), ProjectionExpression: aws.String("pk")})
	require.NoError(t, err)
	assert.InDelta(t, 1.5, keyLoad(t, f.p, f.table, "read").ReadUnits, 1e-9, "eventually consistent GetItem 3.5 KB, projected: the whole item counts")
	_, err = f.db.TransactGetItems(ctx, &dynamodb.TransactGetItemsInput{TransactItems: []types.TransactGetItem{{Get: &types.Get{TableName: tb, Key: key("read", "s")}}}})
	require.NoError(t, err)
	assert.InDelta(t, 3.5, keyLoad(t, f.p, f.table, "read").ReadUnits, 1e-9, "TransactGetItems 3.5 KB")

	// An update is charged the larger image: 3.5 KB before, small after.
	_, err = f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: tb, Key: key("read", "s"),
		UpdateExpression: aws.String("SET v = :v"), ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "y"}}})
	require.NoError(t, err)
	assert.InDelta(t, 4, keyLoad(t, f.p, f.table, "read").WriteUnits, 1e-9, "UpdateItem shrinking a 3.5 KB item")

	// A Query reads three 1.5 KB items (4.5 KB: 2 units), filtered out or not.
	for _, sk := range []string{"a", "b", "c"} {
		it := sized("q", 1536)
		it["sk"] = &types.AttributeValueMemberS{Value: sk}
		_, err = f.direct.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: it})
		require.NoError(t, err)
	}
	out, err := f.db.Query(ctx, &dynamodb.QueryInput{TableName: tb, ConsistentRead: aws.Bool(true),
		KeyConditionExpression: aws.String("#k = :pk"), FilterExpression: aws.String("v = :none"),
		ExpressionAttributeNames: map[string]string{"#k": "pk"},
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: "q"}, ":none": &types.AttributeValueMemberS{Value: "none"}}})
	require.NoError(t, err)
	assert.Empty(t, out.Items)
	assert.Nil(t, out.ConsumedCapacity, "not asked for: left out of the answer")
	assert.InDelta(t, 2, keyLoad(t, f.p, f.table, "q").ReadUnits, 1e-9, "Query of 4.5 KB, all filtered out")

	// A conditional write whose condition fails still consumes write units.
	_, err = f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized("put", 100), ConditionExpression: aws.String("attribute_not_exists(pk)")})
	var ccf *types.ConditionalCheckFailedException
	require.ErrorAs(t, err, &ccf)
	assert.InDelta(t, 4, keyLoad(t, f.p, f.table, "put").WriteUnits, 1e-9, "a failed condition on a 1.5 KB item: 2 more")

	st := f.p.Capacity()
	assert.Zero(t, st.Scale, "no ceilings")
	assert.Zero(t, st.Throttled)
	assert.InDelta(t, 2+4+4+2, st.WriteUnits, 1e-9)
	assert.InDelta(t, 3.5+2, st.ReadUnits, 1e-9)
}

// noRetries is a client through the proxy that makes one attempt per call.
func (f *fixture) noRetries() *dynamodb.Client {
	return dynamolocal.Client(f.url, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 })
}

func TestCapacity_HotKeyIsThrottledAsDynamoDBDoes(t *testing.T) {
	t.Parallel()
	// 0.001 of AWS's ceilings: 1 write unit a second per key.
	f := newFixture(t, ddbproxy.Options{CapacityScale: 0.001})
	ctx := context.Background()
	db := f.noRetries()
	tb := aws.String(f.table)
	put := func(pk string) error {
		_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized(pk, 1536)}) // 2 units
		return err
	}
	require.NoError(t, put("hot"), "a full bucket takes a request larger than what is left")
	err := put("hot")
	var pte *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, err, &pte)
	require.Len(t, pte.ThrottlingReasons, 1)
	assert.Equal(t, "TableWriteKeyRangeThroughputExceeded", aws.ToString(pte.ThrottlingReasons[0].Reason))
	assert.Equal(t, "arn:aws:dynamodb:us-east-1:000000000000:table/"+f.table, aws.ToString(pte.ThrottlingReasons[0].Resource))
	require.NoError(t, put("cold"), "another key is unaffected")

	// Reads of the hot key have their own ceiling (3 units a second here).
	_, err = db.GetItem(ctx, &dynamodb.GetItemInput{TableName: tb, Key: key("hot", "s")})
	require.NoError(t, err)

	_, err = db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: tb, Item: item("other", "s", "1")}},
		{Put: &types.Put{TableName: tb, Item: item("hot", "t", "1")}},
	}})
	requireCanceled(t, err, "None", "ThrottlingError")

	bw, err := db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{f.table: {
		{PutRequest: &types.PutRequest{Item: item("hot", "b", "1")}},
		{PutRequest: &types.PutRequest{Item: item("batch", "b", "1")}},
	}}})
	require.NoError(t, err, "a batch with some items over the ceiling succeeds")
	require.Len(t, bw.UnprocessedItems[f.table], 1)
	assert.Equal(t, "hot", str(bw.UnprocessedItems[f.table][0].PutRequest.Item, "pk"))
	got, err := f.direct.GetItem(ctx, &dynamodb.GetItemInput{TableName: tb, Key: key("batch", "b"), ConsistentRead: aws.Bool(true)})
	require.NoError(t, err)
	assert.NotNil(t, got.Item, "the batch's other item was written")
	_, err = db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{f.table: {
		{PutRequest: &types.PutRequest{Item: item("hot", "c", "1")}},
	}}})
	require.ErrorAs(t, err, &pte, "a batch with every item over the ceiling fails")

	st := f.p.Capacity()
	assert.InDelta(t, 3, st.ReadCeiling, 1e-9)
	assert.InDelta(t, 1, st.WriteCeiling, 1e-9)
	assert.EqualValues(t, 4, st.Throttled)
	hot := keyLoad(t, f.p, f.table, "hot")
	assert.EqualValues(t, 4, hot.Throttled)
	assert.InDelta(t, 2, hot.PeakWrite, 1e-9)
	assert.Equal(t, "hot", st.Keys[0].Key, "the hottest key first")

	// The bucket refills at the ceiling's rate: 2 units overdrawn from 1
	// take a second to come back above zero.
	time.Sleep(1100 * time.Millisecond)
	require.NoError(t, put("hot"))
}

func TestCapacity_ScaleDividesTheCeilings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scale    float64
		accepted int // 1 KB puts in a row
	}{{0.001, 1}, {0.003, 3}} {
		f := newFixture(t, ddbproxy.Options{CapacityScale: tc.scale})
		db := f.noRetries()
		n := 0
		for i := 0; i < 10; i++ {
			_, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: sized("k", 1024)})
			if err != nil {
				var pte *types.ProvisionedThroughputExceededException
				require.ErrorAs(t, err, &pte)
				break
			}
			n++
		}
		// A bucket above zero takes a request: the refill during the
		// calls may let one more in.
		assert.GreaterOrEqual(t, n, tc.accepted, "scale %v", tc.scale)
		assert.LessOrEqual(t, n, tc.accepted+1, "scale %v", tc.scale)
		assert.InDelta(t, 1000*tc.scale, f.p.Capacity().WriteCeiling, 1e-9)
	}
}

func TestCapacity_SDKRetriesThrottlesItself(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{CapacityScale: 0.001})
	ctx := context.Background()
	tb := aws.String(f.table)
	// The SDK's standard retryer: 3 attempts, jittered backoff (up to 1 s,
	// then 2 s). The bucket is back above zero a second after the overdraw.
	_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized("hot", 1536)})
	require.NoError(t, err)
	for {
		_, err = f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized("hot", 1536)})
		var pte *types.ProvisionedThroughputExceededException
		if !errors.As(err, &pte) {
			break // a short backoff draw may leave all three attempts throttled: try again
		}
	}
	require.NoError(t, err)
	assert.Positive(t, f.p.Capacity().Throttled, "the SDK's retries met the ceiling")
}

func TestCapacity_OffByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{})
	f.put(t, "a", "1")
	st := f.p.Capacity()
	assert.Zero(t, st.WriteUnits)
	assert.Empty(t, st.Keys)
	_, err := ddbproxy.New(ddbproxy.Options{Backend: "http://127.0.0.1:1", CapacityScale: posInf()})
	assert.Error(t, err)
}

func posInf() float64 { var z float64; return 1 / z }

// A reset zeroes the counts, not the ceiling: a key over it stays throttled.
func TestCapacity_ResetZeroesTheCountsButNotTheCeiling(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{CapacityScale: 0.001})
	db := f.noRetries()
	ctx := context.Background()
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: sized("k", 1536)})
	require.NoError(t, err)
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: sized("k", 1024)})
	var pte *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, err, &pte, "one write unit a second: the second put is over")
	require.Positive(t, f.p.Capacity().WriteUnits)

	f.p.ResetCapacityCounts()
	c := f.p.Capacity()
	assert.Zero(t, c.WriteUnits)
	assert.Zero(t, c.Throttled)
	for _, k := range c.Keys {
		assert.Zero(t, k.WriteUnits+k.PeakWrite+float64(k.Throttled), "key %s", k.Key)
	}
	_, err = db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: sized("k", 1024)})
	require.ErrorAs(t, err, &pte, "the bucket is still overdrawn")
	assert.Equal(t, int64(1), f.p.Capacity().Throttled)
}

// rawQuery posts a Query as raw JSON to url and returns the answer's body
// and checksum header.
func rawQuery(t *testing.T, url, body string) ([]byte, string) {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	r.Header.Set("X-Amz-Target", "DynamoDB_20120810.Query")
	r.Header.Set("Content-Type", "application/x-amz-json-1.0")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=t/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return b, resp.Header.Get("X-Amz-Crc32")
}

// Metering reads an answer and passes it on as DynamoDB Local wrote it:
// byte for byte when the client asked for its capacity, less only the
// ConsumedCapacity member when it did not (the proxy asks for it either
// way), with a checksum of what is sent.
func TestCapacity_AnswersPassThroughUnchanged(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{CapacityScale: 1})
	for _, sk := range []string{"a", "b", "c"} {
		_, err := f.direct.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: item("q", sk, `{"x":[1,"}"]}`)})
		require.NoError(t, err)
	}
	query := func(capacity string) string {
		return fmt.Sprintf(`{"TableName":%q,"ConsistentRead":true,"KeyConditionExpression":"pk = :pk","ExpressionAttributeValues":{":pk":{"S":"q"}}%s}`, f.table, capacity)
	}
	direct := storetest.Endpoint(t)
	for _, capacity := range []string{`,"ReturnConsumedCapacity":"TOTAL"`, `,"ReturnConsumedCapacity":"NONE"`, ``} {
		want, _ := rawQuery(t, direct, query(capacity))
		got, crc := rawQuery(t, f.url, query(capacity))
		assert.Equal(t, string(want), string(got), capacity)
		assert.Equal(t, strconv.FormatUint(uint64(crc32.ChecksumIEEE(got)), 10), crc, capacity)
	}
	assert.InDelta(t, 3, keyLoad(t, f.p, f.table, "q").ReadUnits, 1e-9, "each query charged, asked or not")
}

// Only the keys whose load grows with the audience are scaled: the others
// keep AWS's ceilings, as the model stands for a larger audience, not
// more events.
func TestCapacity_OnlyScaledKeysHaveTheScaledCeilings(t *testing.T) {
	t.Parallel()
	// 0.001: 1 write unit a second on a scaled key.
	f := newFixture(t, ddbproxy.Options{CapacityScale: 0.001, ScaledKeys: func(pk string) bool { return strings.HasPrefix(pk, "P#") }})
	db := f.noRetries()
	put := func(pk string) error {
		_, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: sized(pk, 1024)})
		return err
	}
	for i := range 20 {
		require.NoError(t, put("E#event"), "an event's own key keeps AWS's 1,000 units a second (put %d)", i)
	}
	require.NoError(t, put("P#pattern"))
	require.NoError(t, put("P#pattern"), "the bucket was full: one more while it is above zero")
	var pte *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, put("P#pattern"), &pte, "a subscriber key is held to a thousandth")
	e, p := keyLoad(t, f.p, f.table, "E#event"), keyLoad(t, f.p, f.table, "P#pattern")
	assert.False(t, e.Scaled)
	assert.True(t, p.Scaled)
	assert.Equal(t, "P#pattern", f.p.Capacity().Keys[0].Key, "heat is the share of the key's own ceiling")
}

// A Query of a scaled key is charged what AWS charges the audience slice
// it stands for, not DynamoDB's 1-unit minimum on the small slice.
func TestCapacity_QueryOfAScaledKeyIsChargedForTheSliceItStandsFor(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{CapacityScale: 0.01, ReadLag: 50 * time.Millisecond, ScaledKeys: func(pk string) bool { return strings.HasPrefix(pk, "P#") }})
	ctx := context.Background()
	resume := f.p.SuspendCeilings()
	for _, pk := range []string{"P#audience", "T#topic"} {
		for i := range 10 { // ten ~100 B items under each key, written through the proxy (to its replica too)
			it := item(pk, fmt.Sprint(i), strings.Repeat("x", 80))
			_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: it})
			require.NoError(t, err)
		}
	}
	resume()
	f.p.ResetCapacityCounts()
	require.NoError(t, f.p.Settle(ctx))
	query := func(pk string, consistent bool) {
		out, err := f.db.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(consistent),
			KeyConditionExpression:    aws.String("pk = :pk"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: pk}}})
		require.NoError(t, err)
		require.NotEmpty(t, out.Items)
	}
	// ~1 KB read: at 0.01 it stands for ~100 KB, 25 units on AWS, 0.25 at
	// the model's scale, where DynamoDB Local charges 1.
	query("P#audience", true)
	var size int
	out, err := f.direct.Query(ctx, &dynamodb.QueryInput{TableName: aws.String(f.table), ConsistentRead: aws.Bool(true),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: "P#audience"}}})
	require.NoError(t, err)
	for _, it := range out.Items {
		for name, v := range it {
			size += len(name) + len(v.(*types.AttributeValueMemberS).Value)
		}
	}
	want := math.Ceil(float64(size)/0.01/4096) * 0.01
	assert.InDelta(t, want, keyLoad(t, f.p, f.table, "P#audience").ReadUnits, 1e-9, "consistent: %d B", size)
	query("P#audience", false)
	assert.InDelta(t, want*1.5, keyLoad(t, f.p, f.table, "P#audience").ReadUnits, 1e-9, "eventually consistent: half")
	query("T#topic", true)
	assert.InDelta(t, 1, keyLoad(t, f.p, f.table, "T#topic").ReadUnits, 1e-9, "a key that is not scaled: DynamoDB's own units")
}

// Setup writes with the ceilings suspended are counted, never refused,
// and do not overdraw the ceilings that hold again after.
func TestCapacity_SuspendedCeilingsCountButNeverRefuse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{CapacityScale: 0.001}) // 1 write unit a second per key
	db := f.noRetries()
	put := func() error {
		_, err := db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: sized("k", 1024)})
		return err
	}
	resume := f.p.SuspendCeilings()
	for i := range 10 {
		require.NoError(t, put(), "put %d while suspended", i)
	}
	assert.InDelta(t, 10, keyLoad(t, f.p, f.table, "k").WriteUnits, 1e-9, "counted")
	resume()
	resume() // once only
	require.NoError(t, put(), "the bucket was not drawn on while suspended")
	require.NoError(t, put())
	var pte *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, put(), &pte, "the ceiling holds again")
}

// Every item of a TransactWriteItems costs two writes of its size, a
// condition check too (DynamoDB prepares and commits each item); DynamoDB
// Local reports fewer for a transaction of several small items (2 units for
// three), which made every subscribe look a third as costly as on AWS.
func TestCapacity_EveryTransactionItemCostsTwoWrites(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{CapacityScale: -1}) // count only
	ctx := context.Background()
	tb := aws.String(f.table)
	_, err := f.direct.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized("upd", 200)})
	require.NoError(t, err)
	_, err = f.direct.PutItem(ctx, &dynamodb.PutItemInput{TableName: tb, Item: sized("chk", 200)})
	require.NoError(t, err)
	_, err = f.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: tb, Item: sized("new", 200)}},
		{Update: &types.Update{TableName: tb, Key: key("upd", "s"), UpdateExpression: aws.String("SET v = :v"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "y"}}}},
		{ConditionCheck: &types.ConditionCheck{TableName: tb, Key: key("chk", "s"), ConditionExpression: aws.String("attribute_exists(pk)")}},
	}})
	require.NoError(t, err)
	for _, pk := range []string{"new", "upd", "chk"} {
		assert.InDelta(t, 2, keyLoad(t, f.p, f.table, pk).WriteUnits, 1e-9, "transaction item %s", pk)
	}
}

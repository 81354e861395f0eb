package ddbproxy_test

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"github.com/wsgate/wsgate/shared/store/storetest"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// fixture is a proxy in front of this binary's DynamoDB Local, an SDK
// client through it (db), one straight to DynamoDB Local (direct), and a
// fresh pk/sk table.
type fixture struct {
	p      *ddbproxy.Proxy
	url    string
	db     *dynamodb.Client
	direct *dynamodb.Client
	table  string
}

func newFixture(t *testing.T, opts ddbproxy.Options) *fixture {
	t.Helper()
	opts.Backend = storetest.Endpoint(t)
	p, err := ddbproxy.New(opts)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close) // runs before p.Close
	f := &fixture{p: p, url: srv.URL, db: dynamolocal.Client(srv.URL), direct: storetest.Client(t)}
	f.table = storetest.NewTable(t, f.direct)
	if opts.ReadLag > 0 {
		warm(t, f.db, f.table)
	}
	return f
}

// warm reads table eventually consistently once, which gives it its
// replica: writes reach a replica only from then on.
func warm(t *testing.T, db *dynamodb.Client, table string) {
	t.Helper()
	_, err := db.GetItem(context.Background(), &dynamodb.GetItemInput{TableName: aws.String(table), Key: key("warm-up", "s")})
	require.NoError(t, err)
}

func key(pk, sk string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: pk},
		"sk": &types.AttributeValueMemberS{Value: sk},
	}
}

func item(pk, sk, v string) map[string]types.AttributeValue {
	it := key(pk, sk)
	it["v"] = &types.AttributeValueMemberS{Value: v}
	return it
}

func (f *fixture) put(t *testing.T, pk, v string) {
	t.Helper()
	_, err := f.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: item(pk, "s", v)})
	require.NoError(t, err)
}

// get reads pk's v: "" if there is no item.
func (f *fixture) get(t *testing.T, pk string, consistent bool) string {
	t.Helper()
	out, err := f.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(f.table), Key: key(pk, "s"), ConsistentRead: aws.Bool(consistent),
	})
	require.NoError(t, err)
	return str(out.Item, "v")
}

func (f *fixture) query(t *testing.T, pk string, consistent bool) int {
	t.Helper()
	out, err := f.db.Query(context.Background(), &dynamodb.QueryInput{
		TableName:                 aws.String(f.table),
		KeyConditionExpression:    aws.String("pk = :pk"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":pk": &types.AttributeValueMemberS{Value: pk}},
		ConsistentRead:            aws.Bool(consistent),
	})
	require.NoError(t, err)
	return len(out.Items)
}

func str(it map[string]types.AttributeValue, name string) string {
	if s, ok := it[name].(*types.AttributeValueMemberS); ok {
		return s.Value
	}
	return ""
}

func (f *fixture) settle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, f.p.Settle(ctx))
}

const eventually, tick = 10 * time.Second, 5 * time.Millisecond

func TestEventualRead_MissesWriteUntilReadLag(t *testing.T) {
	t.Parallel()
	const lag = 700 * time.Millisecond
	f := newFixture(t, ddbproxy.Options{ReadLag: lag})
	f.put(t, "warm", "x") // the replica is built on first use: not part of the timing
	f.settle(t)

	start := time.Now()
	f.put(t, "a", "1")
	assert.Empty(t, f.get(t, "a", false), "an eventually consistent GetItem right after the write")
	assert.Zero(t, f.query(t, "a", false), "an eventually consistent Query right after the write")
	assert.Equal(t, "1", f.get(t, "a", true), "a consistent GetItem")
	assert.Equal(t, 1, f.query(t, "a", true), "a consistent Query")
	require.Less(t, time.Since(start), lag, "the reads above were too slow to prove anything")

	require.Eventually(t, func() bool { return f.get(t, "a", false) == "1" }, eventually, tick)
	assert.GreaterOrEqual(t, time.Since(start), lag, "seen before ReadLag had passed")
	assert.Equal(t, 1, f.query(t, "a", false))
	assert.Positive(t, f.p.Stats().StaleReads)
}

func TestEventualRead_UpdatesAndDeletesPropagate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: 300 * time.Millisecond})
	ctx := context.Background()
	f.put(t, "a", "1")
	f.settle(t)
	require.Equal(t, "1", f.get(t, "a", false))

	_, err := f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
		TableName: aws.String(f.table), Key: key("a", "s"),
		UpdateExpression:          aws.String("SET v = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "2"}},
	})
	require.NoError(t, err)
	assert.Equal(t, "1", f.get(t, "a", false), "the old image right after the update")
	require.Eventually(t, func() bool { return f.get(t, "a", false) == "2" }, eventually, tick)

	_, err = f.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(f.table), Key: key("a", "s")})
	require.NoError(t, err)
	assert.Equal(t, "2", f.get(t, "a", false), "still there right after the delete")
	assert.Empty(t, f.get(t, "a", true))
	require.Eventually(t, func() bool { return f.get(t, "a", false) == "" }, eventually, tick)
	assert.Zero(t, f.query(t, "a", false))
}

func TestReplica_KeepsEachItemsOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: 150 * time.Millisecond})
	ctx := context.Background()
	add := func() {
		_, err := f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName: aws.String(f.table), Key: key("n", "s"),
			UpdateExpression:          aws.String("ADD n :one"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":one": &types.AttributeValueMemberN{Value: "1"}},
		})
		assert.NoError(t, err)
	}
	readN := func() int { // eventually consistent
		out, err := f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(f.table), Key: key("n", "s")})
		if !assert.NoError(t, err) {
			return 0
		}
		n, _ := out.Item["n"].(*types.AttributeValueMemberN)
		if n == nil {
			return 0
		}
		v, err := strconv.Atoi(n.Value)
		assert.NoError(t, err)
		return v
	}

	var seen []int
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() { // the replica must never go back to an older count
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
				seen = append(seen, readN())
			}
		}
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 25 {
				add()
			}
		})
	}
	wg.Wait()
	for i := range 30 { // and quick writes end with the last image
		f.put(t, "last", strconv.Itoa(i))
	}
	f.settle(t)
	close(stop)
	<-polled

	assert.Equal(t, 100, readN())
	assert.Equal(t, "29", f.get(t, "last", false))
	assert.True(t, slices.IsSorted(seen), "the replica went back: %v", seen)
}

// transactItems writes the items of pks, the first as an update, the
// others as puts.
func (f *fixture) transactItems(pks ...string) *dynamodb.TransactWriteItemsInput {
	in := &dynamodb.TransactWriteItemsInput{}
	for i, pk := range pks {
		var ti types.TransactWriteItem
		if i == 0 {
			ti.Update = &types.Update{
				TableName: aws.String(f.table), Key: key(pk, "s"),
				UpdateExpression:          aws.String("SET v = :v"),
				ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: "tx"}},
			}
		} else {
			ti.Put = &types.Put{TableName: aws.String(f.table), Item: item(pk, "s", "tx")}
		}
		in.TransactItems = append(in.TransactItems, ti)
	}
	return in
}

// holdTransaction starts a TransactWriteItems of pks and returns once the
// proxy holds its items; the channel gives its result.
func (f *fixture) holdTransaction(t *testing.T, pks ...string) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := f.db.TransactWriteItems(context.Background(), f.transactItems(pks...))
		done <- err
	}()
	require.Eventually(t, func() bool { return f.p.Stats().HeldItems == len(pks) }, eventually, time.Millisecond)
	return done
}

var reasonMessages = map[string]string{
	"TransactionConflict": "Transaction is ongoing for the item",
	"ThrottlingError":     "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your table or index so please try again shortly.",
}

func requireCanceled(t *testing.T, err error, codes ...string) {
	t.Helper()
	var tce *types.TransactionCanceledException
	require.ErrorAs(t, err, &tce)
	got := make([]string, len(tce.CancellationReasons))
	for i, r := range tce.CancellationReasons {
		got[i] = aws.ToString(r.Code)
		if got[i] == "None" {
			assert.Nil(t, r.Message, "DynamoDB leaves out the message of None")
		} else {
			assert.Equal(t, reasonMessages[got[i]], aws.ToString(r.Message))
		}
	}
	assert.Equal(t, codes, got)
	assert.Equal(t, "Transaction cancelled, please refer cancellation reasons for specific reasons ["+strings.Join(codes, ", ")+"]", tce.ErrorMessage())
}

func TestTransactWrite_MeetingAnotherIsCancelled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{Conflicts: true, TransactionHold: time.Second})
	first := f.holdTransaction(t, "shared", "a")

	_, err := f.db.TransactWriteItems(context.Background(), f.transactItems("b", "shared"))
	requireCanceled(t, err, "None", "TransactionConflict")
	require.NoError(t, <-first)

	assert.Equal(t, "tx", f.get(t, "a", true), "the first transaction wrote")
	assert.Empty(t, f.get(t, "b", true), "the cancelled one did not")
	assert.Equal(t, int64(1), f.p.Stats().Conflicts)
	assert.Zero(t, f.p.Stats().HeldItems)

	_, err = f.db.TransactWriteItems(context.Background(), f.transactItems("b", "shared"))
	assert.NoError(t, err, "once the first is done")
}

func TestTransactWrite_ConcurrentOnOneItemOneWins(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{Conflicts: true, TransactionHold: time.Second})
	errs := make(chan error, 2)
	for _, other := range []string{"a", "b"} {
		go func() {
			_, err := f.db.TransactWriteItems(context.Background(), f.transactItems("shared", other))
			errs <- err
		}()
	}
	e1, e2 := <-errs, <-errs
	require.True(t, (e1 == nil) != (e2 == nil), "exactly one may win: %v, %v", e1, e2)
	requireCanceled(t, errors.Join(e1, e2), "TransactionConflict", "None")
}

func TestSingleWrite_DuringTransactionGetsTransactionConflictException(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{Conflicts: true, TransactionHold: 1500 * time.Millisecond})
	ctx := context.Background()
	tx := f.holdTransaction(t, "k")

	writes := map[string]func() error{
		"PutItem": func() error {
			_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: item("k", "s", "plain")})
			return err
		},
		"UpdateItem": func() error {
			_, err := f.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
				TableName: aws.String(f.table), Key: key("k", "s"), UpdateExpression: aws.String("REMOVE v"),
			})
			return err
		},
		"DeleteItem": func() error {
			_, err := f.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(f.table), Key: key("k", "s")})
			return err
		},
	}
	for name, write := range writes {
		before := f.p.Stats().Conflicts
		err := write()
		var tce *types.TransactionConflictException
		require.ErrorAs(t, err, &tce, name)
		assert.Equal(t, "Transaction is ongoing for the item", tce.ErrorMessage(), name)
		// The SDK's standard retryer does not retry it: one attempt.
		assert.Equal(t, before+1, f.p.Stats().Conflicts, name)
	}
	f.put(t, "other", "plain") // another item is free

	require.NoError(t, <-tx)
	assert.Equal(t, "tx", f.get(t, "k", true), "the refused writes changed nothing")
	f.put(t, "k", "plain")
}

func TestTransactGet_MeetingAWriteIsCancelled(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{Conflicts: true, TransactionHold: time.Second})
	ctx := context.Background()
	txGet := func(pks ...string) error {
		in := &dynamodb.TransactGetItemsInput{}
		for _, pk := range pks {
			in.TransactItems = append(in.TransactItems, types.TransactGetItem{Get: &types.Get{TableName: aws.String(f.table), Key: key(pk, "s")}})
		}
		_, err := f.db.TransactGetItems(ctx, in)
		return err
	}

	t.Run("write first", func(t *testing.T) {
		tx := f.holdTransaction(t, "k")
		requireCanceled(t, txGet("other", "k"), "None", "TransactionConflict")
		require.NoError(t, <-tx)
	})
	t.Run("write while reading", func(t *testing.T) {
		got := make(chan error, 1)
		go func() { got <- txGet("j", "other") }()
		require.Eventually(t, func() bool { return f.p.Stats().HeldItems == 2 }, eventually, time.Millisecond)
		f.put(t, "j", "plain") // proceeds: the read is the one cancelled
		requireCanceled(t, <-got, "TransactionConflict", "None")
	})
	t.Run("alone", func(t *testing.T) {
		assert.NoError(t, txGet("j", "k"))
	})
}

func TestBatchGetItem_ReadsEachTableAsAsked(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: time.Second})
	ctx := context.Background()
	other := storetest.NewTable(t, f.direct)
	f.put(t, "a", "1")
	_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(other), Item: item("a", "s", "2")})
	require.NoError(t, err)

	batch := func() *dynamodb.BatchGetItemOutput {
		out, err := f.db.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{
				f.table: {Keys: []map[string]types.AttributeValue{key("a", "s")}},
				other:   {Keys: []map[string]types.AttributeValue{key("a", "s")}, ConsistentRead: aws.Bool(true)},
			},
			ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
		})
		require.NoError(t, err)
		for name := range out.Responses {
			assert.Contains(t, []string{f.table, other}, name)
		}
		for _, c := range out.ConsumedCapacity {
			assert.Contains(t, []string{f.table, other}, aws.ToString(c.TableName))
		}
		return out
	}
	out := batch()
	assert.Empty(t, out.Responses[f.table], "eventually consistent: not yet")
	require.Len(t, out.Responses[other], 1, "consistent")
	assert.Equal(t, "2", str(out.Responses[other][0], "v"))
	assert.Len(t, out.ConsumedCapacity, 2)

	f.settle(t)
	out = batch()
	require.Len(t, out.Responses[f.table], 1)
	assert.Equal(t, "1", str(out.Responses[f.table][0], "v"))
}

func TestIndexReads(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: time.Second})
	ctx := context.Background()
	table := f.table + "-ix"
	s := types.ScalarAttributeTypeS
	_, err := f.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: s},
			{AttributeName: aws.String("sk"), AttributeType: s},
			{AttributeName: aws.String("c"), AttributeType: s},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange},
		},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String("byColor"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("c"), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
		LocalSecondaryIndexes: []types.LocalSecondaryIndex{{
			IndexName: aws.String("byColorLocal"),
			KeySchema: []types.KeySchemaElement{
				{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash},
				{AttributeName: aws.String("c"), KeyType: types.KeyTypeRange},
			},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}},
	})
	require.NoError(t, err)
	warm(t, f.db, table)
	it := item("a", "s", "1")
	it["c"] = &types.AttributeValueMemberS{Value: "red"}
	_, err = f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: it})
	require.NoError(t, err)

	query := func(index, cond, val string, consistent bool) (int, error) {
		out, err := f.db.Query(ctx, &dynamodb.QueryInput{
			TableName: aws.String(table), IndexName: aws.String(index),
			KeyConditionExpression:    aws.String(cond),
			ExpressionAttributeValues: map[string]types.AttributeValue{":v": &types.AttributeValueMemberS{Value: val}},
			ConsistentRead:            aws.Bool(consistent),
		})
		if err != nil {
			return 0, err
		}
		return len(out.Items), nil
	}
	_, err = query("byColor", "c = :v", "red", true)
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "ValidationException", apiErr.ErrorCode())
	assert.Equal(t, "Consistent reads are not supported on global secondary indexes", apiErr.ErrorMessage())

	n, err := query("byColor", "c = :v", "red", false)
	require.NoError(t, err)
	assert.Zero(t, n, "a global index is eventually consistent")
	n, err = query("byColorLocal", "pk = :v", "a", false)
	require.NoError(t, err)
	assert.Zero(t, n, "so is a local index read without ConsistentRead")
	n, err = query("byColorLocal", "pk = :v", "a", true)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "a local index reads consistently when asked")

	f.settle(t)
	n, err = query("byColor", "c = :v", "red", false)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

func TestReplica_StartsWithTheTablesItems(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: time.Second})
	ctx := context.Background()
	table := storetest.NewTable(t, f.direct) // not read through the proxy yet
	for i := range 60 {                      // written before the proxy ever saw the table
		_, err := f.direct.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item(fmt.Sprint(i), "s", "1")})
		require.NoError(t, err)
	}
	out, err := f.db.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(table)})
	require.NoError(t, err)
	assert.Len(t, out.Items, 60)
}

func TestReplicas_AreHiddenAndDeletedWithTheirTable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: time.Second})
	ctx := context.Background()
	f.get(t, "a", false) // builds the replica
	replica := f.table + ddbproxy.ReplicaSuffix
	listed := func(db *dynamodb.Client) []string {
		var names []string
		p := dynamodb.NewListTablesPaginator(db, &dynamodb.ListTablesInput{})
		for p.HasMorePages() {
			out, err := p.NextPage(ctx)
			require.NoError(t, err)
			names = append(names, out.TableNames...)
		}
		return names
	}
	require.Contains(t, listed(f.direct), replica)
	assert.NotContains(t, listed(f.db), replica)
	assert.Contains(t, listed(f.db), f.table)

	_, err := f.db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(f.table)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !slices.Contains(listed(f.direct), replica) }, eventually, tick)
}

// A table nobody reads eventually consistently has no replica, and its
// writes cost nothing extra; the first such read builds one from the
// table's items, and later writes reach it after the lag.
func TestReplica_OnlyForTablesReadEventually(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: time.Second})
	ctx := context.Background()
	cold := storetest.NewTable(t, f.direct)
	for i := range 5 {
		_, err := f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(cold), Item: item(fmt.Sprint(i), "s", "1")})
		require.NoError(t, err)
	}
	f.settle(t)
	assert.Zero(t, f.p.Stats().ReplicaWrites, "no replica for a table only read consistently")

	out, err := f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(cold), Key: key("0", "s")})
	require.NoError(t, err)
	assert.NotNil(t, out.Item, "the replica starts with the table's items")
	_, err = f.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(cold), Item: item("new", "s", "1")})
	require.NoError(t, err)
	out, err = f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(cold), Key: key("new", "s")})
	require.NoError(t, err)
	assert.Nil(t, out.Item, "from then on a write reaches it only after the lag")
}

func TestReadLagZero_PassesThrough(t *testing.T) {
	t.Parallel()
	// No Conflicts: TransactionHold does nothing without it.
	f := newFixture(t, ddbproxy.Options{TransactionHold: time.Minute})
	ctx := context.Background()
	f.put(t, "a", "1")
	assert.Equal(t, "1", f.get(t, "a", false), "every read is consistent")
	assert.Equal(t, 1, f.query(t, "a", false))

	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := f.db.TransactWriteItems(ctx, f.transactItems("a", "b"))
			errs <- err
		}()
	}
	assert.NoError(t, <-errs)
	assert.NoError(t, <-errs)

	out, err := f.direct.ListTables(ctx, &dynamodb.ListTablesInput{ExclusiveStartTableName: aws.String(f.table), Limit: aws.Int32(1)})
	require.NoError(t, err)
	assert.NotContains(t, out.TableNames, f.table+ddbproxy.ReplicaSuffix, "no replica built")
	assert.Equal(t, ddbproxy.Stats{}, f.p.Stats())
}

func TestErrors_CarryTheChecksum(t *testing.T) {
	t.Parallel()
	for _, lag := range []time.Duration{0, time.Second} { // streamed, and read by the proxy
		f := newFixture(t, ddbproxy.Options{ReadLag: lag})
		req, err := http.NewRequest(http.MethodPost, f.url, strings.NewReader(`{"TableName":"no-such-table","Key":{"pk":{"S":"a"}}}`))
		require.NoError(t, err)
		req.Header.Set("X-Amz-Target", "DynamoDB_20120810.GetItem")
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=a/20200101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "lag %v", lag)
		assert.Contains(t, string(body), "ResourceNotFoundException", "lag %v", lag)
		assert.Equal(t, strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10), resp.Header.Get("X-Amz-Crc32"), "lag %v", lag)
	}
}

func TestWritesOfEveryKindReachTheReplica(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: 400 * time.Millisecond, Conflicts: true})
	ctx := context.Background()
	f.put(t, "gone", "1")
	f.put(t, "cond", "1")
	f.settle(t)

	wrote := time.Now()
	_, err := f.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{f.table: {
		{PutRequest: &types.PutRequest{Item: item("batch", "s", "1")}},
		{DeleteRequest: &types.DeleteRequest{Key: key("gone", "s")}},
	}}})
	require.NoError(t, err)
	_, err = f.db.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{ConditionCheck: &types.ConditionCheck{TableName: aws.String(f.table), Key: key("cond", "s"), ConditionExpression: aws.String("attribute_exists(pk)")}},
		{Put: &types.Put{TableName: aws.String(f.table), Item: item("tx", "s", "1")}},
	}})
	require.NoError(t, err)

	// Stale within the lag: checked only while it has not passed (a
	// loaded machine may take longer than the lag to get here).
	batch, gone, tx := f.get(t, "batch", false), f.get(t, "gone", false), f.get(t, "tx", false)
	if time.Since(wrote) < 400*time.Millisecond {
		assert.Empty(t, batch)
		assert.Equal(t, "1", gone)
		assert.Empty(t, tx)
	}
	f.settle(t)
	assert.Equal(t, "1", f.get(t, "batch", false))
	assert.Empty(t, f.get(t, "gone", false))
	assert.Equal(t, "1", f.get(t, "tx", false))
	assert.Equal(t, "1", f.get(t, "cond", false))
	assert.Zero(t, f.p.Stats().ReplicaErrors)
}

func TestEventualRead_NamesTheTableInConsumedCapacity(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: time.Second})
	before := f.p.Stats().StaleReads
	out, err := f.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(f.table), Key: key("a", "s"), ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
	})
	require.NoError(t, err)
	require.NotNil(t, out.ConsumedCapacity)
	assert.Equal(t, f.table, aws.ToString(out.ConsumedCapacity.TableName))
	assert.Equal(t, before+1, f.p.Stats().StaleReads)
}

func TestReplica_CopiesTheTablesTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ddbproxy.Options{ReadLag: time.Second})
	ctx := context.Background()
	ttl := func(table string) types.TimeToLiveStatus {
		out, err := f.direct.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(table)})
		require.NoError(t, err)
		return out.TimeToLiveDescription.TimeToLiveStatus
	}
	f.get(t, "a", false) // builds the replica of a table with TTL on
	assert.Equal(t, types.TimeToLiveStatusEnabled, ttl(f.table+ddbproxy.ReplicaSuffix), "copied at build")

	table := f.table + "-b"
	_, err := f.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
	})
	require.NoError(t, err)
	pk := map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "a"}}
	_, err = f.db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: pk}) // builds its replica
	require.NoError(t, err)

	_, err = f.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
		TableName:               aws.String(table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("ttl"), Enabled: aws.Bool(true)},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return ttl(table+ddbproxy.ReplicaSuffix) == types.TimeToLiveStatusEnabled }, eventually, tick)
}

// BenchmarkWriteRead is a PutItem and an eventually consistent GetItem,
// straight to DynamoDB Local and through the proxy.
func BenchmarkWriteRead(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts *ddbproxy.Options
	}{
		{"direct", nil},
		{"passthrough", &ddbproxy.Options{}},
		{"harsh", &ddbproxy.Options{ReadLag: 100 * time.Millisecond, Conflicts: true}},
		{"harsh+capacity", &ddbproxy.Options{ReadLag: 100 * time.Millisecond, Conflicts: true, CapacityScale: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := storetest.Client(b)
			table := storetest.NewTable(b, db)
			if bc.opts != nil {
				bc.opts.Backend = storetest.Endpoint(b)
				p, err := ddbproxy.New(*bc.opts)
				require.NoError(b, err)
				defer p.Close()
				srv := httptest.NewServer(p)
				defer srv.Close()
				db = dynamolocal.Client(srv.URL)
			}
			ctx := context.Background()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					pk := fmt.Sprint(i % 100)
					_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: item(pk, "s", "v")})
					if err != nil {
						b.Error(err)
						return
					}
					_, err = db.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String(table), Key: key(pk, "s")})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

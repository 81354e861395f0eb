// Package storetest gives tests a fresh table on a real DynamoDB Local:
// one server per test binary (or the one $WSGATE_DYNAMODB_ENDPOINT names),
// one new table per test.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

// EnvEndpoint names a running DynamoDB Local to use instead of starting one.
const EnvEndpoint = "WSGATE_DYNAMODB_ENDPOINT"

// Main runs a test binary's tests with DynamoDB Local available. Use it as
//
//	func TestMain(m *testing.M) { storetest.Main(m) }
func Main(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(EnvEndpoint) == "" {
		jar, err := dynamolocal.FindJar(".")
		if err != nil {
			fmt.Fprintln(os.Stderr, "storetest:", err)
			return 1
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		srv, err := dynamolocal.Start(ctx, jar, dynamolocal.Options{QuickStart: true})
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "storetest:", err)
			return 1
		}
		defer srv.Stop()
		os.Setenv(EnvEndpoint, srv.Endpoint)
	}
	return m.Run()
}

// Endpoint is the DynamoDB Local endpoint of this test binary.
func Endpoint(t testing.TB) string {
	t.Helper()
	ep := os.Getenv(EnvEndpoint)
	if ep == "" {
		t.Fatal("storetest: no DynamoDB Local; call storetest.Main from TestMain")
	}
	return ep
}

// Client returns a DynamoDB client for this binary's DynamoDB Local.
func Client(t testing.TB, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	return dynamolocal.Client(Endpoint(t), optFns...)
}

// NewTable creates a fresh table and returns its name.
func NewTable(t testing.TB, db *dynamodb.Client) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "wsgate-test-" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Without the stream: the store's own tests do not read it (the local
	// stack's do), and DynamoDB Local keeping a stream record of every
	// write tripled this package's test time.
	in := store.CreateTableInput(name)
	in.StreamSpecification = nil
	if err := store.CreateTableFrom(ctx, db, in); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	return name
}

// New returns a Store on a fresh table.
func New(t testing.TB) *store.Store {
	db := Client(t)
	return store.New(db, NewTable(t, db))
}

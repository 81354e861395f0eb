package stacktest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

// Publisher returns a publisher on the stack's bus, through the real
// EventBridge API of the local endpoint.
func Publisher(s *stack.Stack) publish.Publisher { return s.Publisher("wsgate.examples") }

// Publish sends details and fails the test on any error.
func Publish(t testing.TB, s *stack.Stack, details ...publish.Detail) {
	t.Helper()
	if _, err := Publisher(s).Publish(context.Background(), details...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

// PublishFile sends the detail (or list of details) in a JSON file.
func PublishFile(t testing.TB, s *stack.Stack, path string) {
	t.Helper()
	Publish(t, s, ReadDetails(t, path)...)
}

// ReadDetails reads a JSON file holding one detail or a list of them.
func ReadDetails(t testing.TB, path string) []publish.Detail {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var list []publish.Detail
	if err := json.Unmarshal(b, &list); err == nil {
		return list
	}
	var one publish.Detail
	if err := json.Unmarshal(b, &one); err != nil {
		t.Fatalf("%s: not an event detail: %v", path, err)
	}
	return []publish.Detail{one}
}

// PublishAndWait publishes and waits until the broadcast function has
// fully processed every detail, so a test can rely on the stored state and
// history they carry.
func PublishAndWait(t testing.TB, s *stack.Stack, details ...publish.Detail) {
	t.Helper()
	ids, err := Publisher(s).Publish(context.Background(), details...)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if err := AwaitProcessed(s, ids, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// AwaitProcessed waits until the broadcast function has fully processed
// the events with these ids, for at most within. For callers that are not
// a test's goroutine (an HTTP handler of a test harness, say).
func AwaitProcessed(s *stack.Stack, ids []string, within time.Duration) error {
	st := store.New(dynamolocal.Client(s.DynamoDBEndpoint), s.Table)
	deadline := time.Now().Add(within)
	for _, id := range ids {
		for {
			rec, ok, err := st.Event(context.Background(), id)
			if err != nil {
				return err
			}
			if ok && rec.Done {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("event %s not processed within %s", id, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// PublishFileAndWait is PublishAndWait for the details in a JSON file.
func PublishFileAndWait(t testing.TB, s *stack.Stack, path string) {
	t.Helper()
	PublishAndWait(t, s, ReadDetails(t, path)...)
}

package stack

import (
	"context"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/edge"
	"github.com/wsgate/wsgate/localstack/aws/eventbus"
	"github.com/wsgate/wsgate/localstack/aws/lambdahost"
)

// The local stack mirrors the CDK stack's defaults; infra is another
// module, so its settings are read from source.
func TestCDKDefaultsAgree(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join("..", "..", "..", "infra", "settings.go"), nil, 0)
	require.NoError(t, err)
	consts := map[string]int{}
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Values) == len(vs.Names) {
			for i, name := range vs.Names {
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.INT {
					v, _ := strconv.Atoi(lit.Value)
					consts[name.Name] = v
				}
			}
		}
		return true
	})
	require.Contains(t, consts, "DefaultQueueMaxConcurrency")
	require.Contains(t, consts, "DefaultMessageReservedConcurrency")
	assert.Equal(t, consts["DefaultQueueMaxConcurrency"], DefaultQueueMaxConcurrency)
	assert.Equal(t, consts["DefaultMessageReservedConcurrency"], DefaultMessageReservedConcurrency)
	assert.Equal(t, map[string]int{FnMessage: consts["DefaultMessageReservedConcurrency"]}, DefaultReservedConcurrency())
}

var (
	echoOnce sync.Once
	echoPath string
	echoErr  error
)

// echoBootstrap builds lambdahost's test function: a "block" invocation
// holds its instance until a file exists.
func echoBootstrap(t *testing.T) string {
	t.Helper()
	echoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "stack-echo-")
		if err != nil {
			echoErr = err
			return
		}
		echoPath = filepath.Join(dir, "bootstrap")
		out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", echoPath, "../lambdahost/testdata/echo").CombinedOutput()
		if err != nil {
			echoErr = err
			t.Logf("%s", out)
		}
	})
	require.NoError(t, echoErr)
	return echoPath
}

// busyHost has fn with reserved concurrency 1, held by a blocked
// invocation until the returned release is called.
func busyHost(t *testing.T, fn string) (h *lambdahost.Host, release func()) {
	t.Helper()
	h = lambdahost.New(lambdahost.Options{AccountConcurrency: lambdahost.DefaultAccountConcurrency})
	t.Cleanup(func() { _ = h.Close() })
	require.NoError(t, h.Register(lambdahost.Function{Name: fn, Path: echoBootstrap(t), ReservedConcurrency: 1}))
	file := filepath.Join(t.TempDir(), "release")
	blocked := make(chan error, 1)
	go func() {
		_, err := h.Invoke(context.Background(), fn, []byte(`{"action":"block","value":"`+file+`"}`))
		blocked <- err
	}()
	require.Eventually(t, func() bool { return h.Stats(fn).ConcurrentExecutions == 1 }, 20*time.Second, 5*time.Millisecond)
	return h, func() {
		require.NoError(t, os.WriteFile(file, nil, 0o600))
		require.NoError(t, <-blocked)
	}
}

func TestLambdaInvoke_ThrottledIs429WithItsReason(t *testing.T) {
	h, release := busyHost(t, "hook")
	s := &Stack{Host: h}
	srv := httptest.NewServer(http.HandlerFunc(s.lambdaInvoke))
	defer srv.Close()
	resp, err := http.Post(srv.URL+edge.LambdaInvokePath+"hook/invocations", "application/json", strings.NewReader(`{"action":"echo"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "TooManyRequestsException", resp.Header.Get("X-Amzn-ErrorType"))
	var body map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.Equal(t, lambdahost.ReasonReservedFunction, body["Reason"])
	assert.Equal(t, "Rate Exceeded.", body["message"])
	release()
}

// An event whose target is throttled is retried later, as Lambda retries a
// throttled asynchronous invocation, and delivered once.
func TestAsyncTarget_ThrottledEventIsRetriedAndDeliveredOnce(t *testing.T) {
	h, release := busyHost(t, "fn")
	bus := eventbus.New(eventbus.Options{
		RetryDelays: eventbus.LambdaRetryDelays(0.001), ThrottleRetry: eventbus.LambdaThrottleRetry(0.05),
	})
	defer bus.Close()
	bus.CreateBus("b")
	target := asyncTarget(h, "fn")
	require.NoError(t, bus.PutRule(eventbus.Rule{
		Name: "r", Bus: "b", Pattern: `{"source":["t"]}`,
		// The echo function reads its action from the payload: the event
		// itself reaches it only as the bus's trigger.
		Target: func(ctx context.Context, _ []byte) error { return target(ctx, []byte(`{"action":"echo"}`)) },
	}))
	srv := httptest.NewServer(bus)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`{"Entries":[{"EventBusName":"b","Source":"t","DetailType":"d","Detail":"{}"}]}`))
	req.Header.Set("X-Amz-Target", "AWSEvents.PutEvents")
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	require.Eventually(t, func() bool { return bus.Stats().Throttled.Load() >= 2 }, 10*time.Second, 5*time.Millisecond,
		"the throttled delivery is retried")
	assert.Zero(t, bus.Stats().Delivered.Load())
	release()
	require.Eventually(t, func() bool { return bus.Stats().Delivered.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, int64(1), bus.Stats().Delivered.Load(), "delivered once")
	assert.Zero(t, bus.Stats().DeadLettered.Load())
	assert.Zero(t, bus.Stats().Retried.Load(), "a throttle spends none of the function-error retries")
	assert.Equal(t, 2, h.Stats("fn").Invocations, "the blocked one and the event's")
}

package lambdahost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoBootstrap is testdata/echo built by TestMain.
var echoBootstrap string

const (
	helperEnv    = "LAMBDAHOST_TEST_HELPER"
	bootstrapEnv = "LAMBDAHOST_TEST_BOOTSTRAP"
	region       = "eu-west-1"
	waitFor      = 20 * time.Second // upper bound of Eventually: only a broken host takes it
	tick         = 10 * time.Millisecond
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		runHostHelper()
		return
	}
	dir, err := os.MkdirTemp("", "lambdahost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	echoBootstrap = filepath.Join(dir, "bootstrap")
	out, err := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", echoBootstrap, "./testdata/echo").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building testdata/echo: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// echoRequest and echoResponse mirror testdata/echo.
type echoRequest struct {
	Action string `json:"action"`
	MS     int    `json:"ms,omitempty"`
	N      int    `json:"n,omitempty"`
	Value  string `json:"value,omitempty"`
}

type echoResponse struct {
	Value       string            `json:"value"`
	RequestID   string            `json:"request_id"`
	DeadlineMS  int64             `json:"deadline_ms"`
	FunctionARN string            `json:"function_arn"`
	TraceID     string            `json:"trace_id"`
	PID         int               `json:"pid"`
	Env         map[string]string `json:"env"`
	Cwd         string            `json:"cwd"`
	StartNS     int64             `json:"start_ns"`
	EndNS       int64             `json:"end_ns"`
	Status      int               `json:"status"`
}

// logRecorder keeps every line the host forwards.
type logRecorder struct {
	mu    sync.Mutex
	lines []logLine
}

type logLine struct {
	function string
	text     string
}

func (r *logRecorder) log(function string, line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, logLine{function, string(line)})
}

func (r *logRecorder) all() []logLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.lines)
}

// invokePIDs returns the pids of the processes that logged the start of an
// invocation with the given action, in order.
func (r *logRecorder) invokePIDs(action string) []int {
	var pids []int
	for _, l := range r.all() {
		var doc struct {
			Msg    string `json:"msg"`
			Action string `json:"action"`
			PID    int    `json:"pid"`
		}
		if json.Unmarshal([]byte(l.text), &doc) == nil && doc.Msg == "invoke" && doc.Action == action {
			pids = append(pids, doc.PID)
		}
	}
	return pids
}

// waitForInvokes waits until n invocations with the given action started.
func (r *logRecorder) waitForInvokes(t *testing.T, action string, n int) []int {
	t.Helper()
	require.Eventually(t, func() bool { return len(r.invokePIDs(action)) >= n }, waitFor, tick,
		"%d %q invocations never started", n, action)
	return r.invokePIDs(action)
}

// newHost returns a host, closed when the test ends, with f registered
// (Path defaults to the echo function).
func newHost(t *testing.T, f Function) (*Host, *logRecorder) {
	t.Helper()
	rec := &logRecorder{}
	h := New(Options{Region: region, Log: rec.log})
	t.Cleanup(func() { _ = h.Close() })
	if f.Path == "" {
		f.Path = echoBootstrap
	}
	require.NoError(t, h.Register(f))
	return h, rec
}

func invokeEcho(ctx context.Context, h *Host, name string, req echoRequest) (echoResponse, error) {
	payload, err := json.Marshal(req)
	if err != nil {
		return echoResponse{}, err
	}
	out, err := h.Invoke(ctx, name, payload)
	if err != nil {
		return echoResponse{}, err
	}
	var resp echoResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return resp, fmt.Errorf("decoding %q: %w", out, err)
	}
	return resp, nil
}

func requireFunctionError(t *testing.T, err error) *FunctionError {
	t.Helper()
	var fe *FunctionError
	require.ErrorAs(t, err, &fe)
	return fe
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// touch creates the file a "block" invocation waits for.
func touch(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, nil, 0o600))
}

type result struct {
	resp echoResponse
	err  error
}

// invokeAsync invokes in a goroutine; the channel yields its result.
func invokeAsync(ctx context.Context, h *Host, name string, req echoRequest) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := invokeEcho(ctx, h, name, req)
		ch <- result{resp, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		require.FailNow(t, "invocation never returned")
		return result{}
	}
}

var uuidPattern = `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`

func TestInvoke_EchoRoundTripCarriesRuntimeHeaders(t *testing.T) {
	t.Parallel()
	const timeout = 30 * time.Second
	h, _ := newHost(t, Function{Name: "echo", Timeout: timeout})

	tests := []struct {
		name        string
		ctxDeadline time.Duration // 0: none
	}{
		{name: "deadline from the function timeout"},
		{name: "a caller's earlier deadline does not shorten it", ctxDeadline: 20 * time.Second},
	}
	var ids []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			var ctxDeadline time.Time
			if tt.ctxDeadline > 0 {
				var cancel context.CancelFunc
				ctxDeadline = time.Now().Add(tt.ctxDeadline)
				ctx, cancel = context.WithDeadline(ctx, ctxDeadline)
				defer cancel()
			}
			before := time.Now()
			resp, err := invokeEcho(ctx, h, "echo", echoRequest{Action: "echo", Value: "hello"})
			after := time.Now()
			require.NoError(t, err)

			assert.Equal(t, "hello", resp.Value)
			assert.Regexp(t, uuidPattern, resp.RequestID)
			assert.Equal(t, "arn:aws:lambda:"+region+":000000000000:function:echo", resp.FunctionARN)
			assert.True(t, strings.HasPrefix(resp.TraceID, "Root=1-"), resp.TraceID)
			assert.GreaterOrEqual(t, resp.DeadlineMS, before.Add(timeout).UnixMilli())
			assert.LessOrEqual(t, resp.DeadlineMS, after.Add(timeout).UnixMilli())
			if tt.ctxDeadline > 0 {
				assert.Greater(t, resp.DeadlineMS, ctxDeadline.UnixMilli())
			}
			ids = append(ids, resp.RequestID)
		})
	}
	assert.Len(t, slices.Compact(slices.Sorted(slices.Values(ids))), len(tests), "request ids are unique")
}

func TestInvoke_HandlerSeesLambdaEnvironment(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{
		Name:     "env",
		MemoryMB: 256,
		Env: map[string]string{
			"WSGATE_TABLE":          "wsgate-local",
			"AWS_SECRET_ACCESS_KEY": "from-function-env",
		},
	})

	resp, err := invokeEcho(context.Background(), h, "env", echoRequest{Action: "env"})
	require.NoError(t, err)

	root, err := filepath.EvalSymlinks(filepath.Dir(echoBootstrap))
	require.NoError(t, err)
	want := map[string]string{
		"AWS_LAMBDA_FUNCTION_NAME":        "env",
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
		"AWS_REGION":                      region,
		"AWS_DEFAULT_REGION":              region,
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/env",
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"_HANDLER":                        "bootstrap",
		"LAMBDA_TASK_ROOT":                root,
		"LAMBDA_RUNTIME_DIR":              root,
		"TZ":                              ":UTC",
		"PATH":                            os.Getenv("PATH"),
		"AWS_ACCESS_KEY_ID":               "local",
		"AWS_SECRET_ACCESS_KEY":           "from-function-env",
		"AWS_SESSION_TOKEN":               "local",
		"WSGATE_TABLE":                    "wsgate-local",
	}
	for k, v := range want {
		assert.Equal(t, v, resp.Env[k], k)
	}
	assert.Regexp(t, `^127\.0\.0\.1:[0-9]+$`, resp.Env["AWS_LAMBDA_RUNTIME_API"])
	assert.Regexp(t, `^[0-9]{4}/[0-9]{2}/[0-9]{2}/\[\$LATEST\][0-9a-f]{32}$`, resp.Env["AWS_LAMBDA_LOG_STREAM_NAME"])
	for k := range resp.Env {
		switch k {
		case "AWS_LAMBDA_RUNTIME_API", "AWS_LAMBDA_LOG_STREAM_NAME", "_X_AMZN_TRACE_ID":
		default:
			assert.Contains(t, want, k, "the host's own environment leaked into the function")
		}
	}
	cwd, err := filepath.EvalSymlinks(resp.Cwd)
	require.NoError(t, err)
	assert.Equal(t, root, cwd, "working directory is the task root")
}

func TestInvoke_ReturnedErrorIsFunctionError(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{Name: "fails"})

	_, err := invokeEcho(context.Background(), h, "fails", echoRequest{Action: "error", Value: "subscription not found"})

	fe := requireFunctionError(t, err)
	assert.Equal(t, "HandlerError", fe.Type)
	assert.Equal(t, "subscription not found", fe.Message)
	resp, err := invokeEcho(context.Background(), h, "fails", echoRequest{Action: "echo"})
	require.NoError(t, err, "the instance survives a returned error")
	st := h.Stats("fails")
	assert.Equal(t, 1, st.ColdStarts, "same process")
	assert.Equal(t, 2, st.Invocations)
	assert.Equal(t, 1, st.Errors)
	assert.NotZero(t, resp.PID)
}

func TestInvoke_PanicIsReportedAndNextInvocationWorks(t *testing.T) {
	t.Parallel()
	h, rec := newHost(t, Function{Name: "panics"})

	_, err := invokeEcho(context.Background(), h, "panics", echoRequest{Action: "panic", Value: "boom"})

	fe := requireFunctionError(t, err)
	assert.Equal(t, "string", fe.Type, "aws-lambda-go names the panic value's type")
	assert.Equal(t, "boom", fe.Message)
	panicked := rec.waitForInvokes(t, "panic", 1)[0]
	resp, err := invokeEcho(context.Background(), h, "panics", echoRequest{Action: "echo"})
	require.NoError(t, err)
	assert.NotEqual(t, panicked, resp.PID, "aws-lambda-go exits after a panic: a new process serves")
	st := h.Stats("panics")
	assert.Equal(t, 2, st.Invocations)
	assert.Equal(t, 1, st.Errors)
}

func TestInvoke_ExitMidInvocationIsExitErrorAndNextInvocationWorks(t *testing.T) {
	t.Parallel()
	h, rec := newHost(t, Function{Name: "exits"})

	_, err := invokeEcho(context.Background(), h, "exits", echoRequest{Action: "exit", N: 3})

	fe := requireFunctionError(t, err)
	assert.Equal(t, ErrorTypeExit, fe.Type)
	assert.Regexp(t, `^RequestId: [0-9a-f-]{36} Error: Runtime exited with error: exit status 3$`, fe.Message)
	exited := rec.invokePIDs("exit")
	require.Len(t, exited, 1, "its output is drained before Invoke returns")
	assert.True(t, processGone(exited[0]))

	resp, err := invokeEcho(context.Background(), h, "exits", echoRequest{Action: "echo"})
	require.NoError(t, err)
	assert.NotEqual(t, exited[0], resp.PID)
	st := h.Stats("exits")
	assert.Equal(t, 2, st.ColdStarts)
	assert.Equal(t, 2, st.Invocations)
	assert.Equal(t, 1, st.Errors)
	assert.Equal(t, 1, st.Running)
}

func TestCrash_KillsBusyInstancesAndTheirInvocationsFail(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{Name: "crash", Concurrency: 2})
	ctx := context.Background()
	_, err := invokeEcho(ctx, h, "crash", echoRequest{Action: "echo"})
	require.NoError(t, err)
	assert.Zero(t, h.Crash("crash"), "an idle instance is not crashed")

	slow := make(chan error, 1)
	go func() {
		_, err := invokeEcho(ctx, h, "crash", echoRequest{Action: "sleep", MS: 5000})
		slow <- err
	}()
	require.Eventually(t, func() bool { return h.busy("crash") }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1, h.Crash("crash"))
	select {
	case err := <-slow:
		fe := requireFunctionError(t, err)
		assert.Equal(t, ErrorTypeExit, fe.Type)
	case <-time.After(3 * time.Second):
		t.Fatal("the crashed invocation did not end")
	}
	again, err := invokeEcho(ctx, h, "crash", echoRequest{Action: "echo"})
	require.NoError(t, err, "the function serves the next invocation")
	assert.Positive(t, again.PID)
	assert.Zero(t, h.Crash("nope"))
}

func TestInvoke_TimeoutKillsProcessAndNextInvocationWorks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		timeout     time.Duration
		wantMessage string
	}{
		{
			name:        "function timeout",
			timeout:     2 * time.Second,
			wantMessage: `^RequestId: [0-9a-f-]{36} Error: Task timed out after 2\.00 seconds$`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, rec := newHost(t, Function{Name: "slow", Timeout: tt.timeout})

			_, err := invokeEcho(context.Background(), h, "slow", echoRequest{Action: "sleep", MS: 600_000})

			fe := requireFunctionError(t, err)
			assert.Equal(t, ErrorTypeTimeout, fe.Type)
			assert.Regexp(t, tt.wantMessage, fe.Message)
			killed := rec.invokePIDs("sleep")
			require.Len(t, killed, 1)
			assert.True(t, processGone(killed[0]), "the process is killed and reaped before Invoke returns")
			assert.Equal(t, 0, h.Stats("slow").Running)

			resp, err := invokeEcho(context.Background(), h, "slow", echoRequest{Action: "echo"})
			require.NoError(t, err)
			assert.NotEqual(t, killed[0], resp.PID)
			st := h.Stats("slow")
			assert.Equal(t, 2, st.ColdStarts)
			assert.Equal(t, 1, st.Errors)
		})
	}
}

// A caller that stops waiting (API Gateway after 29 s) gets its context's
// error at once, and the invocation runs on to its answer with the whole
// of the function's timeout, as a Lambda invocation does: the frame that
// waited for an instance still gets its work done.
func TestInvoke_CallersDeadlineEndsTheWaitNotTheInvocation(t *testing.T) {
	t.Parallel()
	h, rec := newHost(t, Function{Name: "slow", Timeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()

	start := time.Now()
	_, err := invokeEcho(ctx, h, "slow", echoRequest{Action: "sleep", MS: 1500})

	require.ErrorIs(t, err, context.DeadlineExceeded)
	var fe *FunctionError
	assert.False(t, errors.As(err, &fe), "not a function error: the function did not fail")
	assert.Less(t, time.Since(start), time.Second, "the caller does not wait for the invocation")
	pids := rec.invokePIDs("sleep")
	require.Len(t, pids, 1)
	assert.Eventually(t, func() bool { return h.Stats("slow").Invocations == 1 }, 10*time.Second, 10*time.Millisecond, "the invocation ran on to its answer")
	assert.Equal(t, 0, h.Stats("slow").Errors, "it was not timed out")
	assert.False(t, processGone(pids[0]), "its process was not killed")
}

func TestInvoke_ParallelInvocationsRunAtOnceUpToConcurrency(t *testing.T) {
	t.Parallel()
	const n = 3
	h, _ := newHost(t, Function{Name: "parallel", Concurrency: n})
	barrier := t.TempDir()

	// Each invocation waits until all n have arrived: they can only finish
	// if n instances run at the same time.
	var results []<-chan result
	for range n {
		results = append(results, invokeAsync(context.Background(), h, "parallel", echoRequest{Action: "barrier", Value: barrier, N: n}))
	}
	pids := map[int]bool{}
	for _, ch := range results {
		r := receive(t, ch)
		require.NoError(t, r.err)
		pids[r.resp.PID] = true
	}

	assert.Len(t, pids, n, "one process per concurrent invocation")
	st := h.Stats("parallel")
	assert.Equal(t, n, st.ColdStarts)
	assert.Equal(t, n, st.Running)
	assert.Len(t, st.ColdStartDurations, n)
}

func TestInvoke_NeverRunsMoreThanConcurrencyAtOnce(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		concurrency int
		invocations int
	}{
		{name: "concurrency 1 serialises", concurrency: 1, invocations: 3},
		{name: "concurrency 2", concurrency: 2, invocations: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, _ := newHost(t, Function{Name: "bounded", Concurrency: tt.concurrency})

			var results []<-chan result
			for range tt.invocations {
				results = append(results, invokeAsync(context.Background(), h, "bounded", echoRequest{Action: "sleep", MS: 50}))
			}
			type event struct {
				at    int64
				delta int
			}
			var events []event
			pids := map[int]bool{}
			for _, ch := range results {
				r := receive(t, ch)
				require.NoError(t, r.err)
				events = append(events, event{r.resp.StartNS, +1}, event{r.resp.EndNS, -1})
				pids[r.resp.PID] = true
			}

			// Handlers' own clocks: count how many ran at once (an end
			// before a start at the same instant).
			slices.SortFunc(events, func(a, b event) int {
				if a.at != b.at {
					return int(a.at - b.at)
				}
				return a.delta - b.delta
			})
			running, peak := 0, 0
			for _, e := range events {
				running += e.delta
				peak = max(peak, running)
			}
			assert.LessOrEqual(t, peak, tt.concurrency)
			assert.LessOrEqual(t, len(pids), tt.concurrency)
			st := h.Stats("bounded")
			assert.LessOrEqual(t, st.ColdStarts, tt.concurrency)
			assert.Equal(t, tt.invocations, st.Invocations)
		})
	}
}

func TestInvoke_WarmInstanceIsReused(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{Name: "warm"})

	first, err := invokeEcho(context.Background(), h, "warm", echoRequest{Action: "echo"})
	require.NoError(t, err)
	second, err := invokeEcho(context.Background(), h, "warm", echoRequest{Action: "echo"})
	require.NoError(t, err)

	assert.Equal(t, first.PID, second.PID)
	st := h.Stats("warm")
	assert.Equal(t, 2, st.Invocations)
	assert.Equal(t, 1, st.ColdStarts, "the second call is warm")
	assert.Equal(t, 1, st.Running)
	require.Len(t, st.ColdStartDurations, 1)
	assert.Positive(t, st.ColdStartDurations[0])
}

func TestUpdateEnv_NewInvocationsRunWithTheNewEnvironment(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{Name: "conf", Concurrency: 1, Env: map[string]string{"WSGATE_A": "1", "WSGATE_B": "kept"}})
	ctx := context.Background()

	before, err := invokeEcho(ctx, h, "conf", echoRequest{Action: "env"})
	require.NoError(t, err)
	assert.Equal(t, "1", before.Env["WSGATE_A"])

	// Busy while configured: it finishes its invocation on the old
	// environment, then retires; the next invocation starts afresh.
	slow := make(chan error, 1)
	go func() {
		_, err := invokeEcho(ctx, h, "conf", echoRequest{Action: "sleep", MS: 300})
		slow <- err
	}()
	require.Eventually(t, func() bool { return h.busy("conf") }, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, h.UpdateEnv("conf", map[string]string{"WSGATE_A": "2", "WSGATE_C": "new"}))
	after, err := invokeEcho(ctx, h, "conf", echoRequest{Action: "env"})
	require.NoError(t, err)
	require.NoError(t, <-slow)

	assert.NotEqual(t, before.PID, after.PID, "a fresh instance")
	assert.Equal(t, "2", after.Env["WSGATE_A"])
	assert.Equal(t, "kept", after.Env["WSGATE_B"])
	assert.Equal(t, "new", after.Env["WSGATE_C"])

	// An idle instance retires at once; an empty value unsets.
	require.NoError(t, h.UpdateEnv("conf", map[string]string{"WSGATE_C": ""}))
	last, err := invokeEcho(ctx, h, "conf", echoRequest{Action: "env"})
	require.NoError(t, err)
	assert.NotEqual(t, after.PID, last.PID)
	assert.NotContains(t, last.Env, "WSGATE_C")
	assert.Equal(t, 3, h.Stats("conf").ColdStarts)
	assert.Eventually(t, func() bool { return h.Stats("conf").Running == 1 }, 5*time.Second, 10*time.Millisecond, "retired processes are gone")

	assert.ErrorIs(t, h.UpdateEnv("nope", nil), ErrUnknownFunction)
}

func TestInvoke_ContextEndingWhileWaitingForAnInstanceReturnsItsError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{
			name: "deadline",
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			},
			want: context.DeadlineExceeded,
		},
		{
			name: "cancel",
			ctx: func() (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				return ctx, cancel
			},
			want: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, rec := newHost(t, Function{Name: "busy", Concurrency: 1})
			release := filepath.Join(t.TempDir(), "release")
			holder := invokeAsync(context.Background(), h, "busy", echoRequest{Action: "block", Value: release})
			rec.waitForInvokes(t, "block", 1)

			ctx, cancel := tt.ctx()
			defer cancel()
			_, err := invokeEcho(ctx, h, "busy", echoRequest{Action: "echo"})

			require.ErrorIs(t, err, tt.want)
			var fe *FunctionError
			assert.False(t, errors.As(err, &fe))
			touch(t, release)
			require.NoError(t, receive(t, holder).err)
			st := h.Stats("busy")
			assert.Equal(t, 1, st.Invocations, "the abandoned call is not an invocation")
			assert.Equal(t, 1, st.ColdStarts)
		})
	}
}

func TestInvoke_CancelledCallerLeavesInvocationRunning(t *testing.T) {
	t.Parallel()
	h, rec := newHost(t, Function{Name: "abandoned", Concurrency: 1})
	release := filepath.Join(t.TempDir(), "release")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	abandoned := invokeAsync(ctx, h, "abandoned", echoRequest{Action: "block", Value: release})
	pid := rec.waitForInvokes(t, "block", 1)[0]

	cancel()
	require.ErrorIs(t, receive(t, abandoned).err, context.Canceled)
	touch(t, release)
	resp, err := invokeEcho(context.Background(), h, "abandoned", echoRequest{Action: "echo"})

	require.NoError(t, err)
	assert.Equal(t, pid, resp.PID, "the process finished the abandoned invocation and stayed warm")
	st := h.Stats("abandoned")
	assert.Equal(t, 2, st.Invocations)
	assert.Equal(t, 0, st.Errors)
	assert.Equal(t, 1, st.ColdStarts)
}

func TestInvoke_InitFailureFailsTheInvocationThatStartedIt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		env         map[string]string
		wantType    string
		wantMessage string
		wantLog     string
	}{
		{
			name:        "exit before the first next",
			env:         map[string]string{"ECHO_INIT": "exit"},
			wantType:    ErrorTypeExit,
			wantMessage: `^RequestId: [0-9a-f-]{36} Error: Runtime exited with error: exit status 7$`,
			wantLog:     "init: giving up",
		},
		{
			name:        "posted init error",
			env:         map[string]string{"ECHO_INIT": "init-error"},
			wantType:    "Init.BadConfig",
			wantMessage: `^WSGATE_TABLE is not set$`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h, rec := newHost(t, Function{Name: "broken", Env: tt.env})

			for attempt := 1; attempt <= 2; attempt++ {
				_, err := invokeEcho(context.Background(), h, "broken", echoRequest{Action: "echo"})

				fe := requireFunctionError(t, err)
				assert.Equal(t, tt.wantType, fe.Type)
				assert.Regexp(t, tt.wantMessage, fe.Message)
				st := h.Stats("broken")
				assert.Equal(t, attempt, st.ColdStarts, "each invocation tries a new process")
				assert.Equal(t, attempt, st.Errors)
				assert.Equal(t, 0, st.Running)
				assert.Empty(t, st.ColdStartDurations)
			}
			if tt.wantLog != "" {
				assert.Contains(t, rec.all(), logLine{"broken", tt.wantLog})
			}
		})
	}
}

func TestInvoke_ColdStartThatNeverAsksForWorkTimesOut(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{
		Name: "hangs",
		Env:  map[string]string{"ECHO_INIT": "slow", "ECHO_INIT_MS": "600000"},
	})
	h.mu.Lock()
	h.functions["hangs"].initLimit = 300 * time.Millisecond // instead of Lambda's 10 s
	h.mu.Unlock()

	_, err := invokeEcho(context.Background(), h, "hangs", echoRequest{Action: "echo"})

	fe := requireFunctionError(t, err)
	assert.Equal(t, ErrorTypeTimeout, fe.Type)
	assert.Regexp(t, `^RequestId: [0-9a-f-]{36} Error: Init phase timed out after 0\.30 seconds$`, fe.Message)
	st := h.Stats("hangs")
	assert.Equal(t, 0, st.Running, "the process was killed")
	assert.Equal(t, 1, st.Errors)
}

func TestInvoke_ExecutableThatCannotStartIsInvalidEntrypoint(t *testing.T) {
	t.Parallel()
	garbage := filepath.Join(t.TempDir(), "bootstrap")
	require.NoError(t, os.WriteFile(garbage, []byte("not a program"), 0o755))
	h, _ := newHost(t, Function{Name: "garbage", Path: garbage})

	_, err := invokeEcho(context.Background(), h, "garbage", echoRequest{Action: "echo"})

	fe := requireFunctionError(t, err)
	assert.Equal(t, ErrorTypeEntrypoint, fe.Type)
	// "exec format error", or "text file busy" if another test forked while
	// the file was open for writing (golang/go#22315).
	assert.Regexp(t, `^RequestId: [0-9a-f-]{36} Error: fork/exec .*/bootstrap: `, fe.Message)
	st := h.Stats("garbage")
	assert.Equal(t, Stats{Invocations: 1, Errors: 1, MaxConcurrentExecutions: 1}, st)
}

func TestInvoke_ContextEndingDuringColdStartLeavesTheInstanceForTheNext(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{
		Name:        "slowstart",
		Concurrency: 1,
		Env:         map[string]string{"ECHO_INIT": "slow", "ECHO_INIT_MS": "500"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()

	_, err := invokeEcho(ctx, h, "slowstart", echoRequest{Action: "echo"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = invokeEcho(context.Background(), h, "slowstart", echoRequest{Action: "echo"})

	require.NoError(t, err)
	st := h.Stats("slowstart")
	assert.Equal(t, 1, st.ColdStarts, "the second call used the process the first one started")
	assert.Equal(t, 1, st.Invocations)
}

func TestInvoke_OversizedResponseIsFunctionError(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{Name: "big"})

	_, err := invokeEcho(context.Background(), h, "big", echoRequest{Action: "echo", Value: strings.Repeat("a", maxResponseBytes)})

	fe := requireFunctionError(t, err)
	assert.Equal(t, ErrorTypeTooLarge, fe.Type)
	_, err = invokeEcho(context.Background(), h, "big", echoRequest{Action: "echo"})
	require.NoError(t, err)
}

func TestInvoke_UnknownFunctionIsErrUnknownFunction(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{Name: "known"})

	_, err := h.Invoke(context.Background(), "unknown", []byte(`{}`))

	require.ErrorIs(t, err, ErrUnknownFunction)
	assert.Equal(t, Stats{}, h.Stats("unknown"))
}

func TestRuntimeAPI_UnknownRequestIDIsBadRequest(t *testing.T) {
	t.Parallel()
	h, _ := newHost(t, Function{Name: "bogus"})

	resp, err := invokeEcho(context.Background(), h, "bogus", echoRequest{Action: "bogus-response"})

	require.NoError(t, err, "the real invocation is unaffected")
	assert.Equal(t, 400, resp.Status)
}

func TestRegister_RejectsWhatCannotRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "bootstrap")
	require.NoError(t, os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644))

	tests := []struct {
		name string
		f    Function
	}{
		{name: "no name", f: Function{Path: echoBootstrap}},
		{name: "missing file", f: Function{Name: "f", Path: filepath.Join(dir, "missing")}},
		{name: "directory", f: Function{Name: "f", Path: dir}},
		{name: "not executable", f: Function{Name: "f", Path: notExecutable}},
		{name: "negative concurrency", f: Function{Name: "f", Path: echoBootstrap, Concurrency: -1}},
		{name: "already registered", f: Function{Name: "taken", Path: echoBootstrap}},
	}
	h, _ := newHost(t, Function{Name: "taken"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Error(t, h.Register(tt.f))
		})
	}
	require.NoError(t, h.Register(Function{Name: "relative", Path: mustRel(t, echoBootstrap)}))
}

func mustRel(t *testing.T, path string) string {
	t.Helper()
	wd, err := os.Getwd()
	require.NoError(t, err)
	rel, err := filepath.Rel(wd, path)
	require.NoError(t, err)
	return rel
}

func TestLog_ForwardsEveryLineOfStdoutAndStderr(t *testing.T) {
	t.Parallel()
	h, rec := newHost(t, Function{Name: "logs"})
	const long = 300 << 10

	_, err := invokeEcho(context.Background(), h, "logs", echoRequest{Action: "log", N: long, Value: "hello"})
	require.NoError(t, err)

	has := func(match func(logLine) bool) func() bool {
		return func() bool { return slices.ContainsFunc(rec.all(), match) }
	}
	assert.Eventually(t, has(func(l logLine) bool { return l.function == "logs" && l.text == strings.Repeat("x", long) }),
		waitFor, tick, "a 300 KB stdout line arrives whole")
	assert.Eventually(t, has(func(l logLine) bool { return l.function == "logs" && strings.HasSuffix(l.text, "to stderr: hello") }),
		waitFor, tick, "stderr lines arrive")
	assert.Eventually(t, has(func(l logLine) bool { return strings.HasPrefix(l.text, `{"action":"log"`) }),
		waitFor, tick, "the handler's JSON log line arrives")
}

func TestClose_KillsProcessesAndFailsInFlightInvocations(t *testing.T) {
	t.Parallel()
	h, rec := newHost(t, Function{Name: "closing", Concurrency: 2})
	never := filepath.Join(t.TempDir(), "never")
	first := invokeAsync(context.Background(), h, "closing", echoRequest{Action: "block", Value: never})
	second := invokeAsync(context.Background(), h, "closing", echoRequest{Action: "block", Value: never})
	pids := rec.waitForInvokes(t, "block", 2)
	for _, pid := range pids {
		require.False(t, processGone(pid))
	}

	require.NoError(t, h.Close())

	for _, pid := range pids {
		assert.True(t, processGone(pid), "pid %d outlived Close", pid)
	}
	assert.ErrorIs(t, receive(t, first).err, ErrClosed)
	assert.ErrorIs(t, receive(t, second).err, ErrClosed)
	assert.Equal(t, 0, h.Stats("closing").Running)
	_, err := h.Invoke(context.Background(), "closing", []byte(`{}`))
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorIs(t, h.Register(Function{Name: "late", Path: echoBootstrap}), ErrClosed)
	assert.NoError(t, h.Close(), "Close is idempotent")
}

// Not parallel: it counts the goroutines of the whole test binary.
func TestClose_LeavesNoGoroutinesBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	h := New(Options{Log: func(string, []byte) {}})
	require.NoError(t, h.Register(Function{Name: "leaks", Path: echoBootstrap, Timeout: time.Second}))
	ctx := context.Background()
	_, err := invokeEcho(ctx, h, "leaks", echoRequest{Action: "echo"})
	require.NoError(t, err)
	_, err = invokeEcho(ctx, h, "leaks", echoRequest{Action: "exit", N: 1})
	require.Error(t, err)
	_, err = invokeEcho(ctx, h, "leaks", echoRequest{Action: "sleep", MS: 60_000})
	require.Error(t, err)
	_, err = invokeEcho(ctx, h, "leaks", echoRequest{Action: "echo"})
	require.NoError(t, err)

	require.NoError(t, h.Close())

	// Polled here, not with Eventually, which runs its condition in a goroutine.
	for end := time.Now().Add(waitFor); runtime.NumGoroutine() > before && time.Now().Before(end); {
		time.Sleep(tick)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// Not parallel: it kills a helper process that runs a host.
func TestHost_ChildrenDieWithTheHostProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Pdeathsig is Linux only")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", bootstrapEnv+"="+echoBootstrap)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "the helper never reported its function's pid")
	child, err := strconv.Atoi(strings.TrimSpace(line))
	require.NoError(t, err, "helper said %q", line)
	require.False(t, processGone(child))

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	assert.Eventually(t, func() bool { return processGone(child) }, waitFor, tick, "function process %d outlived its host", child)
}

// runHostHelper is the helper process of TestHost_ChildrenDieWithTheHostProcess:
// it starts one function process, prints its pid and waits to be killed.
func runHostHelper() {
	h := New(Options{})
	if err := h.Register(Function{Name: "orphan", Path: os.Getenv(bootstrapEnv)}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	resp, err := invokeEcho(context.Background(), h, "orphan", echoRequest{Action: "echo"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(resp.PID)
	select {}
}

// busy reports whether an instance of the function holds an invocation.
func (h *Host) busy(name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for inst := range h.functions[name].instances {
		if inst.state == stateBusy {
			return true
		}
	}
	return false
}

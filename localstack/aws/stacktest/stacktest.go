// Package stacktest runs end-to-end tests on the real local stack: the four
// functions built for this machine once per test binary, one DynamoDB Local
// per test binary, and a fresh stack (ephemeral ports, new table) per test.
package stacktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// EnvFunctions names a folder of prebuilt <function>/bootstrap to use.
const EnvFunctions = "WSGATE_TEST_FUNCTIONS"

// Functions are the functions the stack runs.
var Functions = []string{stack.FnConnect, stack.FnDisconnect, stack.FnMessage, stack.FnBroadcast}

// Main builds the functions, provides DynamoDB Local, and runs the tests:
//
//	func TestMain(m *testing.M) { stacktest.Main(m) }
func Main(m *testing.M) {
	if os.Getenv(EnvFunctions) == "" {
		dir, err := os.MkdirTemp("", "wsgate-functions-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "stacktest:", err)
			os.Exit(1)
		}
		if err := Build(dir, Functions...); err != nil {
			fmt.Fprintln(os.Stderr, "stacktest:", err)
			os.Exit(1)
		}
		os.Setenv(EnvFunctions, dir)
		defer os.RemoveAll(dir)
	}
	storetest.Main(m)
}

// Build compiles functions/<name> for this machine into dir/<name>/bootstrap,
// as `make dev` does.
func Build(dir string, names ...string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(names))
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = BuildPackage(filepath.Join(dir, n, "bootstrap"), "github.com/wsgate/wsgate/functions/"+n)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// BuildPackage compiles a Lambda main package for this machine into out.
func BuildPackage(out, pkg string) error {
	cmd := exec.Command("go", "build", "-tags", "lambda.norpc", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// RetryScale shortens Lambda's retry delays in tests: 200 ms and 400 ms
// instead of AWS's 1 and 2 minutes for a failed broadcast of an event, at
// most 33 ms instead of 10 s between a failed stream batch's retries.
// Every other harsh behaviour of the stack keeps its default.
const RetryScale = 0.2 / 60

// Start runs a fresh stack for the test; opts adjust the defaults first.
func Start(t testing.TB, opts ...func(*stack.Options)) *stack.Stack {
	t.Helper()
	ep, err := url.Parse(storetest.Endpoint(t))
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	o := stack.Options{
		WebSocketAddr: "127.0.0.1:0", AWSAddr: "127.0.0.1:0", DynamoDBAddr: ep.Host,
		FunctionsDir: os.Getenv(EnvFunctions), Table: "wsgate-e2e-" + hex.EncodeToString(b[:]),
		Concurrency: 4, RetryScale: RetryScale,
		// The emulator's own warnings (a failed stream read, a retried
		// batch) are shown as the functions' errors are; all its lines
		// with -v.
		Log: slog.New(slog.NewJSONHandler(testLog{t}, &slog.HandlerOptions{Level: logLevel()})),
		FunctionLog: func(fn string, line []byte) {
			if testing.Verbose() || strings.Contains(string(line), `"level":"ERROR"`) {
				t.Logf("%s: %s", fn, line)
			}
		},
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := stack.Start(ctx, o)
	if err != nil {
		t.Fatalf("start the local stack: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// LoadEnv loads an env file, such as examples/wsgate.env, the way its
// readers are told to (`set -a; . FILE; set +a` in bash), and returns the
// WSGATE_ variables it set: a value the shell would mangle fails here too.
func LoadEnv(t testing.TB, path string) map[string]string {
	t.Helper()
	cmd := exec.Command("bash", "-c", `set -a; . "$1"; set +a; env -0`, "bash", path)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // only what the file sets
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("load %s as the README says: %v", path, err)
	}
	env := map[string]string{}
	for _, kv := range strings.Split(string(out), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "WSGATE_") {
			env[k] = v
		}
	}
	return env
}

// testLog writes the stack's own log lines to the test's.
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Logf("stack: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

func logLevel() slog.Level {
	if testing.Verbose() {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

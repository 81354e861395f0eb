package devcli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/lambdahost"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/devtools/console"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
)

// Dev runs the local stack until ctx ends (Ctrl-C).
func Dev(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("dev", st)
	wsAddr := fs.String("ws-addr", "127.0.0.1:4510", "WebSocket clients (and the console)")
	awsAddr := fs.String("aws-addr", "127.0.0.1:4566", "AWS APIs: EventBridge, SQS, DynamoDB, @connections")
	ddbAddr := fs.String("dynamodb-addr", "127.0.0.1:8000", "DynamoDB Local (started here unless something listens already)")
	ddbPath := fs.String("data", "", "keep DynamoDB data in this folder (default: in memory)")
	functions := fs.String("functions", "bin/local", "folder with <function>/bootstrap built for this machine")
	idle := fs.Duration("idle-timeout", 10*time.Minute, "close connections idle this long (API Gateway: 10m)")
	quiet := fs.Bool("quiet", false, "do not print the functions' log lines")
	// The stack is as harsh as AWS by default; these tune or soften it.
	serial := fs.Bool("serial-frames", false, "run one connection's frames one at a time (API Gateway runs them at once)")
	connectLag := fs.Duration("connect-lag", stack.DefaultConnectLag, "how long @connections answers 410 after $connect (negative: not at all)")
	readLag := fs.Duration("read-lag", stack.DefaultReadLag, "how stale DynamoDB reads without ConsistentRead are (negative: never)")
	noConflicts := fs.Bool("no-conflicts", false, "let DynamoDB transactions touching one item at once all succeed")
	noSignatures := fs.Bool("no-signatures", false, "accept AWS API requests without checking their SigV4 signature")
	serialStream := fs.Bool("serial-stream", false, "read the table's stream in one lane and retry a failed batch until it succeeds (Lambda runs shards in parallel, splits, retries and discards)")
	retryScale := fs.Float64("retry-scale", 1, "scale Lambda's retry delays of a failed broadcast (1 and 2 minutes on AWS)")
	accountConc := fs.Int("account-concurrency", lambdahost.DefaultAccountConcurrency, "the account's Lambda concurrency: invocations over it are throttled (synchronous ones fail, asynchronous ones are retried); 0 or negative: no limit")
	queueMaxConc := fs.Int("queue-max-concurrency", stack.DefaultQueueMaxConcurrency, "the task queue mapping's MaximumConcurrency (2..1000, as the CDK stack's queueMaxConcurrency)")
	events := eventDelivery(fs)
	capScale := capacityScaleFlag(fs)
	var env, extra, reserved repeated
	fs.Var(&reserved, "reserved-concurrency", "NAME=N: a function's reserved concurrency, as the CDK stack's messageReservedConcurrency sets it (repeatable); over it the function is throttled")
	fs.Var(&extra, "function", "NAME=PATH: host another Lambda function (a bootstrap built for this machine) behind the local Lambda Invoke API, e.g. a publish hook named by WSGATE_PUBLISH_HOOK (repeatable)")
	fs.Var(&env, "env", "KEY=VALUE for the functions, e.g. WSGATE_MAX_MESSAGE_BYTES=1024 (repeatable; WSGATE_* variables of this shell pass through too)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret := envOr(config.EnvJWTSecret, DevSecret)
	dupRate, reorder := events()
	fnEnv := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "WSGATE_") && k != config.EnvJWTSecret {
			fnEnv[k] = v
		}
	}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
		fnEnv[k] = v
	}
	extraFns := map[string]string{}
	for _, kv := range extra {
		name, path, ok := strings.Cut(kv, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("--function %q: want NAME=PATH", kv)
		}
		extraFns[name] = path
	}

	reservedConc := stack.DefaultReservedConcurrency()
	for _, kv := range reserved {
		name, n, ok := strings.Cut(kv, "=")
		v, err := strconv.Atoi(n)
		if !ok || name == "" || err != nil || v < 0 {
			return fmt.Errorf("--reserved-concurrency %q: want NAME=N, N a whole number 0 or more", kv)
		}
		reservedConc[name] = v
	}
	if *queueMaxConc < 2 || *queueMaxConc > 1000 {
		return fmt.Errorf("--queue-max-concurrency %d: outside 2..1000 (Lambda's limits for SQS event sources)", *queueMaxConc)
	}
	if *accountConc <= 0 {
		*accountConc = -1 // stack.Options: negative is no limit
	}

	var outMu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(st.Err, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var fnLog func(string, []byte)
	if !*quiet {
		fnLog = func(fn string, line []byte) {
			outMu.Lock()
			defer outMu.Unlock()
			fmt.Fprintf(st.Err, "%-10s %s\n", fn, line)
		}
	}
	// A refused event is said plainly, even with --quiet: its publisher
	// got an event id from PutEvents and nothing else.
	fnLog = refusalLines(st.Err, &outMu, fnLog)
	minter := auth.Minter{Alg: "HS256", Key: []byte(secret)}

	start := time.Now()
	fmt.Fprintln(st.Err, "starting the local stack (DynamoDB Local, functions, WebSocket and AWS endpoints)...")
	s, err := stack.Start(ctx, stack.Options{
		WebSocketAddr: *wsAddr, AWSAddr: *awsAddr, DynamoDBAddr: *ddbAddr, DynamoDBPath: *ddbPath,
		FunctionsDir: *functions, JWTSecret: secret, Env: fnEnv, IdleTimeout: *idle,
		Log: logger, FunctionLog: fnLog, DevTokens: console.DevTokens(minter), Console: console.ForStack,
		SerialFrames: *serial, ConnectLag: *connectLag, ReadLag: *readLag, NoConflicts: *noConflicts,
		CapacityScale: capScale.scale,
		NoSignatures:  *noSignatures, RetryScale: *retryScale, SerialStream: *serialStream, Extra: extraFns,
		DuplicateRate: dupRate, ReorderWindow: reorder,
		AccountConcurrency: *accountConc, ReservedConcurrency: reservedConc, QueueMaxConcurrency: *queueMaxConc,
	})
	if err != nil {
		return err
	}
	defer s.Close()
	tok, err := minter.Token(auth.Grant{Sub: "dev", Topics: []string{">"}, TTL: 24 * time.Hour})
	if err != nil {
		return err
	}
	outMu.Lock()
	banner(st, s, tok, time.Since(start))
	outMu.Unlock()

	<-ctx.Done()
	fmt.Fprintln(st.Err, "stopping...")
	return nil
}

// banner prints the stack's endpoints and ready commands. The AWS CLI line
// sets AWS_DEFAULT_REGION, which both AWS CLI versions read (version 1 ignores
// AWS_REGION): https://docs.aws.amazon.com/cli/v1/userguide/cli-configure-envvars.html
func banner(st Streams, s *stack.Stack, tok string, took time.Duration) {
	consoleURL := "http" + strings.TrimPrefix(s.WebSocketURL, "ws") + "console"
	ddb := s.DynamoDBEndpoint
	if !s.StartedDynamoDB {
		ddb += " (already running; reused)"
	}
	fmt.Fprintf(st.Out, `
wsgate local stack is up (stage %s, started in %s)
  WebSocket   %s
  AWS APIs    %s   EventBridge PutEvents, SQS, DynamoDB, @connections;
              requests signed with the dev credentials test / test, checked as AWS does
  DynamoDB    %s   table %s
  Console     %s
  JWT secret  %s   HS256 (set WSGATE_JWT_SECRET to change)
  Dev token   %s
              (sub dev, topics >, valid 24h; mint others with: bin/wsgate token --sub alice --topics 'demo.>')

Listen in another terminal:
  bin/wsgate listen --url %s --token %s --subscribe 'demo.>'

Publish an event:
  bin/wsgate publish --endpoint %s --topic demo.hello --payload '{"hello":"world"}'
or with the AWS CLI:
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
  aws --endpoint-url %s events put-events --entries '[{"EventBusName":"%s","Source":"demo","DetailType":"demo","Detail":"{\"topic\":\"demo.hello\",\"payload\":{\"hello\":\"world\"}}"}]'

Ctrl-C stops everything.
`, s.Stage, took.Round(time.Millisecond), s.WebSocketURL, s.AWSEndpoint, ddb, s.Table, consoleURL, s.Secret, tok, s.WebSocketURL, tok, s.AWSEndpoint, s.AWSEndpoint, s.BusName)
}

// refusalLines prints "event <id> refused: <reason>" for each event the
// broadcast function refused, then passes every line on to next.
func refusalLines(w io.Writer, mu *sync.Mutex, next func(string, []byte)) func(string, []byte) {
	return func(fn string, line []byte) {
		if fn == stack.FnBroadcast {
			if r, ok := stack.ParseRefusal(line); ok {
				mu.Lock()
				fmt.Fprintf(w, "event %s refused: %s\n", r.EventID, r.Reason)
				mu.Unlock()
			}
		}
		if next != nil {
			next(fn, line)
		}
	}
}

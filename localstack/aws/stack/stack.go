// Package stack assembles the whole gateway on one machine: DynamoDB Local,
// the four functions as real bootstrap binaries behind a Lambda Runtime API
// host, the WebSocket API and its @connections API, EventBridge PutEvents
// with the stack's rule, and the SQS task queue with its event source
// mapping — every part speaking the AWS wire API the functions use.
package stack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/apigw"
	"github.com/wsgate/wsgate/localstack/aws/awsauth"
	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"github.com/wsgate/wsgate/localstack/aws/ddbstreams"
	"github.com/wsgate/wsgate/localstack/aws/edge"
	"github.com/wsgate/wsgate/localstack/aws/eventbus"
	"github.com/wsgate/wsgate/localstack/aws/eventpattern"
	"github.com/wsgate/wsgate/localstack/aws/lambdahost"
	"github.com/wsgate/wsgate/localstack/aws/sqslocal"
	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
	"github.com/wsgate/wsgate/shared/topic"
)

// Function names, as the CDK stack names them for stage "local".
const (
	FnConnect    = "connect"
	FnDisconnect = "disconnect"
	FnMessage    = "message"
	FnBroadcast  = "broadcast"
)

// DevSecret signs tokens when WSGATE_JWT_SECRET is not set.
const DevSecret = "wsgate-dev-secret"

// Options configure a local stack. The zero value of each field is the
// documented default of `make dev`.
type Options struct {
	// WebSocketAddr serves clients (and the console); default 127.0.0.1:4510.
	WebSocketAddr string
	// AWSAddr serves the AWS APIs; default 127.0.0.1:4566.
	AWSAddr string
	// DynamoDBAddr is where DynamoDB Local listens; when nothing does, it is
	// started there (default 127.0.0.1:8000); port 0 starts one on a port
	// of its own choosing. DynamoDBPath keeps its data in a folder instead
	// of memory.
	DynamoDBAddr string
	DynamoDBPath string
	// FunctionsDir holds <function>/bootstrap for connect, disconnect,
	// message and broadcast, built for this machine.
	FunctionsDir string
	// FunctionPaths overrides the bootstrap of single functions.
	FunctionPaths map[string]string
	Stage         string
	Table         string
	// JWTSecret signs and checks tokens (HS256); default DevSecret.
	JWTSecret string
	// Env adds or overrides function environment (WSGATE_* limits...).
	Env map[string]string
	// Concurrency is the number of instances each function may run;
	// BroadcastConcurrency, when set, overrides it for broadcast, which runs
	// one instance per fan-out shard in parallel.
	Concurrency          int
	BroadcastConcurrency int
	// Extra registers more functions (name to bootstrap path), with the
	// same environment, for tools such as make bench's baseline.
	Extra map[string]string
	// FunctionTimeout bounds each invocation (default 30 s).
	FunctionTimeout time.Duration
	// IdleTimeout and MaxLifetime of WebSocket connections (10 min, 2 h).
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// Log receives the stack's own JSON log lines; FunctionLog the
	// functions' output lines. Either may be nil.
	Log         *slog.Logger
	FunctionLog func(function string, line []byte)
	// Console, when set, builds the handler of /console on the WebSocket
	// port (given the stack, for what the page does locally).
	Console func(*Stack) http.Handler
	// DevTokens, when set, is served at /_wsgate/token on the AWS port.
	DevTokens http.Handler

	// The stack reproduces what AWS does that a kind emulator would hide
	// (the README's "how the local stack differs from AWS"). Each behaviour
	// is on by default; these fields tune one or switch it off.

	// SerialFrames runs one connection's frames one at a time, in order;
	// API Gateway invokes $default for every frame at once.
	SerialFrames bool
	// ConnectLag is how long after $connect returns a connection still
	// answers 410 to @connections, as API Gateway does while it registers
	// it: DefaultConnectLag when 0, none when negative.
	ConnectLag time.Duration
	// NoSignatures accepts requests to the AWS endpoint without checking
	// their SigV4 signature against the dev credentials.
	NoSignatures bool
	// ReadLag is how far behind the table DynamoDB reads without
	// ConsistentRead are served (from a replica fed every write after the
	// lag): DefaultReadLag when 0, none when negative.
	ReadLag time.Duration
	// RetryScale scales the delays of Lambda's retries of a failed
	// asynchronous invocation (the broadcast function's events): 1 minute,
	// then 2, on AWS; the pacing of a throttled one (1 s doubling to 5
	// minutes); and of a failed stream batch (200 ms doubling to 10 s). 0
	// means 1; tests shorten them.
	RetryScale float64
	// DuplicateRate is the share of events EventBridge delivers to a
	// target twice (the same event id and bytes, a separate invocation,
	// possibly at the same time): DefaultDuplicateRate when 0, none when
	// negative.
	DuplicateRate float64
	// ReorderWindow holds each EventBridge delivery back a random time
	// below it, so events put that close together reach their target in
	// any order: DefaultReorderWindow when 0, none when negative.
	ReorderWindow time.Duration
	// ReorderRate is the share of deliveries held back within the window:
	// DefaultReorderRate when 0, every one when 1 or more.
	ReorderRate float64
	// NoConflicts lets DynamoDB transactions and writes that touch one item
	// at the same time all succeed; DynamoDB cancels one of them.
	NoConflicts bool
	// CapacityScale scales DynamoDB's per-partition ceilings (3,000 read
	// and 1,000 write units a second per partition key value) on the keys
	// whose load grows with the audience (ScaledKeyPrefixes; the others
	// keep AWS's): 0.01 makes their ceilings a hundredth, so this machine
	// is a scale model of audiences a hundred times larger. DefaultCapacityScale (AWS's
	// ceilings) when 0; negative turns the ceilings off (units are still
	// counted, at GET /_wsgate/capacity).
	CapacityScale float64
	// AccountConcurrency is the account's Lambda concurrency limit, shared
	// by the functions without reserved concurrency: an invocation over it
	// is throttled (synchronous: 429 TooManyRequestsException, which API
	// Gateway turns into a 500; asynchronous: retried from 1 s doubling to
	// 5 minutes). lambdahost.DefaultAccountConcurrency (1,000, AWS's
	// default quota) when 0, no limit when negative. Concurrency is this
	// machine's limit instead: over it invocations wait.
	AccountConcurrency int
	// ReservedConcurrency is each function's reserved concurrency, as the
	// CDK stack sets it (ReservedConcurrentExecutions): DefaultReservedConcurrency
	// when nil. A function at its reservation is throttled.
	ReservedConcurrency map[string]int
	// QueueMaxConcurrency is the task queue's event source mapping's
	// ScalingConfig.MaximumConcurrency, as the CDK stack sets it:
	// DefaultQueueMaxConcurrency when 0.
	QueueMaxConcurrency int
	// DisconnectMaxConcurrency is the disconnect queue's event source
	// mapping's MaximumConcurrency, as the CDK stack sets it:
	// queue.DefaultDisconnectMaxConcurrency when 0.
	DisconnectMaxConcurrency int
	// ScalingScale scales the pace at which the task queue's pollers grow
	// (Lambda adds up to 300 concurrent batches a minute, one every 200 ms,
	// while messages wait): 0 means 1; tests shorten it.
	ScalingScale float64
	// SerialStream reads the table's stream in one lane, in order, and
	// retries a failed batch whole until it succeeds. Lambda's mapping
	// runs shards in parallel and splits, retries and discards a failed
	// batch as the CDK stack configures it (store.Stream*).
	SerialStream bool
}

// Defaults of the harsh behaviours: the local gateway's registration lag
// after $connect, how stale an eventually consistent read may be, and how
// loosely EventBridge delivers (a share of events twice; each delivery
// held back up to a window, well under broadcast.OrderWindow, so the
// gateway's ordering promise still holds).
const (
	DefaultConnectLag    = 300 * time.Millisecond
	DefaultReadLag       = 500 * time.Millisecond
	DefaultDuplicateRate = 0.02
	DefaultReorderWindow = 200 * time.Millisecond
	// DefaultReorderRate holds one delivery in twenty: a low rate, as the
	// README's ordering promise assumes of a bus that usually keeps order.
	DefaultReorderRate = 0.05
	// DefaultCapacityScale holds each partition key to AWS's own ceilings.
	DefaultCapacityScale = 1.0
)

// What the CDK stack (infra/) configures by default, mirrored here: infra is
// its own module and the local stack may not import it, so
// TestCDKDefaultsAgree reads infra/settings.go to keep the two equal.
const (
	// DefaultQueueMaxConcurrency is infra.DefaultQueueMaxConcurrency: the
	// task queue mapping's ScalingConfig.MaximumConcurrency.
	DefaultQueueMaxConcurrency = 50
	// DefaultMessageReservedConcurrency is
	// infra.DefaultMessageReservedConcurrency: none (0). Only the message
	// function may have a reservation in the CDK stack.
	DefaultMessageReservedConcurrency = 0
)

// DefaultReservedConcurrency is the functions' reserved concurrency as the
// CDK stack sets it by default: none has any.
func DefaultReservedConcurrency() map[string]int {
	return map[string]int{FnMessage: DefaultMessageReservedConcurrency}
}

// Stack is a running local gateway.
type Stack struct {
	WebSocketURL     string
	AWSEndpoint      string
	DynamoDBEndpoint string
	Stage            string
	Table            string
	BusName          string
	QueueURL         string
	DeadLetterURL    string
	// EventDeadLetterURL is the events DLQ: the stream mapping's
	// on-failure destination, as in the CDK stack.
	EventDeadLetterURL string
	// DisconnectQueueURL is the queue $disconnect's SQS integration sends
	// each closed connection's id to; DisconnectDeadLetterURL its DLQ.
	DisconnectQueueURL, DisconnectDeadLetterURL string

	Secret string

	Gateway *apigw.Gateway
	Bus     *eventbus.Service
	SQS     *sqslocal.Service
	Host    *lambdahost.Host
	// StartedDynamoDB is true when this stack started DynamoDB Local.
	StartedDynamoDB bool

	log      *slog.Logger
	busFeed  feed // every event on the bus (GET /_wsgate/bus)
	refusals feed // events the broadcast function refused
	dynamo   *dynamolocal.Server
	ddb      *ddbproxy.Proxy
	throttle *edge.Throttle
	// The two endpoints. The stack closes the listeners itself: a server
	// that has not started serving yet does not know its listener.
	wsMu        sync.Mutex // guards the WebSocket pair, replaced by RestartWebSocket
	wsListener  net.Listener
	wsServer    *http.Server // the WebSocket API (and the console)
	awsListener net.Listener
	awsServer   *http.Server // the AWS APIs
	wsHandler   http.Handler
	fnEnv       map[string]string
	nodesMu     sync.RWMutex
	nodes       map[string]http.Handler // WebSocket nodes by connection-id prefix
	stopESM     func()
	// stopDisconnects stops the disconnect queue's event source mapping.
	stopDisconnects func()
	stopStream      func()
	stream          *ddbstreams.Running // nil: no stream mapping
	closeOnce       sync.Once
}

// ScaledKeyPrefixes are the partition keys whose load grows with the
// audience, the only ones a capacity scale divides the ceilings of: a
// pattern's subscriber buckets (P#<pattern>, and P#<pattern>#<L>#<b>
// where a pattern is spread over buckets) and their per-bucket counts
// (B#...), a presence topic's watchers (Q#) and roster (R#). An event's
// own key (E#), a topic's sequence and state (T#) and history (H#), the
// wildcard index (W#), connection and tally keys keep AWS's ceilings: the
// scale model stands for a larger audience, not for more events or
// connections a second.
var ScaledKeyPrefixes = []string{"P#", "B#", "Q#", "R#"}

// scaledKey reports whether pk is one of ScaledKeyPrefixes' keys.
func scaledKey(pk string) bool {
	for _, p := range ScaledKeyPrefixes {
		if strings.HasPrefix(pk, p) {
			return true
		}
	}
	return false
}

func (o *Options) defaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.WebSocketAddr, "127.0.0.1:4510")
	def(&o.AWSAddr, "127.0.0.1:4566")
	def(&o.DynamoDBAddr, "127.0.0.1:8000")
	def(&o.Stage, "local")
	def(&o.Table, "wsgate-"+o.Stage)
	def(&o.JWTSecret, DevSecret)
	if o.Concurrency == 0 {
		o.Concurrency = 4
	}
	if o.BroadcastConcurrency == 0 {
		o.BroadcastConcurrency = o.Concurrency
	}
	if o.FunctionTimeout == 0 {
		o.FunctionTimeout = 30 * time.Second
	}
	if o.RetryScale <= 0 {
		o.RetryScale = 1
	}
	if o.ScalingScale <= 0 {
		o.ScalingScale = 1
	}
	switch {
	case o.AccountConcurrency == 0:
		o.AccountConcurrency = lambdahost.DefaultAccountConcurrency
	case o.AccountConcurrency < 0:
		o.AccountConcurrency = 0
	}
	if o.ReservedConcurrency == nil {
		o.ReservedConcurrency = DefaultReservedConcurrency()
	}
	if o.QueueMaxConcurrency == 0 {
		o.QueueMaxConcurrency = DefaultQueueMaxConcurrency
	}
	if o.DisconnectMaxConcurrency == 0 {
		o.DisconnectMaxConcurrency = queue.DefaultDisconnectMaxConcurrency
	}
	o.ConnectLag = orDefault(o.ConnectLag, DefaultConnectLag)
	o.ReadLag = orDefault(o.ReadLag, DefaultReadLag)
	o.ReorderWindow = orDefault(o.ReorderWindow, DefaultReorderWindow)
	if o.ReorderRate <= 0 {
		o.ReorderRate = DefaultReorderRate
	}
	switch {
	case o.DuplicateRate == 0:
		o.DuplicateRate = DefaultDuplicateRate
	case o.DuplicateRate < 0:
		o.DuplicateRate = 0
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// orDefault reads a duration option: def when 0, none when negative.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Start brings the stack up; Close takes it down. A step that fails leaves
// nothing behind: what the earlier steps opened or started is closed.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	opts.defaults()
	s := &Stack{Stage: opts.Stage, Table: opts.Table, BusName: publish.BusName(opts.Stage), Secret: opts.JWTSecret, log: opts.Log}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	// Listeners first, so ":0" addresses are known before anything needs them.
	if err = s.listen(opts); err != nil {
		return nil, err
	}
	if err = s.startDynamoDB(ctx, opts); err != nil {
		return nil, err
	}
	if err = s.createQueues(opts); err != nil {
		return nil, err
	}
	if err = s.startFunctions(opts); err != nil {
		return nil, err
	}
	routes := s.routes()
	if err = routes.DisconnectQueue.Check(); err != nil {
		return nil, fmt.Errorf("the $disconnect route's SQS integration: %w", err)
	}
	s.Gateway = apigw.New(apigw.Options{
		Stage: opts.Stage, DomainName: s.wsListener.Addr().String(), IDPrefix: localPrefix,
		Routes:      routes,
		Invoker:     s.Host,
		IdleTimeout: opts.IdleTimeout, MaxLifetime: opts.MaxLifetime,
		SerialFrames: opts.SerialFrames, ConnectLag: opts.ConnectLag,
		Log: opts.Log,
	})
	if err = s.connectEvents(opts); err != nil {
		return nil, err
	}
	if err = s.serveAll(opts); err != nil {
		return nil, err
	}
	s.log.Info("local stack up", "websocket", s.WebSocketURL, "aws", s.AWSEndpoint, "dynamodb", s.DynamoDBEndpoint, "table", s.Table)
	return s, nil
}

// listen binds the WebSocket and AWS ports and records their URLs.
func (s *Stack) listen(opts Options) error {
	ws, err := net.Listen("tcp", opts.WebSocketAddr)
	if err != nil {
		return fmt.Errorf("listen for WebSocket clients on %s: %w", opts.WebSocketAddr, err)
	}
	s.wsListener = ws
	aws, err := net.Listen("tcp", opts.AWSAddr)
	if err != nil {
		return fmt.Errorf("listen for AWS APIs on %s: %w", opts.AWSAddr, err)
	}
	s.awsListener = aws
	s.WebSocketURL = "ws://" + ws.Addr().String() + "/"
	s.AWSEndpoint = "http://" + aws.Addr().String()
	return nil
}

// startDynamoDB uses the DynamoDB Local listening at opts.DynamoDBAddr or
// starts one there, creates the table, and puts the proxy that serves
// DynamoDB as AWS does (stale eventually consistent reads, transaction
// conflicts) in front of it.
func (s *Stack) startDynamoDB(ctx context.Context, opts Options) error {
	s.DynamoDBEndpoint = "http://" + opts.DynamoDBAddr
	_, port, err := net.SplitHostPort(opts.DynamoDBAddr)
	if err != nil {
		return fmt.Errorf("stack: DynamoDB address %q: %w", opts.DynamoDBAddr, err)
	}
	own := port == "0"
	if !own && dynamolocal.Listening(opts.DynamoDBAddr) {
		if !dynamolocal.Answers(ctx, s.DynamoDBEndpoint) {
			return fmt.Errorf("stack: something listens at %s but does not answer as DynamoDB (ListTables); stop it or choose another address", opts.DynamoDBAddr)
		}
		s.log.Info("using the DynamoDB already listening", "address", opts.DynamoDBAddr)
	} else {
		jar, err := dynamolocal.FindJar(".")
		if err != nil {
			return err
		}
		addr := opts.DynamoDBAddr
		if own {
			addr = "" // Start picks the port, and another when it loses one
		}
		srv, err := dynamolocal.Start(ctx, jar, dynamolocal.Options{Addr: addr, DBPath: opts.DynamoDBPath})
		if err != nil {
			return err
		}
		s.dynamo, s.StartedDynamoDB = srv, true
		s.DynamoDBEndpoint = srv.Endpoint
	}
	if err := store.CreateTable(ctx, dynamolocal.Client(s.DynamoDBEndpoint), opts.Table); err != nil {
		return err
	}
	scale := opts.CapacityScale
	switch {
	case scale == 0:
		scale = DefaultCapacityScale
	case scale < 0:
		scale = -1 // count only
	}
	ddb, err := ddbproxy.New(ddbproxy.Options{
		Backend: s.DynamoDBEndpoint, ReadLag: opts.ReadLag, Conflicts: !opts.NoConflicts, Log: opts.Log,
		CapacityScale: scale, ScaledKeys: scaledKey,
	})
	if err != nil {
		return err
	}
	s.ddb, s.throttle = ddb, edge.NewThrottle(ddb)
	return nil
}

// routes are the WebSocket API's integrations, as the CDK stack has them:
// $connect and $default invoke their functions, $disconnect sends to the
// disconnect queue (queue.DisconnectTemplate).
func (s *Stack) routes() apigw.Routes {
	return apigw.Routes{
		Connect: FnConnect, Disconnect: FnDisconnect, Default: FnMessage,
		DisconnectQueue: &apigw.QueueIntegration{
			Template: queue.DisconnectTemplate,
			Send: func(_ context.Context, body string) error {
				return s.SQS.SendMessage(s.DisconnectQueueURL, body)
			},
		},
	}
}

// awaitDisconnects waits, at most until ctx ends, for the disconnect
// queue to be empty.
func (s *Stack) awaitDisconnects(ctx context.Context) {
	for {
		visible, inFlight, delayed, err := s.SQS.Depth(s.DisconnectQueueURL)
		if err != nil || visible+inFlight+delayed == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// createQueues starts SQS with the task queue, its dead-letter queue and
// the events DLQ, as the CDK stack has them.
func (s *Stack) createQueues(opts Options) error {
	s.SQS = sqslocal.New(sqslocal.Options{BaseURL: s.AWSEndpoint})
	var err error
	if s.EventDeadLetterURL, err = s.SQS.CreateQueue(opts.Table+"-events-dlq", nil); err != nil {
		return err
	}
	timeout := int(opts.FunctionTimeout / time.Second)
	if s.QueueURL, s.DeadLetterURL, err = s.queueWithDLQ(opts.Table+"-tasks", timeout*2); err != nil {
		return err
	}
	// The disconnect queue: $disconnect's SQS integration sends to it, the
	// disconnect function drains it (the CDK stack's, with its own DLQ).
	s.DisconnectQueueURL, s.DisconnectDeadLetterURL, err = s.queueWithDLQ(opts.Table+"-disconnects", timeout*6)
	return err
}

// queueWithDLQ creates queue name and its dead-letter queue name-dlq, which
// takes a message after queue.MaxReceives receives, and returns their URLs.
func (s *Stack) queueWithDLQ(name string, visibilitySeconds int) (url, dlqURL string, err error) {
	if dlqURL, err = s.SQS.CreateQueue(name+"-dlq", nil); err != nil {
		return "", "", err
	}
	dlqARN, err := s.SQS.QueueARN(dlqURL)
	if err != nil {
		return "", "", err
	}
	redrive, err := json.Marshal(map[string]any{"deadLetterTargetArn": dlqARN, "maxReceiveCount": queue.MaxReceives})
	if err != nil {
		return "", "", err
	}
	url, err = s.SQS.CreateQueue(name, map[string]string{"VisibilityTimeout": strconv.Itoa(visibilitySeconds), "RedrivePolicy": string(redrive)})
	return url, dlqURL, err
}

// startFunctions registers the four functions (and opts.Extra) with the
// Lambda host; it starts no process: the first invocation does.
func (s *Stack) startFunctions(opts Options) error {
	s.Host = lambdahost.New(lambdahost.Options{Log: s.functionLog(opts.FunctionLog), AccountConcurrency: opts.AccountConcurrency})
	s.fnEnv = s.functionEnv(opts)
	// The functions read this configuration at start and stop on an error
	// (every handshake would answer 500): say so now, not at the first
	// request, and do not report the stack up.
	if _, err := config.Load(func(k string) string { return s.fnEnv[k] }); err != nil {
		return fmt.Errorf("the functions cannot start with this configuration: %w", err)
	}
	paths := map[string]string{}
	for _, fn := range []string{FnConnect, FnDisconnect, FnMessage, FnBroadcast} {
		paths[fn] = filepath.Join(opts.FunctionsDir, fn, "bootstrap")
	}
	maps.Copy(paths, opts.FunctionPaths)
	maps.Copy(paths, opts.Extra)
	if opts.QueueMaxConcurrency < 2 || opts.QueueMaxConcurrency > 1000 {
		return fmt.Errorf("the task queue's MaximumConcurrency %d is outside 2..1000 (Lambda's limits for SQS event sources)", opts.QueueMaxConcurrency)
	}
	if opts.DisconnectMaxConcurrency < 2 || opts.DisconnectMaxConcurrency > 1000 {
		return fmt.Errorf("the disconnect queue's MaximumConcurrency %d is outside 2..1000 (Lambda's limits for SQS event sources)", opts.DisconnectMaxConcurrency)
	}
	for fn, n := range opts.ReservedConcurrency {
		if _, ok := paths[fn]; !ok {
			return fmt.Errorf("reserved concurrency for %s: no such function", fn)
		}
		if n < 0 {
			return fmt.Errorf("reserved concurrency for %s: %d is negative", fn, n)
		}
	}
	// Reservations first: Register checks each against what the account
	// has left, so the order must not depend on the map's.
	names := slices.Sorted(maps.Keys(paths))
	slices.SortStableFunc(names, func(a, b string) int { return opts.ReservedConcurrency[b] - opts.ReservedConcurrency[a] })
	for _, fn := range names {
		path := paths[fn]
		concurrency := opts.Concurrency
		if fn == FnBroadcast {
			concurrency = opts.BroadcastConcurrency
		}
		f := lambdahost.Function{
			Name: fn, Path: path, Env: s.fnEnv,
			Timeout: opts.FunctionTimeout, MemoryMB: 512, Concurrency: concurrency,
			ReservedConcurrency: opts.ReservedConcurrency[fn],
		}
		if err := s.Host.Register(f); err != nil {
			return fmt.Errorf("function %s: %w (build the functions for this machine first: make dev does)", fn, err)
		}
	}
	return nil
}

// connectEvents starts EventBridge with the stack's rules, the table's
// stream mapping and the task queue's event source mapping, all invoking
// the broadcast function.
func (s *Stack) connectEvents(opts Options) error {
	// Lambda retries a failed asynchronous invocation twice, about 1 and
	// 2 minutes later. EventBridge delivers at least once, in no order.
	// An invocation over the account's or the function's concurrency is
	// throttled: the bus paces its retries as Lambda does (1 s doubling to
	// 5 minutes, for up to 6 hours), apart from those two.
	s.Bus = eventbus.New(eventbus.Options{
		RetryDelays: eventbus.LambdaRetryDelays(opts.RetryScale), ThrottleRetry: eventbus.LambdaThrottleRetry(opts.RetryScale),
		DuplicateRate: opts.DuplicateRate, ReorderWindow: opts.ReorderWindow, ReorderRate: opts.ReorderRate, Log: opts.Log,
	})
	s.Bus.CreateBus(s.BusName)
	if err := s.watchBus(); err != nil {
		return err
	}
	// The stack's two rules, as the CDK stack has them: events with a
	// topic, and revocations.
	for name, pattern := range map[string]string{"broadcast": publish.RulePattern, "revoke": publish.RevokeRulePattern} {
		if err := s.Bus.PutRule(eventbus.Rule{
			Name: s.BusName + "-" + name, Bus: s.BusName, Pattern: pattern,
			Target: asyncTarget(s.Host, FnBroadcast),
		}); err != nil {
			return err
		}
	}
	if err := s.startStream(opts); err != nil {
		return err
	}
	// One task per invocation: a fan-out shard is a thousand posts, and
	// shards run in parallel only as separate invocations (the CDK stack's
	// event source mapping does the same).
	// The disconnect queue, drained as the CDK stack's mapping does:
	// batches of queue.DisconnectBatchSize, at most
	// DisconnectMaxConcurrency at once (and this machine's instances), so
	// a cut of every connection fills a queue instead of throttling.
	s.stopDisconnects = s.SQS.AddEventSource(sqslocal.EventSourceMapping{
		QueueURL: s.DisconnectQueueURL, BatchSize: queue.DisconnectBatchSize,
		MaxConcurrency: min(opts.DisconnectMaxConcurrency, opts.Concurrency), ReportBatchItemFailures: true,
		ScaleInterval: time.Duration(opts.ScalingScale * float64(sqslocal.DefaultScaleInterval)),
		Invoke: func(ctx context.Context, payload []byte) ([]byte, error) {
			return s.Host.Invoke(ctx, FnDisconnect, payload)
		},
	})
	s.stopESM = s.SQS.AddEventSource(sqslocal.EventSourceMapping{
		// Lambda's scaling, capped by the CDK stack's MaximumConcurrency
		// and by this machine's broadcast instances: a batch received
		// beyond them would sit invisible waiting for one, which no poller
		// on AWS does (tests rely on one instance meaning one poller).
		QueueURL: s.QueueURL, BatchSize: 1, MaxConcurrency: min(opts.QueueMaxConcurrency, opts.BroadcastConcurrency), ReportBatchItemFailures: true,
		ScaleInterval: time.Duration(opts.ScalingScale * float64(sqslocal.DefaultScaleInterval)),
		Invoke: func(ctx context.Context, payload []byte) ([]byte, error) {
			return s.Host.Invoke(ctx, FnBroadcast, payload)
		},
	})
	return nil
}

// asyncTarget invokes fn as EventBridge's Lambda target does, an
// asynchronous invocation: a throttle is eventbus.ErrThrottled, so the bus
// retries it as Lambda does (from 1 s, doubling to 5 minutes, for up to 6
// hours: https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html),
// apart from the retries of a function error.
func asyncTarget(h *lambdahost.Host, fn string) func(ctx context.Context, event []byte) error {
	return func(ctx context.Context, event []byte) error {
		_, err := h.Invoke(ctx, fn, event)
		if errors.Is(err, lambdahost.ErrThrottled) {
			err = fmt.Errorf("%w: %w", eventbus.ErrThrottled, err)
		}
		return err
	}
}

// startStream reads the table's stream as Lambda's event source mapping
// does, with the CDK stack's settings, into the broadcast function
// (connection lifecycle events and presence; the same filters as the CDK
// stack's), discarded batches' metadata going to the events DLQ.
func (s *Stack) startStream(opts Options) error {
	// The mapping applies the very filter strings the CDK stack deploys
	// (store.StreamUse.Filters), evaluated as EventBridge patterns; like
	// the CDK stack, no lifecycle events and no presence topics: no mapping.
	var presence []string // the presence topics' literal prefixes, as the CDK stack's filters
	for _, p := range strings.Split(s.fnEnv[config.EnvPresenceTopics], ",") {
		if pat, err := topic.ParsePattern(strings.TrimSpace(p)); err == nil {
			presence = append(presence, pat.LiteralPrefix())
		}
	}
	use := store.StreamUse{Lifecycle: true, PresencePrefixes: presence}
	if on, err := strconv.ParseBool(s.fnEnv[config.EnvLifecycleEvents]); err == nil {
		use.Lifecycle = on
	}
	filters, err := eventpattern.CompileAny(use.Filters())
	if err != nil {
		return fmt.Errorf("the stream mapping's filters: %w", err)
	}
	if len(filters) == 0 {
		return nil
	}
	m := ddbstreams.Mapping{
		Endpoint: s.DynamoDBEndpoint, Table: opts.Table, FunctionName: FnBroadcast, Log: opts.Log,
		BatchSize: store.StreamBatchSize, Window: store.StreamBatchWindow,
		ParallelizationFactor: store.StreamParallelization,
		MaxRetryAttempts:      store.StreamRetryAttempts, BisectOnError: store.StreamBisectOnError,
		Filter: func(raw json.RawMessage) bool { return filters.MatchJSON(raw) },
		Invoke: func(ctx context.Context, payload []byte) ([]byte, error) {
			out, err := s.Host.Invoke(ctx, FnBroadcast, payload)
			if fe := (*lambdahost.FunctionError)(nil); err != nil && !errors.As(err, &fe) {
				err = fmt.Errorf("%w: %w", ddbstreams.ErrNotInvoked, err)
			}
			return out, err
		},
		OnFailure: func(_ context.Context, record []byte) error {
			return s.SQS.SendMessage(s.EventDeadLetterURL, string(record))
		},
	}
	scale := func(d time.Duration) time.Duration { return time.Duration(float64(d) * opts.RetryScale) }
	m.RetryDelay = backoff.Policy{Base: scale(ddbstreams.DefaultRetryBase), Max: scale(ddbstreams.DefaultRetryMax), Jitter: backoff.Full}
	if opts.SerialStream {
		m.Shards, m.ParallelizationFactor, m.MaxRetryAttempts, m.BisectOnError = 1, 1, -1, false
	}
	streamCtx, stopStream := context.WithCancel(context.Background())
	s.stopStream = stopStream
	if s.stream, err = m.Open(streamCtx); err != nil {
		return fmt.Errorf("the table's stream: %w", err)
	}
	return nil
}

// serveAll builds the two endpoints' handlers and serves them: the AWS
// APIs behind signature checks, and the WebSocket API (with the console).
// It is the last step.
func (s *Stack) serveAll(opts Options) error {
	router := &edge.Router{
		DynamoDB: s.throttle, Events: s.Bus, SQS: s.SQS,
		Management: http.HandlerFunc(s.management), IsManagement: s.Gateway.ManagementPath,
		Admin: s.admin(opts), Lambda: http.HandlerFunc(s.lambdaInvoke),
	}
	// Every AWS API call must carry a valid signature by the dev
	// credentials, as on AWS, whatever its path; only the requests routed
	// to the stack's own /_wsgate/ endpoints need none. Every request must
	// name this machine as Host.
	awsMux, err := edge.Endpoint(router, s.awsAddrs(opts), awsauth.Options{Disabled: opts.NoSignatures, Log: opts.Log})
	if err != nil {
		return err
	}
	wsMux := http.NewServeMux()
	if opts.Console != nil {
		h := opts.Console(s)
		wsMux.Handle("/console", h)
		wsMux.Handle("/console/", h)
		wsMux.Handle("/favicon.ico", h)
	}
	wsMux.Handle("/", s.Gateway)
	s.wsHandler = wsMux
	s.wsMu.Lock()
	s.wsServer = s.serve(s.wsListener, wsMux)
	s.wsMu.Unlock()
	s.awsServer = s.serve(s.awsListener, awsMux)
	return nil
}

// awsAddrs are the AWS listener's addresses, as configured and as bound.
func (s *Stack) awsAddrs(opts Options) []string {
	return []string{opts.AWSAddr, strings.TrimPrefix(s.AWSEndpoint, "http://")}
}

// FunctionEnv is the environment the stack gives its functions.
func (s *Stack) FunctionEnv() map[string]string { return maps.Clone(s.fnEnv) }

// functionEnv is what every function sees besides the Lambda variables:
// the SDK pointed at the local AWS endpoint, and the gateway's settings.
func (s *Stack) functionEnv(opts Options) map[string]string {
	dev := awsauth.Dev()
	env := map[string]string{
		"AWS_ENDPOINT_URL":      s.AWSEndpoint,
		"AWS_ACCESS_KEY_ID":     dev.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY": dev.SecretAccessKey,
		config.EnvTable:         opts.Table,
		config.EnvStage:         opts.Stage,
		config.EnvQueueURL:      s.QueueURL,
		config.EnvEventBus:      s.BusName,
		config.EnvJWTAlg:        "HS256",
		config.EnvJWTSecret:     opts.JWTSecret,
		config.EnvLogLevel:      "info",
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	return env
}

// serve starts serving h on ln.
func (s *Stack) serve(ln net.Listener, h http.Handler) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("server stopped", "address", ln.Addr().String(), "error", err.Error())
		}
	}()
	return srv
}

// Capacity is what DynamoDB consumed per partition key, the hottest keys
// first, and the ceilings they are held to.
func (s *Stack) Capacity() ddbproxy.CapacityStats { return s.ddb.Capacity() }

// ResetCapacityCounts zeroes the DynamoDB units counted per key so far.
func (s *Stack) ResetCapacityCounts() { s.ddb.ResetCapacityCounts() }

// SuspendCeilings lifts DynamoDB's per-key ceilings until resume is
// called (a scale model's setup); units are still counted.
func (s *Stack) SuspendCeilings() (resume func()) { return s.ddb.SuspendCeilings() }

// SettleStream waits until the table's stream has no record pending: every
// write so far read from it and through the broadcast function.
func (s *Stack) SettleStream(ctx context.Context) error {
	if s.stream == nil {
		return nil
	}
	return s.stream.Settle(ctx)
}

// admin serves /_wsgate/health, /_wsgate/capacity (DynamoDB units per
// partition key), /_wsgate/faults, /_wsgate/drop (cut every
// client, as a network failure would), /_wsgate/disconnects (a node's
// $disconnect, onto the disconnect queue), /_wsgate/bus (every event on the
// bus, as JSON lines), /_wsgate/refused (the events the broadcast function
// refused, and why) and, in dev, /_wsgate/token, to this
// machine's programs and the console only (DevAccess).
func (s *Stack) admin(opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_wsgate/health", func(w http.ResponseWriter, r *http.Request) {
		visible, inFlight, delayed, _ := s.SQS.Depth(s.QueueURL)
		dVisible, dInFlight, dDelayed, _ := s.SQS.Depth(s.DisconnectQueueURL)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"websocket": s.WebSocketURL, "aws": s.AWSEndpoint, "dynamodb": s.DynamoDBEndpoint,
			"stage": s.Stage, "table": s.Table, "bus": s.BusName, "queue": s.QueueURL,
			"connections": s.Gateway.Count(),
			"tasks":       map[string]int{"visible": visible, "in_flight": inFlight, "delayed": delayed},
			"disconnects": map[string]int{"visible": dVisible, "in_flight": dInFlight, "delayed": dDelayed},
			"events": map[string]int64{
				"accepted": s.Bus.Stats().Accepted.Load(), "delivered": s.Bus.Stats().Delivered.Load(), "dead_lettered": s.Bus.Stats().DeadLettered.Load(),
				"duplicated": s.Bus.Stats().Duplicated.Load(), "overtaken": s.Bus.Stats().Overtaken.Load(),
			},
		})
	})
	mux.HandleFunc("/_wsgate/faults", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			var f Faults
			if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&f); err != nil {
				http.Error(w, "want {\"latency\":..., \"jitter\":..., \"throttle_rate\":..., \"error_rate\":..., \"skip_disconnect_rate\":..., \"dynamodb_throttle_rate\":...} (durations in nanoseconds, rates 0 to 1)", http.StatusBadRequest)
				return
			}
			s.SetFaults(f)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.CurrentFaults())
	})
	mux.HandleFunc("POST /_wsgate/drop", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int{"dropped": s.Gateway.Drop()})
	})
	// A WebSocket node's $disconnect integration (wsgate node): the
	// node renders the template and hands the message to this queue.
	mux.HandleFunc("POST /_wsgate/disconnects", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			MessageBody string `json:"messageBody"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil || in.MessageBody == "" {
			http.Error(w, `want {"messageBody":"<connection id>"}`, http.StatusBadRequest)
			return
		}
		if err := s.SQS.SendMessage(s.DisconnectQueueURL, in.MessageBody); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if opts.DevTokens != nil {
		mux.Handle("/_wsgate/token", opts.DevTokens)
	}
	mux.HandleFunc("GET /_wsgate/bus", s.busFeed.stream)
	mux.HandleFunc("GET /_wsgate/refused", s.serveRefused)
	mux.HandleFunc("GET /_wsgate/capacity", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.Capacity())
	})
	mux.HandleFunc("POST /_wsgate/invoke/{function}", s.invokeForNode)
	mux.HandleFunc("POST /_wsgate/nodes", s.registerNode)
	return DevAccess{
		Addrs:   s.awsAddrs(opts),
		Origins: ConsoleOrigins(opts.WebSocketAddr, strings.TrimSuffix(strings.TrimPrefix(s.WebSocketURL, "ws://"), "/")),
	}.Guard(mux)
}

// DevAccess keeps web pages away from the stack's development endpoints
// (dev tokens, faults, drop, invoke, node registration, the console's API),
// which answer without credentials:
//   - the Host must be this machine (edge.LocalHosts, as for the whole
//     AWS port): 127.0.0.1, localhost, [::1] or a listener's own host, on
//     a listener's port. A page whose name the attacker resolves to
//     127.0.0.1 (DNS rebinding) still sends its own name as Host. An
//     unspecified listener host (0.0.0.0, ::) admits any IP address as
//     Host: rebinding needs a name.
//   - a request with an Origin (browsers send one with every cross-origin
//     request and every POST) must come from Origins, or with SameOrigin
//     from the Host itself; CORS allows those origins and no other.
//   - POST and PUT must be application/json, which a page can send to
//     another origin only after a preflight the guard refuses. A request
//     with neither Origin nor Content-Type is a program's (browsers always
//     send Origin with a POST), such as wsgate node's invoke calls.
type DevAccess struct {
	// Addrs are the listener's addresses (host:port), as configured and
	// as bound.
	Addrs      []string
	Origins    []string
	SameOrigin bool
}

// Guard serves h to the requests DevAccess admits and refuses the others:
// 403 for a foreign Host or Origin, 415 for a body that is not JSON.
func (a DevAccess) Guard(h http.Handler) http.Handler {
	hosts := edge.NewLocalHosts(a.Addrs...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hosts.Admits(r.Host) {
			http.Error(w, fmt.Sprintf("Forbidden: Host %q is not this machine: the local stack's dev endpoints answer 127.0.0.1, localhost or [::1] on their own port only (a guard against DNS rebinding)", r.Host), http.StatusForbidden)
			return
		}
		w.Header().Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if origin != "" {
			if !slices.Contains(a.Origins, origin) && !(a.SameOrigin && origin == "http://"+r.Host) {
				http.Error(w, fmt.Sprintf("Forbidden: origin %q may not call the local stack's dev endpoints (only the console may)", origin), http.StatusForbidden)
				return
			}
			w.Header().Set("Access-Control-Allow-Origin", origin)
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				w.Header().Set("Access-Control-Allow-Methods", "GET, POST, PUT")
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
				w.Header().Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if (r.Method == http.MethodPost || r.Method == http.MethodPut) && !jsonRequest(r) {
			http.Error(w, "Unsupported Media Type: send the body as Content-Type: application/json", http.StatusUnsupportedMediaType)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// jsonRequest reports whether a request says its body is JSON, or comes
// from a program: no Content-Type and none of the headers browsers add.
func jsonRequest(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return r.Header.Get("Origin") == "" && r.Header.Get("Sec-Fetch-Site") == ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// ConsoleOrigins are the origins of the console page served on the
// WebSocket listener at addrs (as configured and as bound): loopback by
// address and by name, and the listener's own host when it names one.
func ConsoleOrigins(addrs ...string) []string {
	var out []string
	for _, addr := range addrs {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || port == "0" {
			continue
		}
		hosts := []string{"127.0.0.1", "localhost", "::1"}
		if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
			hosts = append(hosts, host)
		}
		for _, h := range hosts {
			if o := "http://" + net.JoinHostPort(h, port); !slices.Contains(out, o) {
				out = append(out, o)
			}
		}
	}
	return out
}

// Connection ids of this stack's own gateway start with localPrefix;
// WebSocket nodes (wsgate node) use prefixes starting with NodePrefix.
const (
	localPrefix = "L"
	NodePrefix  = "N"
)

// management routes an @connections call to the gateway holding the
// connection: this process's, or a registered node's.
func (s *Stack) management(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/"+s.Stage+"/@connections/")
	if strings.HasPrefix(rest, NodePrefix) {
		s.nodesMu.RLock()
		var node http.Handler
		for prefix, h := range s.nodes {
			if strings.HasPrefix(rest, prefix) {
				node = h
				break
			}
		}
		s.nodesMu.RUnlock()
		if node != nil {
			node.ServeHTTP(w, r)
			return
		}
	}
	s.Gateway.ServeManagement(w, r)
}

// registerNode adds a WebSocket node: {"prefix":"N1","management":"http://host:port"}.
func (s *Stack) registerNode(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Prefix     string `json:"prefix"`
		Management string `json:"management"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&in); err != nil || !strings.HasPrefix(in.Prefix, NodePrefix) || len(in.Prefix) < 2 || len(in.Prefix) > 6 {
		http.Error(w, `want {"prefix":"N<digits>","management":"http://host:port"}`, http.StatusBadRequest)
		return
	}
	proxy, err := edge.Proxy(in.Management)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.nodesMu.Lock()
	if s.nodes == nil {
		s.nodes = map[string]http.Handler{}
	}
	s.nodes[in.Prefix] = proxy
	s.nodesMu.Unlock()
	s.log.Info("WebSocket node registered", "prefix", in.Prefix, "management", in.Management)
	w.WriteHeader(http.StatusNoContent)
}

// invokeForNode lets a WebSocket node run the route functions here.
func (s *Stack) invokeForNode(w http.ResponseWriter, r *http.Request) {
	payload, err := io.ReadAll(io.LimitReader(r.Body, 6<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	out, err := s.Host.Invoke(r.Context(), r.PathValue("function"), payload)
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadGateway)
		_ = json.NewEncoder(w).Encode(map[string]string{"errorMessage": err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// Faults are the failures the stack injects, for fault tests and
// benchmarks: the gateway's (@connections latency, throttling and errors,
// skipped $disconnects) and a share of DynamoDB requests throttled.
type Faults struct {
	apigw.Faults
	DynamoDBThrottleRate float64 `json:"dynamodb_throttle_rate"`
}

// SetFaults replaces the injected faults.
func (s *Stack) SetFaults(f Faults) {
	s.Gateway.SetFaults(f.Faults)
	s.throttle.SetRate(f.DynamoDBThrottleRate)
}

// CurrentFaults returns the injected faults.
func (s *Stack) CurrentFaults() Faults {
	return Faults{Faults: s.Gateway.CurrentFaults(), DynamoDBThrottleRate: s.throttle.Rate()}
}

// DynamoDBThrottled counts the DynamoDB requests answered with a
// throttling error so far.
func (s *Stack) DynamoDBThrottled() int64 { return s.throttle.Throttled.Load() }

// RestartWebSocket stops the WebSocket endpoint as a crashing gateway
// would (every connection cut, no close frame, no $disconnect), keeps it
// down for the given time, and serves again on the same address.
func (s *Stack) RestartWebSocket(down time.Duration) error {
	s.wsMu.Lock()
	defer s.wsMu.Unlock()
	addr := strings.TrimSuffix(strings.TrimPrefix(s.WebSocketURL, "ws://"), "/")
	_ = s.wsServer.Close()
	_ = s.wsListener.Close() // in case the server had not started serving it
	cut := s.Gateway.Crash()
	s.log.Info("WebSocket endpoint down", "connections_cut", cut, "for", down.String())
	time.Sleep(down)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen again on %s: %w", addr, err)
	}
	s.wsListener, s.wsServer = ln, s.serve(ln, s.wsHandler)
	return nil
}

// Close stops everything this stack started: connections first (their
// $disconnect still runs), then the servers, the functions and DynamoDB.
func (s *Stack) Close() {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Stop what starts invocations, letting those in flight finish while
		// the AWS endpoint they call is still up.
		s.wsMu.Lock()
		shutdown(ctx, s.wsServer, s.wsListener) // no new clients
		s.wsMu.Unlock()
		if s.Gateway != nil {
			s.Gateway.CloseAll(ctx)
			s.Gateway.Close()
		}
		if s.stopDisconnects != nil {
			// The closes above queued their connections: let the drain
			// finish, as the $disconnect invocations did before the
			// integration was a queue.
			s.awaitDisconnects(ctx)
			s.stopDisconnects()
		}
		if s.stopESM != nil {
			s.stopESM()
		}
		if s.stopStream != nil {
			s.stopStream()
		}
		if s.Bus != nil {
			s.Bus.Close()
		}
		shutdown(ctx, s.awsServer, s.awsListener)
		if s.SQS != nil {
			s.SQS.Close()
		}
		if s.Host != nil {
			_ = s.Host.Close()
		}
		if s.ddb != nil {
			s.ddb.Close()
		}
		if s.dynamo != nil {
			s.dynamo.Stop()
		}
	})
}

// shutdown stops a server gracefully and closes its listener, which
// Shutdown misses when Serve has not started yet, and which no server holds
// when Start failed before serving. Either may be nil.
func shutdown(ctx context.Context, srv *http.Server, ln net.Listener) {
	if srv != nil {
		_ = srv.Shutdown(ctx)
	}
	if ln != nil {
		_ = ln.Close()
	}
}

// WriteEnv writes the endpoints as shell exports, for scripts.
func (s *Stack) WriteEnv(w io.Writer) {
	fmt.Fprintf(w, "export AWS_ENDPOINT_URL=%s\nexport WSGATE_URL=%s\nexport WSGATE_BUS=%s\n", s.AWSEndpoint, s.WebSocketURL, s.BusName)
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/wsgate/wsgate/localstack/aws/apigw"
	"github.com/wsgate/wsgate/localstack/aws/lambdahost"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
)

// Options configure a benchmark run.
type Options struct {
	Audiences []int
	// Reps measured events per audience up to 10,000, after one warm-up
	// event; RepsLarge above that (each naive event to 50,000 takes half
	// a minute here).
	Reps      int
	RepsLarge int
	// Latency (± Jitter) of every PostToConnection, and the share of them
	// throttled (429), injected by the local @connections API.
	Latency      time.Duration
	Jitter       time.Duration
	ThrottleRate float64
	// Workers is WSGATE_FANOUT_WORKERS, ShardSize WSGATE_FANOUT_PAGE_SIZE,
	// MaxShards the broadcast invocations that may run at once.
	Workers   int
	ShardSize int
	MaxShards int
	// ScaleWorkers, when set, measures audiences of 10,000 and more again
	// with that many workers per invocation: few enough that the ideal
	// rate is within what this machine can emulate, so the rows show how
	// delivery time scales rather than the machine's ceiling.
	ScaleWorkers int
	// Connections is how many clients are connected before the smaller
	// audiences are measured (10,000: "1% subscribed" for 100).
	Connections int
	// LocalClients connect to the stack's own gateway; the rest to
	// WebSocket node processes of PerNode clients each (each process may
	// hold only so many open files). Node clients cost an extra HTTP hop
	// per delivery (the stack forwards their @connections calls).
	LocalClients int
	PerNode      int
	// The latency runs: RateEvents per second for RateDuration to an
	// audience of RateAudience, then again at SustainedRate (what this
	// machine keeps up with), when set.
	RateEvents    int
	SustainedRate int
	RateDuration  time.Duration
	RateAudience  int
	// FunctionsDir has the functions built for this machine; Naive is the
	// baseline's bootstrap; ArmDir has make build's linux/arm64 bootstraps.
	FunctionsDir string
	Naive        string
	ArmDir       string
	// Self is the wsgate binary (for node and client processes).
	Self string
	// DuplicateRate and ReorderWindow are stack.Options': how loosely
	// EventBridge delivers wsgate's events (0: the stack's defaults,
	// negative: exactly once, at once). The baseline is invoked directly.
	DuplicateRate float64
	// CapacityScale is stack.Options': DynamoDB's per-partition ceilings
	// times it (0: AWS's; negative: off).
	CapacityScale float64
	ReorderWindow time.Duration
	// SkipNaive leaves the baseline out (to look into wsgate alone).
	SkipNaive bool
	Log       io.Writer
}

// naiveSockets is the baseline's concurrency (the JavaScript SDK's default).
const naiveSockets = 50

// Row is one audience's figures for one system.
type Row struct {
	System              string
	Workers             int // per invocation (wsgate)
	Events              int // measured
	Audience            int
	First, Last         []time.Duration
	DeliveriesPerSecond float64
	CallsPerDelivery    float64
	RetriesPerDelivery  float64
	ReadPerEvent        float64
	WritePerEvent       float64
	InvocationsPerEvent float64
	PeakRSS             int64 // bytes, broadcast processes
	Ideal               time.Duration
	Concurrency         int
	Scans               float64
	Delivered, Expected int
	// Error: the system failed this audience (the naive baseline's one
	// invocation can time out); the row reports it and the bench goes on.
	Error string
}

// Report is a whole run.
type Report struct {
	Options     Options
	Rows        []Row
	Sizes       map[string]int64
	ColdStarts  map[string][]time.Duration
	Rates       []RateRun
	Connected   int
	ConnectTime time.Duration
	Machine     string
	Took        time.Duration
}

// RateRun is one latency run.
type RateRun struct {
	PerSecond int             // events published per second
	Events    int             // published
	Latency   []time.Duration // publish to receive, every delivery, sorted
	Took      time.Duration   // first publish to last delivery
}

type bench struct {
	o       Options
	s       *stack.Stack
	nodes   []string // WebSocket URLs
	clients []*clientProc
	emf     *emfLines
	bus     publish.Publisher
	log     func(format string, args ...any)
	procs   []*exec.Cmd
	rss     int64
	workers int // per broadcast invocation now

	problems atomic.Int64 // function log lines at warning level and above
}

// problem shows the first function warnings and errors of the run (the
// functions log at warn level here), and counts the rest.
func (b *bench) problem(fn string, line []byte) {
	if !bytes.Contains(line, []byte(`"level":"WARN"`)) && !bytes.Contains(line, []byte(`"level":"ERROR"`)) {
		return
	}
	if n := b.problems.Add(1); n <= 20 {
		b.log("%s: %s", fn, line)
	} else if n%1000 == 0 {
		b.log("%d function warnings and errors so far", n)
	}
}

type clientProc struct {
	from, to int
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Scanner
	mu       sync.Mutex
}

func (c *clientProc) call(v any, resp any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := json.Marshal(v)
	if _, err := c.in.Write(append(b, '\n')); err != nil {
		return err
	}
	if !c.out.Scan() {
		return fmt.Errorf("client process %d-%d ended: %v", c.from, c.to, c.out.Err())
	}
	return json.Unmarshal(c.out.Bytes(), resp)
}

// emfLines keeps the broadcast function's metric lines by event id.
type emfLines struct {
	mu    sync.Mutex
	lines map[string][]map[string]any
}

func (e *emfLines) add(line []byte) {
	if !strings.Contains(string(line), `"_aws"`) {
		return
	}
	var m map[string]any
	if json.Unmarshal(line, &m) != nil {
		return
	}
	id, _ := m["event_id"].(string)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lines[id] = append(e.lines[id], m)
}

func (e *emfLines) get(id string) []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.lines[id])
}

// Validate checks the options before anything starts, so a mistake does
// not surface minutes into a run.
func (o Options) Validate() error {
	switch {
	case len(o.Audiences) == 0:
		return errors.New("bench: no audience to measure")
	case o.Reps < 1 || o.RepsLarge < 0:
		return errors.New("bench: --reps must be at least 1 and --reps-large not negative")
	case o.Workers < 1 || o.ScaleWorkers < 0:
		return errors.New("bench: --workers must be at least 1 and --scale-workers not negative")
	case o.ShardSize < 1 || o.ShardSize > 10000 || o.MaxShards < 1:
		return errors.New("bench: --shard-size must be 1..10000 and --max-shards at least 1")
	case o.LocalClients < 1 || o.PerNode < 1:
		return errors.New("bench: --local-clients and --per-node must be at least 1")
	case o.RateAudience > 0 && !slices.Contains(o.Audiences, o.RateAudience):
		// Clients subscribe to the audiences' topics only: the latency
		// run's audience must be one of them.
		return fmt.Errorf("bench: --rate-audience %d is not one of --audiences %v", o.RateAudience, o.Audiences)
	case o.RateEvents < 0 || o.SustainedRate < 0 || (o.RateAudience > 0 && o.RateDuration <= 0):
		return errors.New("bench: --rate and --rate-sustained must not be negative, and --rate-for positive")
	}
	return nil
}

// Run starts the stack, the WebSocket nodes and the clients, and measures.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	b := &bench{o: o, emf: &emfLines{lines: map[string][]map[string]any{}}, workers: o.Workers}
	b.log = func(format string, args ...any) {
		fmt.Fprintf(o.Log, "%s  %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	defer b.stop()
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	r := &Report{Options: o, Machine: machine()}
	var err error
	if r.ColdStarts, err = b.coldStarts(ctx, 10); err != nil {
		return nil, err
	}
	audiences := slices.Sorted(slices.Values(o.Audiences))
	connectStart := time.Now()
	for _, a := range audiences {
		if err := b.connect(ctx, max(a, min(o.Connections, audiences[len(audiences)-1]))); err != nil {
			return nil, err
		}
		r.ConnectTime = time.Since(connectStart)
		var base Row
		if !o.SkipNaive {
			if base, err = b.measure(ctx, "naive", a); err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				// A baseline that fails is a result: report it and go on.
				b.log("naive baseline failed at %d subscribers: %v", a, err)
				// (Each event carries its own label, so what it delivered
				// before failing counts in no later row.)
				base = Row{System: "naive", Audience: a, Expected: a, Error: err.Error()}
			}
			r.Rows = append(r.Rows, base)
		}
		row, err := b.measure(ctx, "wsgate", a)
		if err != nil {
			return nil, err
		}
		r.Rows = append(r.Rows, row)
		b.log("audience %d: wsgate last delivery p50 %s (ideal %s); naive %s", a, median(row.Last), row.Ideal, median(base.Last))
		if o.ScaleWorkers > 0 && o.ScaleWorkers != o.Workers && a >= 10000 {
			row, err := b.measureWith(ctx, o.ScaleWorkers, a)
			if err != nil {
				return nil, err
			}
			r.Rows = append(r.Rows, row)
		}
	}
	r.Connected = b.connected()
	for _, perSecond := range []int{o.RateEvents, o.SustainedRate} {
		if o.RateAudience > 0 && perSecond > 0 {
			run, err := b.rate(ctx, perSecond)
			if err != nil {
				return nil, err
			}
			r.Rates = append(r.Rates, run)
		}
	}
	r.Sizes = map[string]int64{}
	for _, fn := range []string{stack.FnConnect, stack.FnDisconnect, stack.FnMessage, stack.FnBroadcast} {
		if fi, err := os.Stat(filepath.Join(o.ArmDir, fn, "bootstrap")); err == nil {
			r.Sizes[fn] = fi.Size()
		}
	}
	r.Took = time.Since(start)
	return r, nil
}

func (b *bench) start(ctx context.Context) error {
	o := b.o
	b.log("starting the local stack")
	env := map[string]string{
		config.EnvFanoutWorkers:  strconv.Itoa(o.Workers),
		config.EnvFanoutPageSize: strconv.Itoa(o.ShardSize),
		config.EnvLogLevel:       "warn",
		// Tokens for 50,000 clients are minted once and must outlive the run.
		config.EnvConnectionTTL: "3h",
	}
	s, err := stack.Start(ctx, stack.Options{
		WebSocketAddr: "127.0.0.1:0", AWSAddr: "127.0.0.1:0", DynamoDBAddr: "127.0.0.1:0",
		FunctionsDir: o.FunctionsDir, Extra: map[string]string{"naive": o.Naive},
		Concurrency: 8, BroadcastConcurrency: o.MaxShards, FunctionTimeout: 120 * time.Second,
		DuplicateRate: o.DuplicateRate, ReorderWindow: o.ReorderWindow,
		CapacityScale: o.CapacityScale,
		// The clients stay silent for the whole run: API Gateway's 10-minute
		// idle cut would close the first ones mid-run (as the nodes, they
		// get the 2-hour maximum instead).
		IdleTimeout: 2 * time.Hour,
		Env:         env, Log: slog.New(slog.DiscardHandler),
		FunctionLog: func(fn string, line []byte) {
			if fn == stack.FnBroadcast {
				b.emf.add(line)
			}
			b.problem(fn, line)
		},
	})
	if err != nil {
		return err
	}
	b.s = s
	s.Gateway.SetFaults(apigw.Faults{Latency: o.Latency, Jitter: o.Jitter, ThrottleRate: o.ThrottleRate})
	b.bus = publish.Publisher{
		Client: eventbridge.New(eventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.AWSEndpoint), Credentials: stack.DevCredentials()}),
		Bus:    s.BusName, Source: "bench",
	}
	return nil
}

// stop ends the run without the disconnect storm a clean close would
// cause (tens of thousands of $disconnect invocations): the WebSocket nodes
// and client processes are killed, and the stack with its in-memory table
// goes.
func (b *bench) stop() {
	for _, p := range b.procs {
		_ = p.Process.Kill()
		_, _ = p.Process.Wait()
	}
	for _, c := range b.clients {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
	}
	if b.s != nil {
		b.s.Close()
	}
}

func (b *bench) connected() int {
	n := 0
	for _, c := range b.clients {
		n += c.to - c.from
	}
	return n
}

// connect brings the client count up to n: the first LocalClients on the
// stack's own gateway, then nodes of PerNode clients each, one client
// process per range.
func (b *bench) connect(ctx context.Context, n int) error {
	have := b.connected()
	if have >= n {
		return nil
	}
	b.log("connecting clients %d..%d", have, n)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for from := have; from < n; {
		url, to := b.s.WebSocketURL, min(n, b.o.LocalClients)
		if from >= b.o.LocalClients {
			node := (from - b.o.LocalClients) / b.o.PerNode
			to = min(n, b.o.LocalClients+(node+1)*b.o.PerNode)
			for len(b.nodes) <= node {
				if err := b.startNode(ctx, len(b.nodes)); err != nil {
					return err
				}
			}
			url = b.nodes[node]
		}
		c, err := b.startClients(ctx, url, from, to)
		if err != nil {
			return err
		}
		b.clients = append(b.clients, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !c.out.Scan() {
				errs <- fmt.Errorf("client process %d-%d ended before connecting", c.from, c.to)
				return
			}
			var res struct {
				Connected, Failed, Ms int64
				Error                 string
			}
			if err := json.Unmarshal(c.out.Bytes(), &res); err != nil {
				errs <- err
				return
			}
			if res.Failed > 0 {
				errs <- fmt.Errorf("clients %d-%d: %d failed to connect: %s", c.from, c.to, res.Failed, res.Error)
			}
		}()
		from = to
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	b.log("%d clients connected", n)
	return nil
}

func (b *bench) startNode(ctx context.Context, i int) error {
	cmd := exec.CommandContext(ctx, b.o.Self, "node", "--stack", b.s.AWSEndpoint, "--prefix", fmt.Sprintf("%s%d", stack.NodePrefix, i), "--idle-timeout", "2h")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	b.procs = append(b.procs, cmd)
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		return errors.New("WebSocket node did not start")
	}
	var n struct{ Websocket, Management string }
	if err := json.Unmarshal(sc.Bytes(), &n); err != nil {
		return err
	}
	go func() {
		for sc.Scan() {
		}
	}()
	b.nodes = append(b.nodes, n.Websocket)
	return b.setFaults(n.Management)
}

func (b *bench) setFaults(management string) error {
	f, _ := json.Marshal(apigw.Faults{Latency: b.o.Latency, Jitter: b.o.Jitter, ThrottleRate: b.o.ThrottleRate})
	resp, err := httpPost(management+"/_wsgate/faults", f)
	if err != nil {
		return err
	}
	if resp != 204 {
		return fmt.Errorf("set faults on %s: HTTP %d", management, resp)
	}
	return nil
}

func (b *bench) startClients(ctx context.Context, url string, from, to int) (*clientProc, error) {
	aud := make([]string, len(b.o.Audiences))
	for i, a := range b.o.Audiences {
		aud[i] = strconv.Itoa(a)
	}
	cmd := exec.CommandContext(ctx, b.o.Self, "bench-clients", "--url", url, "--secret", b.s.Secret,
		"--from", strconv.Itoa(from), "--to", strconv.Itoa(to), "--audiences", strings.Join(aud, ","))
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	return &clientProc{from: from, to: to, cmd: cmd, in: in, out: sc}, nil
}

// deliveries sums an event's deliveries over the client processes.
func (b *bench) deliveries(label string, audience int) (count int, first, last int64, err error) {
	for _, c := range b.clients {
		if c.from >= audience {
			continue
		}
		var st struct{ Count, First, Last int64 }
		if err := c.call(map[string]string{"cmd": "stats", "event": label}, &st); err != nil {
			return 0, 0, 0, err
		}
		count += int(st.Count)
		if st.Count > 0 {
			if first == 0 || st.First < first {
				first = st.First
			}
			last = max(last, st.Last)
		}
	}
	return count, first, last, nil
}

// measureWith measures wsgate with another worker count per invocation,
// set as Lambda would (UpdateFunctionConfiguration: fresh instances), and
// puts the configured count back.
func (b *bench) measureWith(ctx context.Context, workers, a int) (Row, error) {
	set := func(w int) error {
		return b.s.Host.UpdateEnv(stack.FnBroadcast, map[string]string{config.EnvFanoutWorkers: strconv.Itoa(w)})
	}
	if err := set(workers); err != nil {
		return Row{}, err
	}
	b.workers = workers
	row, err := b.measure(ctx, "wsgate", a)
	b.workers = b.o.Workers
	if err != nil {
		return row, err
	}
	return row, set(b.o.Workers)
}

// measure publishes a warm-up and Reps events to an audience, through
// wsgate or the naive baseline, and collects the figures.
func (b *bench) measure(ctx context.Context, system string, a int) (Row, error) {
	// One warm-up event first, for the first rows: above 10,000, and on a
	// second worker count, everything is warm already and events are dear.
	reps, warm := b.o.Reps, 1
	if (a > 10000 || b.workers != b.o.Workers) && b.o.RepsLarge > 0 {
		reps, warm = b.o.RepsLarge, 0
	}
	row := Row{System: system, Audience: a, Expected: a, Events: reps}
	if system == "wsgate" {
		row.Workers = b.workers
	}
	b.log("%s (%d workers): %d events to %d subscribers", system, row.Workers, reps+warm, a)
	var sum costs
	for rep := 1 - warm; rep <= reps; rep++ {
		label := fmt.Sprintf("%s-%d-%d-%d", system, row.Workers, a, rep)
		t0 := time.Now()
		c, err := b.fire(ctx, system, label, a, t0)
		if err != nil {
			return row, err
		}
		if rep == 0 {
			continue // warm-up
		}
		row.First = append(row.First, time.Duration(c.first-t0.UnixNano()))
		row.Last = append(row.Last, time.Duration(c.last-t0.UnixNano()))
		row.Delivered += c.delivered
		sum.add(c)
	}
	b.fill(&row, sum, reps)
	return row, nil
}

// costs are what one event (or the events of a row) cost.
type costs struct {
	delivered, invocations, scans int
	first, last                   int64 // unix ns of the first and last delivery
	calls, retries, read, write   float64
}

func (c *costs) add(o costs) {
	c.invocations += o.invocations
	c.scans += o.scans
	c.calls += o.calls
	c.retries += o.retries
	c.read += o.read
	c.write += o.write
}

// naiveResult is the naive fan-out's answer.
type naiveResult struct {
	Scanned   int     `json:"scanned"`
	Delivered int64   `json:"delivered"`
	Gone      int64   `json:"gone"`
	Failed    int64   `json:"failed"`
	Error     string  `json:"error"`
	Calls     int64   `json:"calls"`
	Read      float64 `json:"read_capacity"`
	Write     float64 `json:"write_capacity"`
}

// fire sends one event through system to audience a and measures it.
func (b *bench) fire(ctx context.Context, system, label string, a int, t0 time.Time) (costs, error) {
	var c costs
	payload := Payload{Label: label, Sent: t0.UnixNano()}
	var naive naiveResult
	var eventID string
	if system == "naive" {
		detail, _ := json.Marshal(map[string]any{"topic": Topic(a), "payload": payload})
		ev, _ := json.Marshal(lambdaevents.CloudWatchEvent{ID: label, Source: "bench", DetailType: "bench", Time: t0, Detail: detail})
		out, err := b.s.Host.Invoke(ctx, "naive", ev)
		if err != nil {
			return c, fmt.Errorf("naive fan-out: %w", err)
		}
		if err := json.Unmarshal(out, &naive); err != nil {
			return c, err
		}
		if naive.Failed > 0 || naive.Gone > 0 {
			b.log("naive %s: %d delivered, %d gone, %d failed (%s)", label, naive.Delivered, naive.Gone, naive.Failed, naive.Error)
		}
	} else {
		ids, err := b.bus.Publish(ctx, publish.Detail{Topic: Topic(a), Payload: json.RawMessage(mustJSON(payload))})
		if err != nil {
			return c, err
		}
		eventID = ids[0]
	}
	var err error
	if c.delivered, c.first, c.last, err = b.waitDelivered(ctx, label, a); err != nil {
		return c, err
	}
	if system == "naive" {
		c.calls, c.retries = float64(naive.Calls), float64(naive.Calls-naive.Delivered)
		c.read, c.write, c.invocations, c.scans = naive.Read, naive.Write, 1, 1
		return c, nil
	}
	lines := b.waitMetrics(eventID)
	for _, m := range lines {
		c.calls += num(m["PostCalls"])
		c.retries += num(m["Retried"])
		c.read += num(m["ReadCapacity"])
		c.write += num(m["WriteCapacity"])
	}
	c.invocations = len(lines)
	return c, nil
}

// fill sets row's per-event and per-delivery figures from the sum of reps.
func (b *bench) fill(row *Row, sum costs, reps int) {
	n := float64(reps)
	if row.Delivered > 0 {
		row.CallsPerDelivery = sum.calls / float64(row.Delivered)
		row.RetriesPerDelivery = sum.retries / float64(row.Delivered)
	}
	row.ReadPerEvent, row.WritePerEvent = sum.read/n, sum.write/n
	row.InvocationsPerEvent, row.Scans = float64(sum.invocations)/n, float64(sum.scans)/n
	row.DeliveriesPerSecond = float64(row.Audience) / median(row.Last).Seconds()
	if row.System == "naive" {
		row.Concurrency = min(row.Audience, naiveSockets)
	} else {
		shards := (row.Audience + b.o.ShardSize - 1) / b.o.ShardSize
		row.Concurrency = min(row.Audience, row.Workers*min(shards, b.o.MaxShards))
		row.PeakRSS = b.peakRSS()
	}
	row.Ideal = time.Duration(float64(row.Audience) * float64(b.o.Latency) / float64(row.Concurrency))
}

// coldStarts starts each function n times on an idle machine, each time in
// a fresh host, and returns the time from process start to its first
// request for work.
func (b *bench) coldStarts(ctx context.Context, n int) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	for _, fn := range []string{stack.FnConnect, stack.FnDisconnect, stack.FnMessage, stack.FnBroadcast} {
		for range n {
			h := lambdahost.New(lambdahost.Options{})
			if err := h.Register(lambdahost.Function{Name: fn, Path: filepath.Join(b.o.FunctionsDir, fn, "bootstrap"), Env: b.s.FunctionEnv(), Concurrency: 1}); err != nil {
				return nil, err
			}
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, _ = h.Invoke(ictx, fn, []byte(`{}`))
			cancel()
			out[fn] = append(out[fn], h.Stats(fn).ColdStartDurations...)
			_ = h.Close()
		}
	}
	return out, nil
}

// waitDelivered waits until an audience has an event, or two minutes.
func (b *bench) waitDelivered(ctx context.Context, label string, a int) (int, int64, int64, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		count, first, last, err := b.deliveries(label, a)
		if err != nil {
			return 0, 0, 0, err
		}
		if count >= a {
			return count, first, last, nil
		}
		if time.Now().After(deadline) {
			return count, first, last, fmt.Errorf("%s: %d of %d delivered after 2 minutes", label, count, a)
		}
		select {
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitMetrics returns an event's metric lines once every invocation that
// worked on it has written its line (the coordinator says how many shards).
func (b *bench) waitMetrics(eventID string) []map[string]any {
	deadline := time.Now().Add(10 * time.Second)
	for {
		lines := b.emf.get(eventID)
		shards := 0.0
		for _, m := range lines {
			shards = max(shards, num(m["Shards"]))
		}
		if (shards > 0 && float64(len(lines)) >= shards) || time.Now().After(deadline) {
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peakRSS is the largest peak resident set of the broadcast processes.
func (b *bench) peakRSS() int64 {
	bootstrap, _ := filepath.Abs(filepath.Join(b.o.FunctionsDir, stack.FnBroadcast, "bootstrap"))
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink("/proc/" + e.Name() + "/exe")
		if err != nil || exe != bootstrap {
			continue
		}
		status, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				b.rss = max(b.rss, kb*1024)
			}
		}
	}
	return b.rss
}

// rate publishes perSecond events a second for RateDuration to
// RateAudience subscribers and returns every publish-to-receive latency.
func (b *bench) rate(ctx context.Context, perSecond int) (RateRun, error) {
	b.log("latency run: %d events/s for %s to %d subscribers", perSecond, b.o.RateDuration, b.o.RateAudience)
	run := RateRun{PerSecond: perSecond}
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	defer tick.Stop()
	start := time.Now()
	end := start.Add(b.o.RateDuration)
	prefix := fmt.Sprintf("rate%d-", perSecond)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for time.Now().Before(end) {
		<-tick.C
		label := fmt.Sprintf("%s%d", prefix, run.Events)
		run.Events++
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := Payload{Label: label, Sent: time.Now().UnixNano(), Latency: true}
			if _, err := b.bus.Publish(ctx, publish.Detail{Topic: Topic(b.o.RateAudience), Payload: json.RawMessage(mustJSON(p))}); err != nil {
				errMu.Lock()
				firstErr = err
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return run, firstErr
	}
	// Events may arrive out of publishing order: wait for each.
	var last int64
	for i := range run.Events {
		_, _, l, err := b.waitDelivered(ctx, fmt.Sprintf("%s%d", prefix, i), b.o.RateAudience)
		if err != nil {
			return run, err
		}
		last = max(last, l)
	}
	run.Took = time.Duration(last - start.UnixNano())
	for _, c := range b.clients {
		if c.from >= b.o.RateAudience {
			continue
		}
		var res struct {
			Latencies []int64 `json:"latencies_ns"`
		}
		if err := c.call(map[string]string{"cmd": "latencies"}, &res); err != nil {
			return run, err
		}
		for _, l := range res.Latencies {
			run.Latency = append(run.Latency, time.Duration(l))
		}
	}
	slices.Sort(run.Latency)
	return run, nil
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func median(d []time.Duration) time.Duration { return percentile(d, 50) }

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			mem = fmt.Sprintf(", %d GiB", kb>>20)
		}
	}
	return fmt.Sprintf("%s, %d cores%s", model, numCPU(), mem)
}

func httpPost(url string, body []byte) (int, error) {
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func numCPU() int { return runtime.NumCPU() }

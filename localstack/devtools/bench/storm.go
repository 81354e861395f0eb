package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
)

// The reconnect storm: N real WebSocket clients in auth-message mode
// (connect without a token, then {"type":"auth"}), each subscribing to
// StormTopic and a topic of its own, opened at Rate a second; then every
// connection cut at once, as a network blip does, and every client back,
// paced at Rate again behind its own backoff; then one event on
// StormTopic that every client must receive exactly once.
//
// API Gateway admits 500 new connections a second per account however
// many clients wait, so on AWS a storm arrives at 500/s. Here it arrives
// at Rate/s with DynamoDB's per-key ceilings times Rate/500: each key
// meets the share of its ceiling it would meet at 500/s on AWS, and N
// clients stand for N*500/Rate (the storm lasts as long, and the shared
// topic's audience is as large against its key's ceiling).

// APIGatewayConnectRate is API Gateway's default quota of new WebSocket
// connections a second per account and Region.
const APIGatewayConnectRate = 500

// StormOptions configure a reconnect storm.
type StormOptions struct {
	Clients int
	Rate    float64 // new connections a second
	// CapacityScale overrides the ceilings' scale (0: Rate/500; negative:
	// ceilings off, units still counted).
	CapacityScale float64
	// Processes run the clients in child processes (Self storm-clients);
	// 0 runs them in this process.
	Processes int
	Self      string
	// Sources gives each client its own loopback source address, as on
	// AWS, so the per-address caps (WSGATE_MAX_PENDING_PER_IP) and the
	// per-address keys see many addresses, not one.
	Sources bool
	// Concurrency is each function's instances on this machine (default 8).
	Concurrency int
	// DisconnectConcurrency is the disconnect queue mapping's
	// MaximumConcurrency (the CDK stack's disconnectMaxConcurrency),
	// DefaultStormDisconnectConcurrency when 0.
	DisconnectConcurrency int
	FunctionsDir          string
	// Env adds function settings.
	Env map[string]string
	// PhaseLimit bounds each phase (0: twice the storm's length, and a
	// minute more).
	PhaseLimit time.Duration
	Log        io.Writer
}

// Scale is the ceilings' share of AWS's (negative: off).
func (o StormOptions) Scale() float64 {
	if o.CapacityScale != 0 {
		return o.CapacityScale
	}
	return o.Rate / APIGatewayConnectRate
}

// Modelled is the number of clients on AWS the storm stands for.
func (o StormOptions) Modelled() int {
	if o.Scale() <= 0 {
		return o.Clients
	}
	return int(float64(o.Clients)/o.Scale() + 0.5)
}

// ModelledRate is the connections a second on AWS the storm stands for.
func (o StormOptions) ModelledRate() float64 {
	if o.Scale() <= 0 {
		return o.Rate
	}
	return o.Rate / o.Scale()
}

// Validate checks the options before anything starts.
func (o StormOptions) Validate() error {
	if o.Clients < 1 || o.Rate <= 0 || o.Processes < 0 || (o.Processes > 0 && o.Self == "") {
		return fmt.Errorf("bench: storm of %d clients at %g/s in %d processes: want clients and a rate, and the wsgate binary for processes", o.Clients, o.Rate, o.Processes)
	}
	if s := o.Scale(); s > 1 {
		return fmt.Errorf("bench: storm: ceilings at %g of AWS's: the rate %g/s is over API Gateway's %d/s", s, o.Rate, APIGatewayConnectRate)
	}
	return nil
}

// StormPhase is what one phase of the storm measured.
type StormPhase struct {
	Took      time.Duration // until every client was ready (or the phase gave up)
	Complete  bool
	Throttled int64 // DynamoDB requests refused for a key's ceiling
	// HotKey is the key nearest its ceiling in its busiest second, and
	// its peak units in one second against the ceilings.
	HotKey                  string
	HotPeakRead, HotPeakWrt float64
	// HotRead and HotWrite are its units over the phase.
	HotRead, HotWrite float64
	// Errors the clients were told during the phase, by kind.
	Errors map[string]int
}

// StormReport is the storm's row of a bench report.
type StormReport struct {
	Options                   StormOptions
	ReadCeiling, WriteCeiling float64 // per key a second, at the storm's scale
	Connect, Reconnect        StormPhase
	Cut                       int // connections cut at once
	// Errors the clients were told, by kind (StormStatus.Errors), over
	// the whole storm; Causes the route functions' own error lines, by
	// cause: "conflict" (a transaction conflict that outlived the
	// store's retries), "throttled" (a key's ceiling), "other".
	Errors map[string]int
	Causes map[string]int
	// LambdaThrottles are invocations refused for concurrency;
	// LambdaThrottlesBy the same by function.
	LambdaThrottles   int
	LambdaThrottlesBy map[string]int
	Received, Repeats int // clients that got the event; deliveries beyond one
	// Gone counts the event's posts to connections already gone: cut
	// connections whose $disconnect never ran (throttled), found by the
	// 410 and removed then.
	Gone      int
	EventTook time.Duration
	Error     string
}

// Met reports the target: no error surfaced to a client, no
// throttle (DynamoDB or Lambda), every client back and the event
// received by all, once.
func (r *StormReport) Met() bool {
	return r.Error == "" && r.Connect.Complete && r.Reconnect.Complete && len(r.Errors) == 0 &&
		r.Connect.Throttled+r.Reconnect.Throttled == 0 && r.LambdaThrottles == 0 &&
		r.Received == r.Options.Clients && r.Repeats == 0
}

// Conflicts are the conflicts that surfaced as errors to clients.
func (r *StormReport) Conflicts() int { return r.Causes["conflict"] }

// storm is a running storm.
type storm struct {
	o   StormOptions
	s   *stack.Stack
	log func(format string, args ...any)

	mu     sync.Mutex
	causes map[string]int
	lines  map[string]int // the functions' warnings and errors, by message
	gone   int            // posts the broadcast found gone (410)
	status []StormStatus  // the last status of each client process
}

// DefaultStormDisconnectConcurrency is the storm's disconnect drain: the
// mapping's minimum, 2, not the CDK stack's default. Here the drain's
// deletes share this machine's two cores and DynamoDB Local with the
// functions of the clients coming back, which on AWS run apart: at 8
// (this machine's instances) a cut of 1,000 clients delayed 53 of their
// auth messages past the 5 s deadline (auth_timeout), at 2 none.
const DefaultStormDisconnectConcurrency = 2

// RunStorm runs the reconnect storm on a stack of its own.
func RunStorm(ctx context.Context, o StormOptions) (*StormReport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Concurrency == 0 {
		o.Concurrency = 8
	}
	if o.DisconnectConcurrency == 0 {
		o.DisconnectConcurrency = DefaultStormDisconnectConcurrency
	}
	start := time.Now()
	b := &storm{o: o, causes: map[string]int{}, lines: map[string]int{}}
	b.log = func(format string, args ...any) {
		fmt.Fprintf(o.Log, "%s  storm: %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	env := map[string]string{config.EnvLogLevel: "warn", config.EnvConnectionTTL: "3h"}
	if sc := o.Scale(); sc > 0 && sc < 1 {
		// Buckets split at the model's share, as the scale model's do: a
		// bucket then holds the share of its key's ceiling it holds on AWS.
		env[EnvBucketSplitAt] = strconv.Itoa(BucketSplitAt(sc))
	}
	for k, v := range o.Env {
		env[k] = v
	}
	b.log("starting the local stack, DynamoDB ceilings at %g of AWS's", o.Scale())
	var err error
	b.s, err = stack.Start(ctx, stack.Options{
		WebSocketAddr: "127.0.0.1:0", AWSAddr: "127.0.0.1:0", DynamoDBAddr: "127.0.0.1:0",
		FunctionsDir: o.FunctionsDir, Concurrency: o.Concurrency, DisconnectMaxConcurrency: o.DisconnectConcurrency,
		CapacityScale: o.Scale(), IdleTimeout: 2 * time.Hour, Env: env,
		Log: slog.New(slog.DiscardHandler), FunctionLog: b.functionLine,
	})
	if err != nil {
		return nil, err
	}
	defer b.s.Close()
	r := &StormReport{Options: o}
	c := b.s.Capacity()
	r.ReadCeiling, r.WriteCeiling = c.ReadCeiling, c.WriteCeiling
	err = b.run(ctx, r)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		r.Error = err.Error()
	}
	r.Errors = b.errors()
	b.mu.Lock()
	r.Causes, r.Gone = b.causes, b.gone
	for _, k := range slices.Sorted(maps.Keys(b.lines)) {
		b.log("function log: %s: %d", k, b.lines[k])
	}
	b.mu.Unlock()
	r.LambdaThrottlesBy = map[string]int{}
	for _, fn := range []string{stack.FnConnect, stack.FnMessage, stack.FnDisconnect, stack.FnBroadcast} {
		if n := b.s.Host.Stats(fn).Throttles; n > 0 {
			r.LambdaThrottles += n
			r.LambdaThrottlesBy[fn] = n
		}
	}
	return r, nil
}

// run is the storm's three phases.
func (b *storm) run(ctx context.Context, r *StormReport) error {
	cctx, stop := context.WithCancel(ctx)
	defer stop()
	b.s.ResetCapacityCounts()
	done, err := b.startClients(cctx)
	if err != nil {
		return err
	}
	defer func() {
		stop()
		done()
	}()
	// A phase may take the storm's length twice over, and a minute more.
	limit := 2*time.Duration(float64(b.o.Clients)/b.o.Rate*float64(time.Second)) + time.Minute
	if b.o.PhaseLimit > 0 {
		limit = b.o.PhaseLimit
	}

	b.log("connecting %d clients at %g/s", b.o.Clients, b.o.Rate)
	r.Connect = b.phase(ctx, 1, limit)
	b.log("connect: %s, complete %t, %d throttled", r.Connect.Took.Round(time.Millisecond), r.Connect.Complete, r.Connect.Throttled)
	if !r.Connect.Complete {
		return errors.New("not every client connected")
	}

	b.s.ResetCapacityCounts()
	r.Cut = b.s.Gateway.Drop()
	b.log("cut %d connections; reconnecting at %g/s", r.Cut, b.o.Rate)
	r.Reconnect = b.phase(ctx, 2, limit)
	b.log("reconnect: %s, complete %t, %d throttled", r.Reconnect.Took.Round(time.Millisecond), r.Reconnect.Complete, r.Reconnect.Throttled)
	if !r.Reconnect.Complete {
		return errors.New("not every client came back")
	}

	pub := time.Now()
	if _, err := b.s.Publisher("bench").Publish(ctx, publish.Detail{Topic: StormTopic, Payload: []byte(`{"storm":1}`)}); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	deadline := pub.Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st := b.total(); st.Received >= b.o.Clients {
			r.EventTook = time.Since(pub)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // a repeat would show by now
	st := b.total()
	r.Received, r.Repeats = st.Received, st.Repeats
	b.log("event: %d of %d received, %d repeats", r.Received, b.o.Clients, r.Repeats)
	return nil
}

// phase waits until every client has had n ready sessions and all are
// ready now, and reads the capacity counters.
func (b *storm) phase(ctx context.Context, n int, limit time.Duration) StormPhase {
	start := time.Now()
	before := b.errors()
	var p StormPhase
	next := start.Add(10 * time.Second)
	for time.Since(start) < limit && ctx.Err() == nil {
		st := b.total()
		if st.Ready == b.o.Clients && st.MinSessions >= n {
			p.Complete = true
			break
		}
		if time.Now().After(next) {
			b.log("%d of %d ready", st.Ready, b.o.Clients)
			next = next.Add(10 * time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.Took = time.Since(start)
	p.Errors = b.errors()
	for k, v := range before {
		if p.Errors[k] -= v; p.Errors[k] == 0 {
			delete(p.Errors, k)
		}
	}
	c := b.s.Capacity()
	p.Throttled = c.Throttled
	var top []string
	for _, k := range c.Keys {
		if len(top) < 5 && k.Key != "(scan)" {
			top = append(top, fmt.Sprintf("%s %.0f/%.0f (%d throttled)", k.Key, k.PeakRead, k.PeakWrite, k.Throttled))
		}
	}
	b.log("hottest keys, peak read/write units in a second: %s", strings.Join(top, ", "))
	if k, ok := hottestKey(c); ok {
		p.HotKey, p.HotPeakRead, p.HotPeakWrt, p.HotRead, p.HotWrite = k.Key, k.PeakRead, k.PeakWrite, k.ReadUnits, k.WriteUnits
	}
	return p
}

// hottestKey is the key nearest its ceiling in its busiest second (the
// proxy lists them so), skipping Scans.
func hottestKey(c ddbproxy.CapacityStats) (ddbproxy.KeyCapacity, bool) {
	for _, k := range c.Keys {
		if k.Key != "(scan)" {
			return k, true
		}
	}
	return ddbproxy.KeyCapacity{}, false
}

// total sums the client processes' last status lines.
func (b *storm) total() StormStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := StormStatus{MinSessions: -1}
	for _, st := range b.status {
		t.Clients += st.Clients
		t.Ready += st.Ready
		t.Received += st.Received
		t.Repeats += st.Repeats
		if t.MinSessions < 0 || st.MinSessions < t.MinSessions {
			t.MinSessions = st.MinSessions
		}
	}
	return t
}

// errors sums the errors the client processes have counted so far.
func (b *storm) errors() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	errs := map[string]int{}
	for _, st := range b.status {
		for k, v := range st.Errors {
			errs[k] += v
		}
	}
	return errs
}

// functionLine counts every function's warnings and errors by message
// (for the log), and the route functions' error lines by cause.
func (b *storm) functionLine(fn string, line []byte) {
	var rec struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
		Error string `json:"error"`
		Gone  int    `json:"gone"`
	}
	if json.Unmarshal(line, &rec) != nil {
		return
	}
	if fn == stack.FnBroadcast && rec.Msg == "fanned out" && rec.Gone > 0 {
		b.mu.Lock()
		b.gone += rec.Gone
		b.mu.Unlock()
	}
	if rec.Level != "ERROR" && rec.Level != "WARN" {
		return
	}
	b.mu.Lock()
	b.lines[fn+" "+rec.Level+" "+rec.Msg]++
	b.mu.Unlock()
	if (fn != stack.FnConnect && fn != stack.FnMessage) || rec.Level != "ERROR" {
		return
	}
	cause := "other"
	switch {
	case strings.Contains(rec.Error, "TransactionConflict"):
		cause = "conflict"
	case strings.Contains(rec.Error, "Throttl") || strings.Contains(rec.Error, "ThroughputExceeded"):
		cause = "throttled"
	}
	b.mu.Lock()
	if b.causes[cause] == 0 {
		b.log("first %s error, in %s: %s", cause, fn, rec.Error)
	}
	b.causes[cause]++
	b.mu.Unlock()
}

// startClients starts the client processes (or goroutines), each with its
// share of the clients and of the rate, and follows their status lines;
// done waits for them to end once ctx does.
func (b *storm) startClients(ctx context.Context) (done func(), err error) {
	procs := max(b.o.Processes, 1)
	b.status = make([]StormStatus, procs)
	var wg sync.WaitGroup
	for k := range procs {
		o := StormClientOptions{
			URL: b.s.WebSocketURL, Secret: b.s.Secret, Sources: b.o.Sources,
			From: k * b.o.Clients / procs, To: (k + 1) * b.o.Clients / procs, Rate: b.o.Rate / float64(procs),
		}
		b.status[k] = StormStatus{Clients: o.To - o.From}
		var out io.ReadCloser
		if b.o.Processes == 0 {
			pr, pw := io.Pipe()
			out = pr
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = pw.CloseWithError(RunStormClients(ctx, o, pw))
			}()
		} else {
			cmd := exec.CommandContext(ctx, b.o.Self, "storm-clients", "--url", o.URL, "--secret", o.Secret,
				"--from", strconv.Itoa(o.From), "--to", strconv.Itoa(o.To), "--rate", strconv.FormatFloat(o.Rate, 'g', -1, 64),
				"--sources="+strconv.FormatBool(o.Sources))
			cmd.Stderr = os.Stderr
			cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
			cmd.WaitDelay = 10 * time.Second
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if out, err = cmd.StdoutPipe(); err != nil {
				return nil, err
			}
			if err = cmd.Start(); err != nil {
				return nil, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.follow(k, out)
				_ = cmd.Wait() // after the last read, as os/exec asks
			}()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.follow(k, out)
		}()
	}
	return wg.Wait, nil
}

// follow keeps client process k's last status line until its output ends.
func (b *storm) follow(k int, out io.ReadCloser) {
	defer out.Close()
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var st StormStatus
		if json.Unmarshal(sc.Bytes(), &st) == nil {
			b.mu.Lock()
			b.status[k] = st
			b.mu.Unlock()
		}
	}
}

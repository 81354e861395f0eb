// Package soak runs many subscribers on the Go client (clients/go) against
// the local stack for a fixed time while events flow and connections drop at
// random, then checks that every client has every event of its topics
// exactly once, in order, and that the store keeps no record of a closed connection.
package soak

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	client "github.com/wsgate/wsgate/clients/go"
	"github.com/wsgate/wsgate/localstack/aws/apigw"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
)

// Options configure a run.
type Options struct {
	Clients  int
	Duration time.Duration
	// Topics in all; each client subscribes to TopicsPerClient of them.
	Topics, TopicsPerClient int
	// Rate is events per second over all topics.
	Rate int
	// DropEvery is the mean time between two drops of one client.
	DropEvery time.Duration
	// Faults injected on @connections and $disconnect while it runs.
	ThrottleRate, ErrorRate, SkipDisconnectRate float64
	// BroadcastConcurrency is how many broadcast invocations run at once.
	// Lambda scales a function to the account's concurrency (1,000 by
	// default); the local host runs at most this many, and an event waits
	// for its turn before it is numbered.
	BroadcastConcurrency int
	// Concurrency is how many instances each other function runs at once
	// (0: the stack's default).
	Concurrency int
	// DuplicateRate and ReorderWindow are stack.Options': how loosely
	// EventBridge delivers (0: the stack's defaults, negative: exactly
	// once, at once).
	DuplicateRate float64
	// CapacityScale is stack.Options': DynamoDB's per-partition ceilings
	// times it (0: AWS's; negative: off).
	CapacityScale float64
	ReorderWindow time.Duration
	// WarmUp runs the same load, not scored, before the measured phase.
	WarmUp time.Duration
	// Settle bounds the wait for the clients to catch up at the end.
	Settle time.Duration
	// Presence turns presence on for every topic and lifecycle events on,
	// and checks rosters, observers and lifecycle events at the end.
	Presence     bool
	FunctionsDir string
	Log          io.Writer
	// StackLog, when set, receives every JSON log line of the stack and
	// its functions (the run's own progress goes to Log).
	StackLog io.Writer
}

// Result is what a run saw.
type Result struct {
	Options                      Options
	Published                    int // events accepted by PutEvents
	Expected                     int // deliveries owed: each client, each event of its topics
	Delivered                    int // events handed to the application, repeats included
	Lost, Duplicated, OutOfOrder int
	Gaps                         int // unrecoverable holes the clients reported
	Drops, Connects, Resumes     int
	WireDuplicates               int // repeats on the wire the clients dropped
	SkippedDisconnects, Gone     int64
	// BusDuplicated and BusOvertaken are EventBridge's deliveries of an
	// event a second time, and deliveries overtaken by a later event.
	BusDuplicated, BusOvertaken int64
	Leftover, LeftoverPastTTL   int // records of connections after every client closed
	// LeftoverRecords: of Leftover, the connection records themselves
	// (not their subscription entries).
	LeftoverRecords int
	// Numbering is how long events waited between PutEvents and their
	// sequence number (the event record's numbering time): its largest
	// and 99th percentile, and how many waited over MaxNumberingWait.
	NumberingMax, NumberingP99 time.Duration
	NumberedLate               int
	// Unnumbered events had no number when the run was scored (they
	// count as late, waiting at least until then).
	Unnumbered int
	// Late lists when (since publishing began) the late events were
	// published, and Losses what each client that missed events saw:
	// the evidence to find a cause with.
	Late   []time.Duration
	Losses []string
	Took   time.Duration
	// Presence is the presence variant's check, when it ran.
	Presence *presenceCheck
}

// MaxNumberingWait is the longest an event may wait for its sequence
// number: the ordering promise (broadcast.OrderWindow) holds only when
// events are numbered promptly.
const MaxNumberingWait = 2 * time.Second

// OK is true when nothing was lost, repeated or reordered and no record
// outlived its connection's TTL.
func (r Result) OK() bool {
	return r.Lost == 0 && r.Duplicated == 0 && r.OutOfOrder == 0 && r.Gaps == 0 && r.LeftoverPastTTL == 0 && r.NumberedLate == 0 &&
		(r.Presence == nil || r.Presence.ok())
}

// instances says how many instances of a function run at once.
func instances(n int) string {
	if n == 0 {
		return "the stack's default"
	}
	return strconv.Itoa(n)
}

// Print writes the result as a small table.
func (r Result) Print(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "soak: %d clients, %s, %d topics (%d per client), %d events/s, a drop per client every %s on average\n",
		o.Clients, o.Duration, o.Topics, o.TopicsPerClient, o.Rate, o.DropEvery)
	fmt.Fprintf(w, "after a %s warm-up under the same load (not scored); faults: %.1f%% posts throttled, %.1f%% failing with 500, %.0f%% of $disconnects skipped; the stack as harsh as AWS (defaults); %d broadcast invocations at once, %s of each other function\n\n",
		o.WarmUp, 100*o.ThrottleRate, 100*o.ErrorRate, 100*o.SkipDisconnectRate, o.BroadcastConcurrency, instances(o.Concurrency))
	rows := [][2]string{
		{"events published", strconv.Itoa(r.Published)},
		{"deliveries owed (client x event of its topics)", strconv.Itoa(r.Expected)},
		{"delivered to the application", strconv.Itoa(r.Delivered)},
		{"lost (must be 0)", strconv.Itoa(r.Lost)},
		{"duplicated (must be 0)", strconv.Itoa(r.Duplicated)},
		{"out of order (must be 0)", strconv.Itoa(r.OutOfOrder)},
		{"gaps reported (must be 0)", strconv.Itoa(r.Gaps)},
		{"wait for a sequence number: p99 / max", fmt.Sprintf("%s / %s", r.NumberingP99.Round(time.Millisecond), r.NumberingMax.Round(time.Millisecond))},
		{"events numbered over " + MaxNumberingWait.String() + " after publishing (must be 0)", strconv.Itoa(r.NumberedLate)},
		{"of them not numbered when scored", strconv.Itoa(r.Unnumbered)},
		{"drops / connects / resumes", fmt.Sprintf("%d / %d / %d", r.Drops, r.Connects, r.Resumes)},
		{"repeats on the wire, dropped by the clients", strconv.Itoa(r.WireDuplicates)},
		{"$disconnects skipped / 410s answered", fmt.Sprintf("%d / %d", r.SkippedDisconnects, r.Gone)},
		{"EventBridge: events delivered twice / deliveries overtaken", fmt.Sprintf("%d / %d", r.BusDuplicated, r.BusOvertaken)},
		{"store: connection records left after every client closed", strconv.Itoa(r.Leftover)},
		{"store: of them past their TTL (must be 0)", strconv.Itoa(r.LeftoverPastTTL)},
		{"took", r.Took.Round(time.Second).String()},
	}
	if r.Presence != nil {
		rows = append(rows, r.Presence.rows()...)
	}
	fmt.Fprintln(w, "| | |\n|---|---:|")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s | %s |\n", row[0], row[1])
	}
	if len(r.Late) > 0 {
		fmt.Fprintf(w, "\nevents numbered late, by when they were published:\n")
		for _, l := range lateBuckets(r.Late, 10*time.Second) {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if r.Presence != nil {
		for _, line := range r.Presence.Wrong {
			fmt.Fprintf(w, "\n%s", line)
		}
	}
	for _, l := range r.Losses {
		fmt.Fprintf(w, "\n%s", l)
	}
}

// lateBuckets counts late events per window of publishing time.
func lateBuckets(late []time.Duration, window time.Duration) []string {
	counts := map[time.Duration]int{}
	for _, d := range late {
		counts[d.Truncate(window)]++
	}
	keys := slices.Sorted(maps.Keys(counts))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%s to %s: %d", k, k+window, counts[k]))
	}
	return out
}

// subscriber is one client and what it handed over.
type subscriber struct {
	name   string
	c      *client.Client
	topics []string
	mu     sync.Mutex
	got    map[string][]int // each topic's event numbers, in the order delivered
	gaps   int
	ready  chan struct{}
	nSubs  atomic.Int32
	// trail is the client's last connection changes and replies other
	// than events, with when they came, to explain a loss.
	trail []string
	start time.Time
}

// note adds a line to the trail, keeping the last trailLen.
func (sub *subscriber) note(format string, a ...any) {
	const trailLen = 24
	line := fmt.Sprintf("%8s  ", time.Since(sub.start).Round(time.Millisecond)) + fmt.Sprintf(format, a...)
	sub.mu.Lock()
	sub.trail = append(sub.trail, line)
	if len(sub.trail) > trailLen {
		sub.trail = sub.trail[len(sub.trail)-trailLen:]
	}
	sub.mu.Unlock()
}

// Run runs the soak.
func Run(ctx context.Context, o Options) (Result, error) {
	rn := &run{o: o, start: time.Now()}
	if err := rn.startStack(ctx); err != nil {
		return Result{}, err
	}
	defer rn.s.Close()
	runCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	var wg sync.WaitGroup
	var pr *presenceRun
	if o.Presence {
		var err error
		if pr, err = rn.startPresence(ctx, runCtx); err != nil {
			return Result{}, err
		}
	}
	if err := rn.connect(ctx, runCtx, &wg); err != nil {
		return Result{}, err
	}
	if err := rn.warmUp(ctx); err != nil {
		return Result{}, err
	}
	ph, err := rn.publishPhase(ctx)
	if err != nil {
		return Result{}, err
	}
	r := Result{Options: o}
	for _, sub := range rn.subs {
		for _, t := range sub.topics {
			r.Expected += ph.published[t]
		}
	}
	for _, n := range ph.published {
		r.Published += n
	}
	rn.logf("published %d events; waiting up to %s for the clients to catch up", r.Published, o.Settle)
	caughtUp(rn.subs, ph.published, o.Settle)
	if pr != nil {
		rn.logf("checking every roster and observer against the subscriptions")
		r.Presence = &presenceCheck{}
		if err := pr.checkRosters(ctx, rn, o.Settle, r.Presence); err != nil {
			return r, err
		}
	}
	stopClients()
	wg.Wait()
	if err := rn.score(ctx, &r, ph); err != nil {
		return r, err
	}
	if pr != nil {
		rn.logf("waiting for every closed connection's lifecycle event")
		pr.checkLifecycle(rn.s.Gateway.Stats().Connected.Load(), r.LeftoverRecords, o.Settle, r.Presence)
	}
	return r, nil
}

// run is one soak's stack, topics and clients.
type run struct {
	o      Options
	start  time.Time
	s      *stack.Stack
	topics []string
	subs   []*subscriber
	pub    publish.Publisher
}

func (rn *run) logf(format string, a ...any) {
	fmt.Fprintf(rn.o.Log, "%6s  %s\n", time.Since(rn.start).Round(time.Second), fmt.Sprintf(format, a...))
}

func (rn *run) startStack(ctx context.Context) error {
	rn.logf("starting the local stack")
	stackLog := slog.New(slog.DiscardHandler)
	var sl *lockedWriter
	if rn.o.StackLog != nil {
		sl = &lockedWriter{w: rn.o.StackLog}
		stackLog = slog.New(slog.NewJSONHandler(sl, nil))
	}
	var err error
	rn.s, err = stack.Start(ctx, stack.Options{
		WebSocketAddr: "127.0.0.1:0", AWSAddr: "127.0.0.1:0", DynamoDBAddr: "127.0.0.1:0",
		FunctionsDir: rn.o.FunctionsDir, BroadcastConcurrency: rn.o.BroadcastConcurrency, Concurrency: rn.o.Concurrency,
		DuplicateRate: rn.o.DuplicateRate, ReorderWindow: rn.o.ReorderWindow,
		CapacityScale: rn.o.CapacityScale,
		Env:           rn.env(),
		Log:           stackLog,
		FunctionLog: func(fn string, line []byte) {
			if sl != nil {
				sl.line(fn, line)
			}
			if strings.Contains(string(line), `"level":"ERROR"`) {
				rn.logf("%s: %s", fn, strings.TrimSpace(string(line)))
			}
		},
	})
	if err != nil {
		return err
	}
	rn.topics = make([]string, rn.o.Topics)
	for i := range rn.topics {
		rn.topics[i] = fmt.Sprintf("soak.t%d", i)
	}
	rn.pub = publish.Publisher{
		Client: eventbridge.New(eventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(rn.s.AWSEndpoint), Credentials: rn.s.Credentials()}),
		Bus:    rn.s.BusName, Source: "soak",
	}
	return nil
}

// connect starts the clients (on runCtx) and waits until each subscribed.
func (rn *run) connect(ctx, runCtx context.Context, wg *sync.WaitGroup) error {
	rn.subs = make([]*subscriber, rn.o.Clients)
	rn.logf("connecting %d clients", rn.o.Clients)
	for i := range rn.subs {
		sub, err := newSubscriber(rn.s, i, pick(rn.topics, rn.o.TopicsPerClient), rn.start)
		if err != nil {
			return err
		}
		rn.subs[i] = sub
		wg.Add(1)
		go func() { defer wg.Done(); _ = sub.c.Run(runCtx) }()
	}
	for _, sub := range rn.subs {
		select {
		case <-sub.ready:
		case <-time.After(time.Minute):
			return fmt.Errorf("soak: a client did not subscribe within a minute")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// warmUp runs the measured phase's load (events, drops, faults) for
// WarmUp with every event numbered 0, not scored, then waits until every
// client has an event of each of its topics. The local stack's first
// seconds under that load are its own cold start, which a deployed, warm
// gateway does not have: its function instances start, and DynamoDB
// Local's JVM compiles the paths reconnects and events take (the first 20
// seconds numbered events up to 3.7 s late in runs that were otherwise
// well under a second). Gaps and losses in it still count.
func (rn *run) warmUp(ctx context.Context) error {
	o := rn.o
	if o.WarmUp > 0 {
		rn.logf("warming up for %s: the same load, not scored", o.WarmUp)
		rn.s.SetFaults(stack.Faults{Faults: apigw.Faults{ThrottleRate: o.ThrottleRate, ErrorRate: o.ErrorRate, SkipDisconnectRate: o.SkipDisconnectRate}})
		var drops atomic.Int64
		wctx, end := context.WithTimeout(ctx, o.WarmUp)
		go dropAtRandom(wctx, rn.subs, o.DropEvery, &drops)
		err := publishEvents(wctx, rn.pub, rn.topics, o.Rate, warming{})
		end()
		rn.s.SetFaults(stack.Faults{})
		if err != nil {
			return fmt.Errorf("soak: warm-up: %w", err)
		}
	}
	for _, t := range rn.topics {
		if _, err := rn.pub.Publish(ctx, publish.Detail{Topic: t, Payload: json.RawMessage(`{"n":0}`)}); err != nil {
			return fmt.Errorf("soak: warm-up: %w", err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for _, sub := range rn.subs {
		for _, t := range sub.topics {
			for !sub.has(t, 0) {
				if time.Now().After(deadline) {
					sub.mu.Lock()
					trail := strings.Join(sub.trail, "\n  ")
					sub.mu.Unlock()
					return fmt.Errorf("soak: warm-up: %s did not get %s's warm-up event within a minute; its last connection changes and replies:\n  %s", sub.name, t, trail)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	return nil
}

// phase is what the measured phase published.
type phase struct {
	published map[string]int       // each topic's last event number
	sent      map[string]time.Time // event id: when PutEvents was called
	began     time.Time
	drops     int
}

// publishPhase publishes for Duration while clients drop and faults hit.
func (rn *run) publishPhase(ctx context.Context) (phase, error) {
	o := rn.o
	rn.logf("publishing %d events/s for %s while clients drop", o.Rate, o.Duration)
	rn.s.SetFaults(stack.Faults{Faults: apigw.Faults{ThrottleRate: o.ThrottleRate, ErrorRate: o.ErrorRate, SkipDisconnectRate: o.SkipDisconnectRate}})
	defer rn.s.SetFaults(stack.Faults{})
	ph := phase{published: make(map[string]int, len(rn.topics)), sent: map[string]time.Time{}, began: time.Now()}
	var drops atomic.Int64
	pctx, end := context.WithTimeout(ctx, o.Duration)
	defer end()
	go dropAtRandom(pctx, rn.subs, o.DropEvery, &drops)
	if err := publishEvents(pctx, rn.pub, rn.topics, o.Rate, &ph); err != nil {
		return ph, err
	}
	ph.drops = int(drops.Load())
	return ph, ctx.Err()
}

// score fills r from the clients, the event records and the table.
func (rn *run) score(ctx context.Context, r *Result, ph phase) error {
	for _, sub := range rn.subs {
		sub.score(r, ph.published)
		st := sub.c.Stats()
		r.Connects += st.Connects
		r.Resumes += st.Resumes
		r.WireDuplicates += st.Duplicates
	}
	if err := r.numbering(ctx, rn.s, ph.sent, ph.began); err != nil {
		return err
	}
	r.Drops = ph.drops
	gw := rn.s.Gateway.Stats()
	r.SkippedDisconnects, r.Gone = gw.SkippedDisconnects.Load(), gw.Gone.Load()
	r.BusDuplicated, r.BusOvertaken = rn.s.Bus.Stats().Duplicated.Load(), rn.s.Bus.Stats().Overtaken.Load()
	// Every client closed cleanly: wait until the gateway has run their
	// $disconnects (all but the skipped ones, whose records wait for their
	// TTL or a 410), at most Settle. A fixed pause counted records whose
	// $disconnect was still queued for an instance as left behind.
	dctx, cancel := context.WithTimeout(ctx, rn.o.Settle)
	rn.s.Gateway.CloseAll(dctx)
	cancel()
	var err error
	if r.Leftover, r.LeftoverRecords, r.LeftoverPastTTL, err = leftovers(ctx, rn.s); err != nil {
		return err
	}
	r.Took = time.Since(rn.start)
	return nil
}

func newSubscriber(s *stack.Stack, i int, topics []string, start time.Time) (*subscriber, error) {
	sub := &subscriber{name: fmt.Sprintf("soak-%d", i), topics: topics, got: map[string][]int{}, ready: make(chan struct{}), start: start}
	name := sub.name
	minter := auth.Minter{Alg: "HS256", Key: []byte(s.Secret)}
	c, err := client.New(client.Options{
		URL: s.WebSocketURL,
		Token: func(context.Context) (string, error) {
			return minter.Token(auth.Grant{Sub: name, Topics: []string{"soak.>"}})
		},
		Topics: topics, MinBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second, GapWait: 500 * time.Millisecond,
		OnEvent: func(e client.Event) {
			var p struct{ N int }
			_ = json.Unmarshal(e.Data, &p)
			sub.mu.Lock()
			sub.got[e.Topic] = append(sub.got[e.Topic], p.N)
			sub.mu.Unlock()
		},
		OnGap: func(client.Gap) { sub.mu.Lock(); sub.gaps++; sub.mu.Unlock() },
		OnState: func(c client.StateChange) {
			if c.Err != nil {
				sub.note("%s: %v", c.State, c.Err)
			} else {
				sub.note("%s", c.State)
			}
		},
		OnReply: func(b []byte) {
			if !bytes.Contains(b, []byte(`"pong"`)) {
				sub.note("%s", b)
			}
			var r struct{ Type string }
			if json.Unmarshal(b, &r) == nil && r.Type == "subscribed" && int(sub.nSubs.Add(1)) == len(topics) {
				close(sub.ready)
			}
		},
	})
	sub.c = c
	return sub, err
}

// score adds what one client got to r.
func (sub *subscriber) score(r *Result, published map[string]int) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	r.Gaps += sub.gaps
	var missed []string
	for _, t := range sub.topics {
		got := slices.DeleteFunc(slices.Clone(sub.got[t]), func(n int) bool { return n == 0 }) // the warm-up's
		r.Delivered += len(got)
		seen := make(map[int]bool, len(got))
		for i, n := range got {
			if seen[n] {
				r.Duplicated++
				continue
			}
			seen[n] = true
			if i > 0 && n < got[i-1] {
				r.OutOfOrder++
			}
		}
		var lost []int
		for n := 1; n <= published[t]; n++ {
			if !seen[n] {
				r.Lost++
				lost = append(lost, n)
			}
		}
		if len(lost) > 0 {
			missed = append(missed, fmt.Sprintf("%s missed %v", t, lost))
		}
	}
	if len(missed) > 0 && len(r.Losses) < 10 {
		r.Losses = append(r.Losses, fmt.Sprintf("client %s (topics %v): %s; its last connection changes and replies:\n  %s\n",
			sub.name, sub.topics, strings.Join(missed, ", "), strings.Join(sub.trail, "\n  ")))
	}
}

// has reports whether event n of topic t was delivered.
func (sub *subscriber) has(t string, n int) bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	return slices.Contains(sub.got[t], n)
}

// last is the highest event number of topic t delivered.
func (sub *subscriber) last(t string) int {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if g := sub.got[t]; len(g) > 0 {
		return slices.Max(g)
	}
	return 0
}

// publishEvents sends rate events a second, round robin over topics, numbering
// each topic's events from 1 in its payload, until ctx ends; sent records
// when each event id was published.
func publishEvents(ctx context.Context, pub publish.Publisher, topics []string, rate int, c counter) error {
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		t := topics[i%len(topics)]
		n := c.next(t)
		at := time.Now()
		ids, err := pub.Publish(context.WithoutCancel(ctx), publish.Detail{Topic: t, Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))})
		if err != nil {
			return fmt.Errorf("soak: publish: %w", err)
		}
		c.record(t, n, ids, at)
	}
}

// counter numbers the events publishEvents sends and keeps what it sent.
type counter interface {
	next(t string) int
	record(t string, n int, ids []string, at time.Time)
}

// next numbers a topic's scored events from 1.
func (ph *phase) next(t string) int { return ph.published[t] + 1 }

func (ph *phase) record(t string, n int, ids []string, at time.Time) {
	ph.published[t] = n
	for _, id := range ids {
		ph.sent[id] = at
	}
}

// warming numbers every warm-up event 0 and keeps nothing: it is not
// scored.
type warming struct{}

func (warming) next(string) int                         { return 0 }
func (warming) record(string, int, []string, time.Time) {}

// numbering reads every event's record and measures how long it waited
// for its sequence number after it was published.
func (r *Result) numbering(ctx context.Context, s *stack.Stack, sent map[string]time.Time, began time.Time) error {
	st := store.New(dynamolocal.Client(s.DynamoDBEndpoint), s.Table)
	type wait struct {
		d, at      time.Duration // the wait, and when it was published
		unnumbered bool          // no number yet: d is a lower bound
		err        error
	}
	ids := make(chan string)
	out := make(chan wait)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				rec, ok, err := st.Event(ctx, id)
				switch {
				case err != nil:
					out <- wait{err: err}
				case !ok || rec.Numbered.IsZero():
					// Not numbered yet: it waits at least this long (it
					// counts as late), and the run's figures still print.
					out <- wait{d: time.Since(sent[id]), at: sent[id].Sub(began), unnumbered: true}
				default:
					out <- wait{d: rec.Numbered.Sub(sent[id]), at: sent[id].Sub(began)}
				}
			}
		}()
	}
	go func() {
		for id := range sent {
			ids <- id
		}
		close(ids)
		wg.Wait()
		close(out)
	}()
	var waits []time.Duration
	var firstErr error
	for w := range out {
		if w.err != nil {
			firstErr = cmp.Or(firstErr, w.err)
			continue
		}
		waits = append(waits, w.d)
		if w.unnumbered {
			r.Unnumbered++
		}
		if w.d > MaxNumberingWait {
			r.NumberedLate++
			r.Late = append(r.Late, w.at)
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if len(waits) > 0 {
		slices.Sort(waits)
		r.NumberingMax = waits[len(waits)-1]
		r.NumberingP99 = waits[(len(waits)*99)/100]
	}
	return nil
}

// dropAtRandom cuts client connections without a close frame, each client
// about once per every.
func dropAtRandom(ctx context.Context, subs []*subscriber, every time.Duration, drops *atomic.Int64) {
	const step = 100 * time.Millisecond
	p := float64(step) / float64(every)
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, sub := range subs {
			if rand.Float64() < p {
				sub.c.Drop()
				drops.Add(1)
			}
		}
	}
}

// caughtUp waits until every client has the last event of each of its
// topics, for at most within.
func caughtUp(subs []*subscriber, published map[string]int, within time.Duration) {
	deadline := time.Now().Add(within)
	for _, sub := range subs {
		for _, t := range sub.topics {
			for sub.last(t) < published[t] && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
}

// leftovers counts the connection records in the table, and those past
// their TTL. The soak owns its DynamoDB Local, so a Scan of the table is
// the honest census (the gateway itself never scans).
func leftovers(ctx context.Context, s *stack.Stack) (all, records, pastTTL int, err error) {
	db := dynamolocal.Client(s.DynamoDBEndpoint)
	now := time.Now().Unix()
	p := dynamodb.NewScanPaginator(db, &dynamodb.ScanInput{TableName: aws.String(s.Table)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, 0, 0, fmt.Errorf("soak: census of the table: %w", err)
		}
		for _, it := range page.Items {
			if !isConnectionItem(it) {
				continue
			}
			all++
			if sk, ok := it[store.SortKey].(*types.AttributeValueMemberS); ok && sk.Value == "#META" {
				records++
			}
			if ttl := ttlOf(it); ttl > 0 && ttl < now {
				pastTTL++
			}
		}
	}
	return all, records, pastTTL, nil
}

// isConnectionItem: a connection's record, its reverse subscription
// entries (C#id) and its entries under the patterns it subscribed (P#...).
func isConnectionItem(it map[string]types.AttributeValue) bool {
	pk, ok := it[store.PartitionKey].(*types.AttributeValueMemberS)
	return ok && (strings.HasPrefix(pk.Value, "C#") || strings.HasPrefix(pk.Value, "P#"))
}

func ttlOf(it map[string]types.AttributeValue) int64 {
	if n, ok := it[store.TTLAttribute].(*types.AttributeValueMemberN); ok {
		v, _ := strconv.ParseInt(n.Value, 10, 64)
		return v
	}
	return 0
}

// pick is n distinct topics at random.
func pick(topics []string, n int) []string {
	out := slices.Clone(topics)
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	out = out[:min(n, len(out))]
	slices.Sort(out)
	return out
}

// env is the functions' settings for the run.
func (rn *run) env() map[string]string {
	env := map[string]string{config.EnvHistoryDefault: "true", config.EnvLogLevel: "warn"}
	if rn.o.Presence {
		env[config.EnvPresenceTopics] = "soak.*"
		env[config.EnvLifecycleEvents] = "true"
	}
	return env
}

// lockedWriter serializes the stack's log and its functions' lines into
// one file, a JSON object a line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// line writes one line a function logged, with the function's name; a
// line that is not JSON (a panic's trace) is kept as a string.
func (l *lockedWriter) line(fn string, line []byte) {
	line = bytes.TrimSpace(line)
	v := json.RawMessage(line)
	if !json.Valid(line) {
		v, _ = json.Marshal(string(line))
	}
	b, _ := json.Marshal(struct {
		Function string          `json:"function"`
		Line     json.RawMessage `json:"line"`
	}{fn, v})
	_, _ = l.Write(append(b, '\n'))
}

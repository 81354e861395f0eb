package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	client "github.com/wsgate/wsgate/clients/go"
	"github.com/wsgate/wsgate/localstack/aws/ddbproxy"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// The scale model: AWS's per-key ceilings divided by 1/CapacityScale, so
// an audience of A subscribers here puts the pressure on each DynamoDB key
// that A/CapacityScale subscribers put on AWS. The subscribers are sink
// connections (apigw.AddSinks: open to @connections, no socket), written
// by the store's own code, and a few real WebSocket clients ride along as
// canaries that must receive every event.

// ScaleOptions configure the scale-model runs.
type ScaleOptions struct {
	// CapacityScale divides DynamoDB's per-key ceilings (0.01: by 100).
	CapacityScale float64
	// Runs are the audiences and event rates to measure.
	Runs []ScaleRun
	// RateAudience is the audience at which the largest sustained event
	// rate on one topic is searched for (0: not searched), RateStep how
	// long each rate is held.
	RateAudience int
	RateStep     time.Duration
	// Canaries are the real WebSocket clients in each run.
	Canaries int
	// Posters is how many posts at once the sink calibration makes.
	Posters      int
	FunctionsDir string
	Log          io.Writer
}

// ScaleRun is one audience at one event rate.
type ScaleRun struct {
	Audience  int
	PerSecond int
	For       time.Duration
}

// Modelled is the audience on AWS the run stands for.
func (r ScaleRun) Modelled(scale float64) int { return int(math.Round(float64(r.Audience) / scale)) }

// ScaleRow is what one run measured.
type ScaleRow struct {
	Run                 ScaleRun
	Events              int    // published
	Expected, Delivered int64  // sink deliveries owed and made (each once)
	Duplicates          int64  // sink deliveries of an event already received
	CanariesOK          bool   // every canary got every event once, in order
	CanaryMiss          string // when not: what the first canary that missed got
	Last                []time.Duration
	DeliveriesPerSecond float64
	Floor               time.Duration // the audience at the sink's posts per second, or Alone when the machine is slower
	// Alone is how long an event, published alone, took to reach every
	// sink (the median of aloneSamples): this machine's own pace for the
	// audience (DynamoDB Local and the functions share its cores). When
	// it is longer than the run's interval between events, the run
	// publishes one event per Alone (MachineBound) and Fits shows the
	// target rate's keys would hold.
	Alone        time.Duration
	MachineBound bool
	Interval     time.Duration // between published events
	// Fits: at the run's target rate, every key's units per event stay
	// under its ceiling (the ceilings the model scales, or AWS's own).
	Fits bool
	// FitsKey is the key nearest its ceiling at the target rate, and
	// FitsShare its share of that ceiling.
	FitsKey             string
	FitsShare           float64
	HotKey              string
	HotRead, HotWrite   float64 // units per event on the hottest key
	HotPeakRead         float64 // the hottest key's peak read units in one second
	HotPeakWrite        float64
	Throttled           int64   // DynamoDB requests refused for a key's ceiling
	InvocationsPerEvent float64 // broadcast invocations
	Error               string
}

// ScaleReport is the scale model's part of a bench report.
type ScaleReport struct {
	Options       ScaleOptions
	SinkPerSecond float64 // posts a second the sink sustained (calibration)
	Rows          []ScaleRow
	// Sustained is the largest event rate on one topic held with no
	// throttle and every delivery made, at RateAudience; Steps every rate
	// tried.
	Sustained int
	Steps     []ScaleRow
	Setup     time.Duration // writing the subscribers
	// BucketSplitAt is the functions' WSGATE_BUCKET_SPLIT_AT in the run.
	BucketSplitAt string
}

// Validate checks the options before anything starts.
func (o ScaleOptions) Validate() error {
	if o.CapacityScale <= 0 || o.CapacityScale > 1 {
		return fmt.Errorf("bench: --capacity-scale %g: want a share in (0, 1]", o.CapacityScale)
	}
	for _, r := range o.Runs {
		if r.Audience < 1 || r.PerSecond < 1 || r.For <= 0 {
			return fmt.Errorf("bench: scale run %+v: audience, rate and duration must be positive", r)
		}
	}
	if o.RateAudience < 0 || (o.RateAudience > 0 && o.RateStep <= 0) || o.Canaries < 0 || o.Posters < 1 {
		return errors.New("bench: scale model: rate audience and canaries not negative, rate step and posters positive")
	}
	return nil
}

type scaleBench struct {
	o     ScaleOptions
	s     *stack.Stack
	st    *store.Store
	bus   publish.Publisher
	log   func(format string, args ...any)
	sinks int // sink connections written so far (ids 0..sinks-1 subscribe to every run's topic)
}

// RunScale runs the scale model on a stack of its own.
func RunScale(ctx context.Context, o ScaleOptions) (*ScaleReport, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	b, err := startScaleBench(ctx, o)
	if err != nil {
		return nil, err
	}
	defer b.s.Close()
	r := &ScaleReport{Options: o, BucketSplitAt: b.s.FunctionEnv()[EnvBucketSplitAt]}
	if r.SinkPerSecond, err = b.calibrate(ctx); err != nil {
		return nil, err
	}
	b.log("the sink takes %.0f posts a second", r.SinkPerSecond)
	// Audiences grow from the smallest: every sink subscribes to scale.>,
	// so a run reaches every sink written so far, and a smaller audience
	// after a larger one would be posted to the larger one.
	order := make([]int, len(o.Runs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(o.Runs[a].Audience, o.Runs[b].Audience) })
	rows := make([]ScaleRow, len(o.Runs))
	searched := o.RateAudience <= 0
	for _, i := range order {
		run := o.Runs[i]
		if !searched && o.RateAudience <= run.Audience {
			if err := b.rateSearch(ctx, r); err != nil {
				return nil, err
			}
			searched = true
		}
		setup := time.Now()
		if err := b.grow(ctx, run.Audience); err != nil {
			return nil, err
		}
		r.Setup += time.Since(setup)
		row := b.measure(ctx, fmt.Sprintf("scale.t%d", i), run, r.SinkPerSecond)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		rows[i] = row
		b.log("%d subscribers (modelled %d) at %d/s: %d of %d delivered, last p50 %s, %d throttled",
			run.Audience, run.Modelled(o.CapacityScale), run.PerSecond, row.Delivered, row.Expected, median(row.Last), row.Throttled)
	}
	r.Rows = rows
	if !searched {
		if err := b.rateSearch(ctx, r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// rateSearch doubles the event rate on one topic at RateAudience
// subscribers until a run is throttled, does not deliver everything, or
// its keys' units per event would not fit their ceilings at the rate (a
// rate this machine cannot publish at is paced as measure paces it);
// Sustained is the last rate that passed.
func (b *scaleBench) rateSearch(ctx context.Context, r *ScaleReport) error {
	o := b.o
	if err := b.grow(ctx, o.RateAudience); err != nil {
		return err
	}
	for rate := 2; rate <= 512; rate *= 2 {
		run := ScaleRun{Audience: o.RateAudience, PerSecond: rate, For: o.RateStep}
		row := b.measure(ctx, fmt.Sprintf("scale.rate%d", rate), run, r.SinkPerSecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.Steps = append(r.Steps, row)
		b.log("rate %d/s at %d subscribers: %d of %d delivered, %d throttled, at %d/s the nearest key to its ceiling %s at %.0f%%",
			rate, o.RateAudience, row.Delivered, row.Expected, row.Throttled, rate, row.FitsKey, 100*row.FitsShare)
		if row.Throttled > 0 || row.Delivered < row.Expected || row.Error != "" || !row.Fits {
			break
		}
		r.Sustained = rate
	}
	return nil
}

// EnvBucketSplitAt is the functions' setting of how many entries a
// subscriber bucket holds before the pattern spreads over more buckets
// (DefaultBucketSplitAt on AWS).
const (
	EnvBucketSplitAt     = "WSGATE_BUCKET_SPLIT_AT"
	DefaultBucketSplitAt = 2000
)

// BucketSplitAt is the split threshold at a capacity scale: a bucket holds
// the share of its key's ceiling it holds on AWS, so the model's buckets
// are as many, and as hot against their ceilings, as AWS's.
func BucketSplitAt(scale float64) int {
	return max(1, int(math.Round(DefaultBucketSplitAt*scale)))
}

// startScaleBench starts the scale model's stack: DynamoDB's ceilings at
// o.CapacityScale, the bucket split threshold scaled with them.
func startScaleBench(ctx context.Context, o ScaleOptions) (*scaleBench, error) {
	start := time.Now()
	b := &scaleBench{o: o}
	b.log = func(format string, args ...any) {
		fmt.Fprintf(o.Log, "%s  scale model: %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	split := BucketSplitAt(o.CapacityScale)
	b.log("starting the local stack, DynamoDB ceilings at %g of AWS's on the audience keys, buckets split at %d entries", o.CapacityScale, split)
	var err error
	b.s, err = stack.Start(ctx, stack.Options{
		WebSocketAddr: "127.0.0.1:0", AWSAddr: "127.0.0.1:0", DynamoDBAddr: "127.0.0.1:0",
		FunctionsDir: o.FunctionsDir, Concurrency: 8, BroadcastConcurrency: 16,
		CapacityScale: o.CapacityScale,
		IdleTimeout:   2 * time.Hour,
		Env: map[string]string{
			config.EnvLogLevel: "warn", config.EnvConnectionTTL: "3h",
			EnvBucketSplitAt: strconv.Itoa(split),
		},
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return nil, err
	}
	// The subscribers are written as the functions write them: through
	// the stack's DynamoDB endpoint (its capacity accounting, its replicas
	// for eventually consistent reads), signed with its credentials.
	b.st = store.New(dynamodb.New(dynamodb.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(b.s.AWSEndpoint), Credentials: b.s.Credentials(),
	}), b.s.Table)
	// And spread over buckets as the functions spread them, at the model's
	// split (with the store's default, 2,000, 10,000 subscribers sat on a
	// few keys at 1/100 of their ceilings, and the run was throttled).
	b.st.Bucketing.SplitAt = split
	b.bus = b.s.Publisher("bench")
	return b, nil
}

// sinkID is the connection id of sink i: 16 characters, as API Gateway's.
func sinkID(i int) string { return fmt.Sprintf("Sk%013d=", i) }

// sinkIndex is the i of a sinkID; -1 for anything else.
func sinkIndex(id string) int {
	if len(id) != 16 || id[:2] != "Sk" {
		return -1
	}
	n, err := strconv.Atoi(id[2:15])
	if err != nil {
		return -1
	}
	return n
}

// calibrate measures how many posts a second the @connections sink takes
// from Posters posting at once: the floor any fan-out's last delivery is
// measured against.
func (b *scaleBench) calibrate(ctx context.Context) (float64, error) {
	const n = 64
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Cal%012d=", i)
	}
	b.s.Gateway.AddSinks(ids, time.Now())
	defer b.s.Gateway.RemoveSinks(ids)
	mgmt := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region: "us-east-1", Credentials: b.s.Credentials(),
		BaseEndpoint: aws.String(b.s.AWSEndpoint + "/" + b.s.Stage),
	})
	var posted atomic.Int64
	var failed atomic.Int64
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range b.o.Posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := []byte(`{"n":0}`)
			for i := w; cctx.Err() == nil; i++ {
				_, err := mgmt.PostToConnection(cctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(ids[i%n]), Data: body})
				if err == nil {
					posted.Add(1)
				} else if cctx.Err() == nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if posted.Load() == 0 {
		return 0, fmt.Errorf("bench: the sink took no post in %s (%d failed)", took, failed.Load())
	}
	return float64(posted.Load()) / took.Seconds(), nil
}

// grow writes sink subscribers until there are n, through the store's own
// code (a connection record with its subscription to every scale topic),
// many at once, with DynamoDB's ceilings suspended: on AWS an audience
// this size (times 1/scale) comes in over minutes at API Gateway's 500
// connections a second, and is not what the model measures. It returns
// once the stream records the writes caused are processed, so none of
// their load lands in a measured run (which resets the counts).
func (b *scaleBench) grow(ctx context.Context, n int) error {
	if n <= b.sinks {
		return nil
	}
	resume := b.s.SuspendCeilings()
	defer resume()
	if err := b.write(ctx, n); err != nil {
		return err
	}
	settled := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	if err := b.s.SettleStream(sctx); err != nil {
		return fmt.Errorf("bench: the stream after writing the subscribers: %w", err)
	}
	b.log("the stream settled in %s", time.Since(settled).Round(100*time.Millisecond))
	if l, err := b.st.PatternLayout(ctx, topic.MustPattern("scale.>")); err == nil {
		b.log("the audience spans levels %v (new subscribers at level %d)", l.Levels, l.Cur)
	}
	return nil
}

// write writes sink subscribers b.sinks..n-1.
func (b *scaleBench) write(ctx context.Context, n int) error {
	b.log("writing subscribers %d..%d", b.sinks, n)
	now := time.Now()
	ids := make([]string, 0, n-b.sinks)
	for i := b.sinks; i < n; i++ {
		ids = append(ids, sinkID(i))
	}
	b.s.Gateway.AddSinks(ids, now)
	sub := store.NewSubscription{Pattern: topic.MustPattern("scale.>")}
	var next atomic.Int64
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				c := store.Connection{
					ID: ids[i], ConnectedAt: now, ExpiresAt: now.Add(3 * time.Hour), SourceIP: "127.0.0.1",
					Principal: auth.Principal{Identity: auth.Identity{Sub: ids[i], Type: "user"}, Topics: []string{"scale.>"}},
					Limits:    config.Limits{MaxSubscriptions: 10, MaxConnectionsPerPrincipal: 10, MessagesPerSecond: 10, MaxMessageBytes: 32 * 1024},
				}
				var err error
				for attempt := 0; attempt < 20; attempt++ {
					if err = b.st.PutConnection(ctx, c, []store.NewSubscription{sub}); err == nil || ctx.Err() != nil {
						break
					}
					time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond) // a conflict: try again
				}
				if err != nil {
					errs <- fmt.Errorf("bench: subscriber %s: %w", ids[i], err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	b.sinks = n
	return nil
}

// received records each sink delivery of one run: a bit per (event,
// sink), and when each event's last delivery came.
type received struct {
	mu       sync.Mutex
	audience int
	bits     [][]uint64 // event n -> sink bitset
	last     []time.Time
	got      []int64
	dups     atomic.Int64
	other    atomic.Int64 // posts that were not an event of this run
}

func newReceived(events, audience int) *received {
	r := &received{audience: audience, bits: make([][]uint64, events), last: make([]time.Time, events), got: make([]int64, events)}
	for i := range r.bits {
		r.bits[i] = make([]uint64, (audience+63)/64)
	}
	return r
}

// waitFor waits until want deliveries are in, the deadline passes or
// ctx ends; it reports whether they came.
func (r *received) waitFor(ctx context.Context, want int64, deadline time.Time) bool {
	for r.total() < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// add records a post to a sink: a raw-payload frame {"n":N,...}.
func (r *received) add(id string, body []byte) {
	i := sinkIndex(id)
	n := payloadN(body)
	if i < 0 || i >= r.audience || n < 0 || n >= len(r.bits) {
		r.other.Add(1)
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	w, bit := i/64, uint64(1)<<(i%64)
	if r.bits[n][w]&bit != 0 {
		r.dups.Add(1)
		return
	}
	r.bits[n][w] |= bit
	r.got[n]++
	if now.After(r.last[n]) {
		r.last[n] = now
	}
}

// payloadN reads N from a frame that starts {"n":N; -1 when it does not.
func payloadN(b []byte) int {
	const prefix = `{"n":`
	if !bytes.HasPrefix(b, []byte(prefix)) {
		return -1
	}
	b = b[len(prefix):]
	end := bytes.IndexAny(b, ",}")
	if end < 0 {
		return -1
	}
	n, err := strconv.Atoi(string(b[:end]))
	if err != nil {
		return -1
	}
	return n
}

// measure publishes run.PerSecond events a second for run.For to topic t,
// which the first run.Audience sinks and the canaries subscribe to, and
// waits for every delivery.
func (b *scaleBench) measure(ctx context.Context, t string, run ScaleRun, sinkRate float64) ScaleRow {
	row := ScaleRow{Run: run, Interval: time.Second / time.Duration(run.PerSecond)}
	alone, err := b.alone(ctx, t+"a", run.Audience)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	row.Alone = alone
	if alone > row.Interval {
		row.Interval, row.MachineBound = alone, true
	}
	events := max(1, int(run.For/row.Interval))
	rec := newReceived(events, run.Audience)
	b.s.Gateway.SetSinkObserver(rec.add)
	defer b.s.Gateway.SetSinkObserver(nil)
	canaries, stop, err := b.canaries(ctx, t)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	defer stop()
	b.s.ResetCapacityCounts()
	invBefore := b.s.Host.Stats(stack.FnBroadcast).Invocations
	published := make([]time.Time, events)
	tick := time.NewTicker(row.Interval)
	defer tick.Stop()
	var pubErr error
	var pubMu sync.Mutex // publishes run in their own goroutines
	var wg sync.WaitGroup
	for n := range events {
		select {
		case <-ctx.Done():
			row.Error = ctx.Err().Error()
			return row
		case <-tick.C:
		}
		published[n] = time.Now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := publish.Detail{Topic: t, Payload: []byte(fmt.Sprintf(`{"n":%d}`, n))}
			if _, err := b.bus.Publish(ctx, d); err != nil {
				pubMu.Lock()
				pubErr = cmp.Or(pubErr, err)
				pubMu.Unlock()
			}
		}()
	}
	wg.Wait()
	row.Events = events
	if pubErr != nil {
		row.Error = "publish: " + pubErr.Error()
	}
	// Wait for every delivery: at most the floor three times over, and a
	// minute more.
	row.Expected = int64(events) * int64(run.Audience)
	floor := time.Duration(float64(run.Audience) / sinkRate * float64(time.Second))
	rec.waitFor(ctx, row.Expected, time.Now().Add(3*floor+time.Minute))
	time.Sleep(time.Second) // a repeat would show by now
	hot := hottest(b.s.Capacity(), events)
	row.Delivered, row.Duplicates = rec.total(), rec.dups.Load()
	row.CanaryMiss = canaryMiss(canaries, events)
	row.CanariesOK = row.CanaryMiss == ""
	row.Floor = floor
	if row.MachineBound {
		row.Floor = max(floor, row.Alone)
	}
	row.Fits, row.FitsKey, row.FitsShare = fits(b.s.Capacity(), events, run.PerSecond, b.o.CapacityScale)
	rec.mu.Lock()
	var first, lastAll time.Time
	for n := range events {
		if rec.got[n] == int64(run.Audience) {
			row.Last = append(row.Last, rec.last[n].Sub(published[n]))
		}
		if first.IsZero() {
			first = published[n]
		}
		if rec.last[n].After(lastAll) {
			lastAll = rec.last[n]
		}
	}
	rec.mu.Unlock()
	slices.Sort(row.Last)
	if !lastAll.IsZero() {
		row.DeliveriesPerSecond = float64(row.Delivered) / lastAll.Sub(first).Seconds()
	}
	row.HotKey, row.Throttled = hot.key, hot.throttled
	row.HotRead, row.HotWrite = hot.read, hot.write
	row.HotPeakRead, row.HotPeakWrite = hot.peakRead, hot.peakWrite
	row.InvocationsPerEvent = float64(b.s.Host.Stats(stack.FnBroadcast).Invocations-invBefore) / float64(events)
	return row
}

// aloneSamples is how many events alone time the machine's pace: one is
// a single draw of its noise (a run paced by one fast draw backlogged to
// 1.9 times its floor, where runs paced by slower ones held 1.0).
const aloneSamples = 3

// alone publishes aloneSamples events to topic t, each once the one
// before reached every sink (every sink gets them; the canaries, on
// another topic, do not), and returns the median time one took to reach
// the first audience sinks: this machine's pace for that audience.
func (b *scaleBench) alone(ctx context.Context, t string, audience int) (time.Duration, error) {
	rec := newReceived(aloneSamples, audience)
	b.s.Gateway.SetSinkObserver(rec.add)
	defer b.s.Gateway.SetSinkObserver(nil)
	took := make([]time.Duration, aloneSamples)
	for n := range aloneSamples {
		start := time.Now()
		if _, err := b.bus.Publish(ctx, publish.Detail{Topic: t, Payload: []byte(fmt.Sprintf(`{"n":%d}`, n))}); err != nil {
			return 0, fmt.Errorf("bench: the event alone: %w", err)
		}
		want := int64(n+1) * int64(audience)
		if !rec.waitFor(ctx, want, start.Add(3*time.Minute)) {
			return 0, fmt.Errorf("bench: event %d alone reached %d of %d sinks in 3 minutes", n, rec.total()-int64(n)*int64(audience), audience)
		}
		rec.mu.Lock()
		took[n] = rec.last[n].Sub(start)
		rec.mu.Unlock()
	}
	slices.Sort(took)
	return took[aloneSamples/2], nil
}

// fits reports whether, at rate events a second, every key's units per
// event (over events) stay under its ceiling: AWS's, times scale for the
// keys the model scales. It names the key nearest its ceiling.
func fits(c ddbproxy.CapacityStats, events, rate int, scale float64) (bool, string, float64) {
	worst, share := "", 0.0
	for _, k := range c.Keys {
		if k.Key == "(scan)" {
			continue
		}
		rc, wc := 3000.0, 1000.0
		if k.Scaled {
			rc, wc = rc*scale, wc*scale
		}
		per := float64(rate) / float64(events)
		if sh := max(k.ReadUnits*per/rc, k.WriteUnits*per/wc); sh > share {
			worst, share = k.Key, sh
		}
	}
	return share <= 1, worst, share
}

// hot is a run's hottest DynamoDB keys.
type hot struct {
	key                 string  // the key nearest its ceiling in its busiest second
	read, write         float64 // the most units any one key consumed per event
	peakRead, peakWrite float64 // the most units any one key consumed in one second
	throttled           int64
}

// hottest reads the per-key counts since the last reset, over events.
func hottest(c ddbproxy.CapacityStats, events int) hot {
	h := hot{throttled: c.Throttled}
	for _, k := range c.Keys {
		if k.Key == "(scan)" {
			continue // the bench's own census, spread over every partition
		}
		if h.key == "" {
			h.key = k.Key
		}
		h.read = max(h.read, k.ReadUnits/float64(events))
		h.write = max(h.write, k.WriteUnits/float64(events))
		h.peakRead, h.peakWrite = max(h.peakRead, k.PeakRead), max(h.peakWrite, k.PeakWrite)
	}
	return h
}

func (r *received) total() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, g := range r.got {
		n += g
	}
	return n
}

// canary is a real WebSocket client in a scale run.
type canary struct {
	c   *client.Client
	mu  sync.Mutex
	got []int
}

// canaries connects the run's real clients to topic t and waits until
// each is subscribed; stop closes them.
func (b *scaleBench) canaries(ctx context.Context, t string) ([]*canary, func(), error) {
	cctx, cancel := context.WithCancel(ctx)
	var out []*canary
	ready := make(chan struct{}, b.o.Canaries)
	minter := auth.Minter{Alg: "HS256", Key: []byte(b.s.Secret)}
	for i := range b.o.Canaries {
		k := &canary{}
		name := fmt.Sprintf("canary-%s-%d", t, i)
		var once sync.Once
		c, err := client.New(client.Options{
			URL: b.s.WebSocketURL,
			Token: func(context.Context) (string, error) {
				return minter.Token(auth.Grant{Sub: name, Topics: []string{"scale.>"}})
			},
			Topics: []string{t},
			OnEvent: func(e client.Event) {
				n := payloadN(e.Data)
				k.mu.Lock()
				k.got = append(k.got, n)
				k.mu.Unlock()
			},
			OnReply: func(b []byte) {
				if bytes.Contains(b, []byte(`"subscribed"`)) {
					once.Do(func() { ready <- struct{}{} })
				}
			},
		})
		if err != nil {
			cancel()
			return nil, nil, err
		}
		k.c = c
		out = append(out, k)
		go func() { _ = c.Run(cctx) }()
	}
	if err := awaitSubscribed(ctx, ready, b.o.Canaries, canaryWait); err != nil {
		cancel()
		return nil, nil, err
	}
	return out, cancel, nil
}

// canaryWait is how long the canaries have, from their first connect
// (after the setup), to be subscribed.
const canaryWait = time.Minute

// awaitSubscribed waits, within one deadline, for n canaries to report
// they are subscribed; the error says how many were not.
func awaitSubscribed(ctx context.Context, ready <-chan struct{}, n int, within time.Duration) error {
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	for got := 0; got < n; got++ {
		select {
		case <-ready:
		case <-ctx.Done():
			return fmt.Errorf("bench: %d of %d canaries not subscribed: %w", n-got, n, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("bench: %d of %d canaries were not subscribed within %s of connecting; no event was published", n-got, n, within)
		}
	}
	return nil
}

// canaryMiss says which canary did not get events 0..n-1, each once, in
// order, and what it got; "" when every one did.
func canaryMiss(cs []*canary, n int) string {
	deadline := time.Now().Add(10 * time.Second)
	for i, k := range cs {
		for {
			k.mu.Lock()
			got := slices.Clone(k.got)
			k.mu.Unlock()
			if len(got) >= n || time.Now().After(deadline) {
				if miss := eventsMiss(got, n); miss != "" {
					return fmt.Sprintf("canary %d %s", i, miss)
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return ""
}

// eventsMiss describes how got differs from 0..n-1; "" when it does not.
func eventsMiss(got []int, n int) string {
	for i, v := range got {
		if v != i {
			return fmt.Sprintf("got event %d where %d was due (%d events received of %d)", v, i, len(got), n)
		}
	}
	if len(got) != n {
		return fmt.Sprintf("got %d events of %d", len(got), n)
	}
	return ""
}

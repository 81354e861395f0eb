package devcli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/wsgate/wsgate/localstack/devtools/bench"
	"github.com/wsgate/wsgate/shared/config"
)

// Bench runs the fan-out benchmark and writes its table.
func Bench(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("bench", st)
	audiences := fs.String("audiences", "100,1000,10000,50000", "audience sizes")
	reps := fs.Int("reps", 5, "measured events per audience up to 10,000 (after one warm-up)")
	repsLarge := fs.Int("reps-large", 2, "measured events per audience above 10,000, and with --scale-workers (no warm-up)")
	latency := fs.Duration("latency", 20*time.Millisecond, "PostToConnection latency injected")
	jitter := fs.Duration("jitter", 5*time.Millisecond, "± jitter on that latency")
	throttle := fs.Float64("throttle", 0.001, "share of PostToConnection calls answered 429")
	workers := fs.Int("workers", config.DefaultFanoutWorkers, "WSGATE_FANOUT_WORKERS: posts in flight per invocation")
	scaleWorkers := fs.Int("scale-workers", 2, "measure 10,000 and more subscribers again with this many workers, within what the machine can emulate (0: don't)")
	shard := fs.Int("shard-size", 1000, "WSGATE_FANOUT_PAGE_SIZE: subscribers per shard")
	maxShards := fs.Int("max-shards", 51, "broadcast invocations at once (the task queue's concurrency, plus the coordinator)")
	connections := fs.Int("connections", 10000, "clients connected before the smaller audiences are measured")
	local := fs.Int("local-clients", 9000, "clients on the stack's own gateway (it also holds the functions' and nodes' connections); the rest go to node processes")
	perNode := fs.Int("per-node", 17000, "clients per WebSocket node process (open-file limits)")
	rateEvents := fs.Int("rate", 100, "events per second in the latency run")
	sustained := fs.Int("rate-sustained", 20, "events per second in a second latency run, one this machine keeps up with (0: none)")
	rateFor := fs.Duration("rate-for", 5*time.Second, "length of each latency run")
	rateAudience := fs.Int("rate-audience", 100, "subscribers in the latency run")
	functions := fs.String("functions", "bin/local", "functions built for this machine")
	naive := fs.String("naive", "bin/local/naive/bootstrap", "the baseline's bootstrap")
	arm := fs.String("arm", "bin", "make build's linux/arm64 bootstraps, for their sizes")
	out := fs.String("out", "bench/results/latest.md", "where to write the table")
	noNaive := fs.Bool("no-naive", false, "leave the naive baseline out")
	runs := fs.Int("runs", 3, "whole runs, each on a fresh stack: the table is the first's, followed by the spread over all")
	scaleModel := fs.Bool("scale-model", true, "after the fan-out runs, run the scale model: DynamoDB's per-key ceilings divided by 1/--model-scale, sink subscribers, real canaries")
	scaleOnly := fs.Bool("scale-only", false, "run only the scale model")
	modelScale := fs.Float64("model-scale", 0.01, "the scale model's share of AWS's per-key ceilings (0.01: 10,000 subscribers stand for 1,000,000)")
	modelFor := fs.Duration("model-for", time.Minute, "how long each scale-model run publishes")
	stormOnly := fs.Bool("storm-only", false, "run only the reconnect storm")
	stormOptions := stormFlags(fs)
	events := eventDelivery(fs)
	capScale := capacityScaleFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	dupRate, reorder := events()
	storm, err := stormOptions(*functions, st.Err)
	if err != nil {
		return err
	}
	if *stormOnly && storm.Clients == 0 {
		return fmt.Errorf("bench: --storm-only with --storm-clients 0: nothing to run")
	}
	fanOut, scaled := !*scaleOnly && !*stormOnly, (*scaleModel || *scaleOnly) && !*stormOnly
	so := bench.ScaleOptions{
		CapacityScale: *modelScale, RateAudience: 1000, RateStep: 15 * time.Second, Canaries: 5, Posters: 64,
		FunctionsDir: *functions, Log: st.Err,
		Runs: []bench.ScaleRun{
			{Audience: 10000, PerSecond: 1, For: *modelFor},
			{Audience: 1000, PerSecond: 10, For: *modelFor},
		},
	}
	if scaled {
		if err := so.Validate(); err != nil {
			return err
		}
	}
	aud, err := bench.ParseAudiences(*audiences)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	o := bench.Options{
		Audiences: aud, Reps: *reps, RepsLarge: *repsLarge, ScaleWorkers: *scaleWorkers, SustainedRate: *sustained, Latency: *latency, Jitter: *jitter, ThrottleRate: *throttle,
		Workers: *workers, ShardSize: *shard, MaxShards: *maxShards, Connections: *connections, LocalClients: *local, PerNode: *perNode,
		RateEvents: *rateEvents, RateDuration: *rateFor, RateAudience: *rateAudience,
		FunctionsDir: *functions, Naive: *naive, ArmDir: *arm, Self: self, Log: st.Err, SkipNaive: *noNaive,
		DuplicateRate: dupRate, ReorderWindow: reorder, CapacityScale: capScale.scale,
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if *runs < 1 {
		return fmt.Errorf("bench: --runs %d: at least 1", *runs)
	}
	var reports []*bench.Report
	var scales []*bench.ScaleReport
	var storms []*bench.StormReport
	for i := range *runs {
		fmt.Fprintf(st.Err, "run %d of %d\n", i+1, *runs)
		if fanOut {
			r, err := bench.Run(ctx, o)
			if err != nil {
				return fmt.Errorf("run %d: %w", i+1, err)
			}
			reports = append(reports, r)
		}
		if scaled {
			r, err := bench.RunScale(ctx, so)
			if err != nil {
				return fmt.Errorf("run %d: scale model: %w", i+1, err)
			}
			scales = append(scales, r)
		}
		if storm.Clients > 0 && (*stormOnly || !*scaleOnly) {
			r, err := bench.RunStorm(ctx, storm)
			if err != nil {
				return fmt.Errorf("run %d: reconnect storm: %w", i+1, err)
			}
			storms = append(storms, r)
		}
	}
	write := func(w io.Writer) {
		if len(reports) > 0 {
			reports[0].Markdown(w)
			bench.Spread(w, reports)
		}
		if len(scales) > 0 {
			scales[0].Markdown(w)
			bench.ScaleSpread(w, scales)
		}
		bench.StormRows(w, storms)
	}
	write(st.Out)
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		write(f)
		fmt.Fprintf(st.Err, "wrote %s\n", *out)
	}
	return nil
}

// BenchClients is the benchmark's client process.
func BenchClients(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("bench-clients", st)
	url := fs.String("url", "", "WebSocket endpoint")
	secret := fs.String("secret", DevSecret, "HS256 secret")
	from := fs.Int("from", 0, "first client index")
	to := fs.Int("to", 0, "client index after the last")
	audiences := fs.String("audiences", "", "audience sizes")
	parallel := fs.Int("parallel", 64, "dials at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	aud, err := bench.ParseAudiences(*audiences)
	if err != nil {
		return err
	}
	return bench.RunClients(ctx, bench.ClientOptions{URL: *url, Secret: *secret, From: *from, To: *to, Audiences: aud, Parallel: *parallel}, st.In, st.Out)
}

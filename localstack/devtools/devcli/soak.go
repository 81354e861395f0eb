package devcli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/wsgate/wsgate/localstack/devtools/soak"
	"github.com/wsgate/wsgate/shared/broadcast"
)

// Soak runs the soak test and prints its table; it fails when an event was
// lost, repeated or reordered, or a record outlived its TTL.
func Soak(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("soak", st)
	o := soak.Options{FunctionsDir: "bin/local", Log: st.Err}
	fs.IntVar(&o.Clients, "clients", 200, "clients")
	fs.DurationVar(&o.Duration, "for", 5*time.Minute, "how long events flow and clients drop")
	fs.IntVar(&o.Topics, "topics", 20, "topics in all")
	fs.IntVar(&o.TopicsPerClient, "topics-per-client", 3, "topics each client subscribes to")
	fs.IntVar(&o.Rate, "rate", 20, "events per second over all topics")
	fs.DurationVar(&o.DropEvery, "drop-every", 30*time.Second, "mean time between two drops of one client")
	fs.Float64Var(&o.ThrottleRate, "throttle", 0.02, "share of PostToConnection calls answered 429")
	fs.Float64Var(&o.ErrorRate, "errors", 0.01, "share of PostToConnection calls answered 500")
	fs.Float64Var(&o.SkipDisconnectRate, "skip-disconnect", 0.05, "share of $disconnects API Gateway skips")
	fs.DurationVar(&o.WarmUp, "warm-up", 20*time.Second, "the same load, not scored, before the measured phase (the local stack's cold start)")
	fs.DurationVar(&o.Settle, "settle", time.Minute, "longest wait for the clients to catch up at the end")
	fs.IntVar(&o.BroadcastConcurrency, "broadcast-concurrency", 16, "broadcast invocations at once (Lambda scales far beyond; an event waits for one before it is numbered)")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "instances each other function runs at once (0: the local stack's default, 4)")
	fs.BoolVar(&o.Presence, "presence", false, "presence on every topic and lifecycle events on, with observers and a lifecycle rule checked at the end")
	fs.StringVar(&o.FunctionsDir, "functions", o.FunctionsDir, "functions built for this machine")
	logFile := fs.String("log", "", "write every JSON log line of the stack and its functions to this file")
	events := eventDelivery(fs)
	capScale := capacityScaleFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.DuplicateRate, o.ReorderWindow = events()
	o.CapacityScale = capScale.scale
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			return fmt.Errorf("soak: --log: %w", err)
		}
		defer f.Close()
		o.StackLog = f
	}
	switch {
	case o.Clients < 1 || o.Topics < 1 || o.TopicsPerClient < 1 || o.TopicsPerClient > o.Topics:
		return errors.New("soak: need at least one client and topic, and at most --topics per client")
	case o.Rate < 1 || o.Duration <= 0 || o.DropEvery <= 0 || o.BroadcastConcurrency < 1 || o.WarmUp < 0 || o.Concurrency < 0:
		return errors.New("soak: --rate, --for, --drop-every and --broadcast-concurrency must be positive, --warm-up and --concurrency not negative")
	case time.Duration(o.Topics)*time.Second/time.Duration(o.Rate) < broadcast.OrderWindow:
		// The soak checks the gateway's ordering promise, which is for
		// events one publisher sends to one topic at least that far apart.
		return fmt.Errorf("soak: %d events/s over %d topics sends a topic an event more often than every %s; raise --topics or lower --rate", o.Rate, o.Topics, broadcast.OrderWindow)
	}
	r, err := soak.Run(ctx, o)
	if err != nil {
		return err
	}
	r.Print(st.Out)
	if !r.OK() {
		return errors.New("soak: events were lost, repeated, reordered or numbered late, or records outlived their TTL")
	}
	return nil
}

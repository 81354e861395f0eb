package bench

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"time"
)

// Markdown writes the report: one table of the fan-out figures, then the
// start-up and latency figures, and the settings they were measured with.
func (r *Report) Markdown(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "# wsgate fan-out benchmark\n\n")
	fmt.Fprintf(w, "Measured by `make bench` on %s, %s, %s (%s total). Every PostToConnection waits %s ± %s and %.1f%% are throttled (429) by the local @connections API; %d real WebSocket clients in separate processes: the first %d on the local gateway, the rest on %d more gateway processes (one process may hold at most ~20,000 open files here).\n\n",
		r.Machine, runtime.Version(), time.Now().UTC().Format("2006-01-02"), r.Took.Round(time.Second),
		o.Latency, o.Jitter, o.ThrottleRate*100, r.Connected, min(r.Connected, o.LocalClients), (max(r.Connected-o.LocalClients, 0)+o.PerNode-1)/o.PerNode)
	fmt.Fprintf(w, "wsgate: %d workers per invocation, shards of %d subscribers, up to %d broadcast invocations at once. naive: the AWS samples' fan-out (Scan the table, post to every subscriber at once through the SDK's default %d sockets). Times from PutEvents to the first and the last client receiving the event, p50 / p99 over %d events per row (after one warm-up). Ideal = audience × latency / concurrency.\n\n",
		o.Workers, o.ShardSize, o.MaxShards, naiveSockets, o.Reps)
	fmt.Fprintln(w, "| audience | system | first p50 / p99 | last p50 / p99 | deliveries/s | calls / delivery | retries / delivery | read units / event | write units / event | scans / event | invocations / event | broadcast peak RSS | concurrency | ideal | last p50 ÷ ideal |")
	fmt.Fprintln(w, "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, row := range r.Rows {
		rss := "n/a"
		if row.PeakRSS > 0 {
			rss = fmt.Sprintf("%d MB", row.PeakRSS>>20)
		}
		fmt.Fprintf(w, "| %d | %s | %s / %s | %s / %s | %.0f | %.3f | %.3f | %.1f | %.1f | %.0f | %.1f | %s | %d | %s | %.2f |\n",
			row.Audience, row.System,
			ms(median(row.First)), ms(percentile(row.First, 99)), ms(median(row.Last)), ms(percentile(row.Last, 99)),
			row.DeliveriesPerSecond, row.CallsPerDelivery, row.RetriesPerDelivery, row.ReadPerEvent, row.WritePerEvent, row.Scans,
			row.InvocationsPerEvent, rss, row.Concurrency, ms(row.Ideal), float64(median(row.Last))/float64(row.Ideal))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | value |")
	fmt.Fprintln(w, "| --- | --- |")
	for _, fn := range []string{"connect", "disconnect", "message", "broadcast"} {
		fmt.Fprintf(w, "| `%s` bootstrap (linux/arm64) | %.1f MB |\n", fn, float64(r.Sizes[fn])/(1<<20))
	}
	for _, fn := range []string{"connect", "disconnect", "message", "broadcast"} {
		cs := r.ColdStarts[fn]
		if len(cs) == 0 {
			continue
		}
		fmt.Fprintf(w, "| `%s` cold start (process start to first /next), p50 / max over %d | %s / %s |\n", fn, len(cs), ms(median(cs)), ms(slices.Max(cs)))
	}
	if len(r.RateLatency) > 0 {
		fmt.Fprintf(w, "| publish-to-receive at %d events/s, %d subscribers (%d deliveries) p50 / p99 | %s / %s |\n",
			o.RateEvents, o.RateAudience, len(r.RateLatency), ms(percentile(r.RateLatency, 50)), ms(percentile(r.RateLatency, 99)))
	}
	fmt.Fprintf(w, "| clients connected (through $connect, with auto-subscriptions) | %d in %s |\n", r.Connected, r.ConnectTime.Round(time.Second))
	fmt.Fprintln(w)
}

func ms(d time.Duration) string {
	m := float64(d) / float64(time.Millisecond)
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", m)
	default:
		return fmt.Sprintf("%.1f ms", m)
	}
}

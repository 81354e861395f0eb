package bench

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Markdown writes the report: one table of the fan-out figures, the
// targets they are held to, then the start-up and latency figures, and the
// settings they were measured with.
func (r *Report) Markdown(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "# wsgate fan-out benchmark\n\n")
	fmt.Fprintf(w, "Measured by `make bench` on %s, %s, %s (%s total). Every PostToConnection waits %s ± %s and %.1f%% are throttled (429) by the local @connections API; %d real WebSocket clients in separate processes: the first %d on the local gateway, the rest on %d more gateway processes (one process may hold at most ~20,000 open files here).\n\n",
		r.Machine, runtime.Version(), time.Now().UTC().Format("2006-01-02"), r.Took.Round(time.Second),
		o.Latency, o.Jitter, o.ThrottleRate*100, r.Connected, min(r.Connected, o.LocalClients), (max(r.Connected-o.LocalClients, 0)+o.PerNode-1)/o.PerNode)
	fmt.Fprintf(w, "wsgate: shards of %d subscribers, up to %d broadcast invocations at once, each posting with the workers shown. naive: the AWS samples' fan-out (Scan the table, post to every subscriber at once through the SDK's default %d sockets). Times from PutEvents to the first and the last client receiving the event, p50 / p99 over the events shown (after one warm-up event, up to 10,000 subscribers). Ideal = audience × latency / concurrency.\n\n",
		o.ShardSize, o.MaxShards, naiveSockets)
	fmt.Fprintln(w, "| audience | system | events | first p50 / p99 | last p50 / p99 | deliveries/s | calls / delivery | retries / delivery | read units / event | write units / event | scans / event | invocations / event | broadcast peak RSS | concurrency | ideal | last p50 ÷ ideal |")
	fmt.Fprintln(w, "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, row := range r.Rows {
		if row.Error != "" {
			fmt.Fprintf(w, "| %d | %s | failed: %s |%s\n", row.Audience, row.label(), oneLine(row.Error), strings.Repeat(" |", 13))
			continue
		}
		rss := "n/a"
		if row.PeakRSS > 0 {
			rss = fmt.Sprintf("%d MB", row.PeakRSS>>20)
		}
		fmt.Fprintf(w, "| %d | %s | %d | %s / %s | %s / %s | %.0f | %.3f | %.3f | %.1f | %.1f | %.0f | %.1f | %s | %d | %s | %.2f |\n",
			row.Audience, row.label(), row.Events,
			ms(median(row.First)), ms(percentile(row.First, 99)), ms(median(row.Last)), ms(percentile(row.Last, 99)),
			row.DeliveriesPerSecond, row.CallsPerDelivery, row.RetriesPerDelivery, row.ReadPerEvent, row.WritePerEvent, row.Scans,
			row.InvocationsPerEvent, rss, row.Concurrency, ms(row.Ideal), float64(median(row.Last))/float64(row.Ideal))
	}
	fmt.Fprintln(w)
	r.targets(w)
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
	for _, run := range r.Rates {
		fmt.Fprintf(w, "| publish-to-receive at %d events/s for %s, %d subscribers (%d events, %d deliveries, the last %s after the first publish) p50 / p99 | %s / %s |\n",
			run.PerSecond, o.RateDuration, o.RateAudience, run.Events, len(run.Latency), ms(run.Took),
			ms(percentile(run.Latency, 50)), ms(percentile(run.Latency, 99)))
	}
	fmt.Fprintf(w, "| clients connected (through $connect, with auto-subscriptions) | %d in %s |\n", r.Connected, r.ConnectTime.Round(time.Second))
	fmt.Fprintf(w, "| most deliveries per second this machine emulated (any row) | %.0f |\n", r.ceiling())
	fmt.Fprintln(w)
}

// oneLine keeps an error message fit for a table cell.
func oneLine(s string) string {
	s = strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", "/")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func (row Row) label() string {
	if row.System == "wsgate" {
		return fmt.Sprintf("wsgate, %d workers", row.Workers)
	}
	return row.System
}

// ceiling is the fastest delivery rate of any row.
func (r *Report) ceiling() float64 {
	best := 0.0
	for _, row := range r.Rows {
		best = max(best, row.DeliveriesPerSecond)
	}
	return best
}

// row finds the measured row of a system, worker count and audience.
func (r *Report) row(system string, workers, audience int) (Row, bool) {
	for _, row := range r.Rows {
		if row.System == system && row.Workers == workers && row.Audience == audience {
			return row, true
		}
	}
	return Row{}, false
}

// targets writes the targets beside what this run measured.
func (r *Report) targets(w io.Writer) {
	fmt.Fprintln(w, "| target | measured | met |")
	fmt.Fprintln(w, "| --- | --- | :---: |")
	check := func(target, measured string, ok bool) {
		mark := "no"
		if ok {
			mark = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s |\n", target, measured, mark)
	}
	for _, workers := range slices.Compact([]int{r.Options.Workers, r.Options.ScaleWorkers}) {
		if workers == 0 {
			continue
		}
		ten, ok := r.row("wsgate", workers, 10000)
		if !ok {
			continue
		}
		ratio := float64(median(ten.Last)) / float64(ten.Ideal)
		check(fmt.Sprintf("10,000 subscribers, %d workers: last delivery ≤ 1.5 × ideal", workers), fmt.Sprintf("%s ÷ %s = %.2f", ms(median(ten.Last)), ms(ten.Ideal), ratio), ratio <= 1.5)
		if fifty, ok := r.row("wsgate", workers, 50000); ok {
			f := float64(median(fifty.Last)) / float64(median(ten.Last))
			check(fmt.Sprintf("50,000 subscribers, %d workers: last delivery ≤ 2 × the 10,000 time", workers), fmt.Sprintf("%s ÷ %s = %.2f", ms(median(fifty.Last)), ms(median(ten.Last)), f), f <= 2)
		}
	}
	if ours, ok := r.row("wsgate", r.Options.Workers, 100); ok {
		if naive, ok := r.row("naive", 0, 100); ok && ours.ReadPerEvent > 0 {
			f := naive.ReadPerEvent / ours.ReadPerEvent
			check(fmt.Sprintf("%s connections, 100 subscribed: ≥ 50 × fewer read units than the baseline", thousands(min(r.Connected, r.Options.Connections))), fmt.Sprintf("%.1f vs %.1f: %.0f ×", naive.ReadPerEvent, ours.ReadPerEvent, f), f >= 50)
		}
	}
	scans := 0.0
	for _, row := range r.Rows {
		if row.System == "wsgate" {
			scans += row.Scans
		}
	}
	check("zero Scans per event", fmt.Sprintf("%.0f", scans), scans == 0)
	var worst time.Duration
	for _, cs := range r.ColdStarts {
		if len(cs) > 0 {
			worst = max(worst, slices.Max(cs))
		}
	}
	check("cold start to first /next < 50 ms", "max "+ms(worst), worst > 0 && worst < 50*time.Millisecond)
	var biggest int64
	for _, size := range r.Sizes {
		biggest = max(biggest, size)
	}
	check("each bootstrap < 15 MB", fmt.Sprintf("largest %.1f MB", float64(biggest)/(1<<20)), biggest > 0 && biggest < 15<<20)
	if ten, ok := r.row("wsgate", r.Options.Workers, 10000); ok {
		check("broadcast RSS < 128 MB at 10,000 subscribers", fmt.Sprintf("%d MB", ten.PeakRSS>>20), ten.PeakRSS > 0 && ten.PeakRSS < 128<<20)
	}
	fmt.Fprintln(w)
}

// thousands writes 50000 as 50,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
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

// Spread writes how the runs' figures varied: for each row, its last
// delivery p50 in every run, and for wsgate the factor by which it beat the
// naive baseline measured in the same run (never across runs or machines).
func Spread(w io.Writer, reports []*Report) {
	if len(reports) < 2 {
		return
	}
	fmt.Fprintf(w, "## Spread over %d runs\n\n", len(reports))
	fmt.Fprintln(w, "Each run started its own stack and clients. Last delivery p50 per run, min–max; for wsgate rows, the naive baseline's last p50 divided by wsgate's in the same run, min–max.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| audience | system | last p50 per run | min – max | × faster than naive, per run | min – max |")
	fmt.Fprintln(w, "| ---: | --- | --- | --- | --- | --- |")
	for _, row := range reports[0].Rows {
		var lasts, factors []string
		var lo, hi time.Duration
		flo, fhi := 0.0, 0.0
		for i, r := range reports {
			cur, ok := r.row(row.System, row.Workers, row.Audience)
			if !ok || cur.Error != "" || len(cur.Last) == 0 {
				lasts = append(lasts, "failed")
				continue
			}
			last := median(cur.Last)
			lasts = append(lasts, ms(last))
			if i == 0 || lo == 0 || last < lo {
				lo = last
			}
			hi = max(hi, last)
			if row.System != "wsgate" {
				continue
			}
			base, ok := r.row("naive", 0, row.Audience)
			if !ok || base.Error != "" || len(base.Last) == 0 {
				factors = append(factors, "baseline failed")
				continue
			}
			f := float64(median(base.Last)) / float64(last)
			factors = append(factors, fmt.Sprintf("%.1f", f))
			if flo == 0 || f < flo {
				flo = f
			}
			fhi = max(fhi, f)
		}
		rng, frng := "n/a", ""
		if hi > 0 {
			rng = ms(lo) + " – " + ms(hi)
		}
		if fhi > 0 {
			frng = fmt.Sprintf("%.1f – %.1f", flo, fhi)
		}
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s |\n", row.Audience, row.label(), strings.Join(lasts, ", "), rng, strings.Join(factors, ", "), frng)
	}
	fmt.Fprintln(w)
}

package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Markdown writes the scale model's table and its targets.
func (r *ScaleReport) Markdown(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "## Scale model: DynamoDB's per-key ceilings at %g of AWS's\n\n", o.CapacityScale)
	fmt.Fprintf(w, "Every DynamoDB key whose load grows with the audience (subscriber buckets `P#` and their counts `B#`, presence watchers `Q#` and rosters `R#`) may take %.0f read and %.0f write units a second (AWS: 3,000 and 1,000), so an audience here puts the pressure on each such key that %s times as many subscribers put on AWS; a Query of one is charged for the audience slice it stands for. Every other key (an event's `E#`, a topic's `T#` and `H#`, the `W#` index, connection and tally keys) keeps AWS's ceilings: the model stands for a larger audience, not more events. Buckets split at %s entries (`WSGATE_BUCKET_SPLIT_AT`, 2,000 on AWS, scaled). Subscribers are sink connections (open to @connections, no socket) written by the store's own code, with the ceilings suspended, in %s; %d real WebSocket clients per run must receive every event, once, in order. The sink took %.0f posts a second from the local @connections API (calibrated in the same run): the floor of an event's last delivery is the audience at that rate.\n\n",
		3000*o.CapacityScale, 1000*o.CapacityScale, thousands(int(1/o.CapacityScale)), r.BucketSplitAt, r.Setup.Round(time.Second), o.Canaries, r.SinkPerSecond)
	fmt.Fprintln(w, "| subscribers (modelled on AWS) | events/s × s | the target rate fits every key's ceiling (nearest key, share) | delivered / owed | repeats | canaries | last p50 / max | floor | last p50 ÷ floor | deliveries/s | hottest key | its read / write units per event | its peak units in a second (read / write) | throttled | broadcast invocations / event |")
	fmt.Fprintln(w, "| ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
	for _, row := range r.Rows {
		row.markdown(w, o.CapacityScale)
	}
	fmt.Fprintln(w)
	if o.RateAudience > 0 {
		fmt.Fprintf(w, "Largest sustained event rate on one topic at %d subscribers (modelled %s), each rate held %s: **%d events/s** with no throttle, every delivery made, and every key's units per event within its ceiling at that rate (rates tried: ",
			o.RateAudience, thousands(ScaleRun{Audience: o.RateAudience}.Modelled(o.CapacityScale)), o.RateStep, r.Sustained)
		var tried []string
		for _, s := range r.Steps {
			tried = append(tried, fmt.Sprintf("%d/s: %d/%d delivered, %d throttled, hottest key %.1f read / %.1f write units per event, at this rate `%s` at %.0f%% of its ceiling", s.Run.PerSecond, s.Delivered, s.Expected, s.Throttled, s.HotRead, s.HotWrite, s.FitsKey, 100*s.FitsShare))
		}
		fmt.Fprintf(w, "%s).\n\n", strings.Join(tried, "; "))
	}
}

func (row ScaleRow) markdown(w io.Writer, scale float64) {
	run := row.Run
	if row.Error != "" {
		fmt.Fprintf(w, "| %d (%s) | %d × %s | failed: %s |%s\n", run.Audience, thousands(run.Modelled(scale)), run.PerSecond, run.For, oneLine(row.Error), strings.Repeat(" |", 12))
		return
	}
	canaries := "all"
	if !row.CanariesOK {
		canaries = "**missed**: " + oneLine(row.CanaryMiss)
	}
	var last time.Duration
	if len(row.Last) > 0 {
		last = slices.Max(row.Last)
	}
	ratio := "n/a"
	if row.Floor > 0 && len(row.Last) > 0 {
		ratio = fmt.Sprintf("%.2f", float64(median(row.Last))/float64(row.Floor))
	}
	pace := fmt.Sprintf("%d/s × %s", run.PerSecond, run.For)
	if row.MachineBound {
		pace = fmt.Sprintf("%d/s target; %d events, one per %s (an event alone took %s here, the median of %d)", run.PerSecond, row.Events, ms(row.Interval), ms(row.Alone), aloneSamples)
	}
	fitsAt := fmt.Sprintf("yes: `%s` at %.0f%%", row.FitsKey, 100*row.FitsShare)
	if !row.Fits {
		fitsAt = fmt.Sprintf("**no**: `%s` at %.0f%%", row.FitsKey, 100*row.FitsShare)
	}
	fmt.Fprintf(w, "| %d (%s) | %s | %s | %d / %d | %d | %s | %s / %s | %s | %s | %.0f | `%s` | %.1f / %.1f | %.0f / %.0f | %d | %.1f |\n",
		run.Audience, thousands(run.Modelled(scale)), pace, fitsAt, row.Delivered, row.Expected, row.Duplicates, canaries,
		ms(median(row.Last)), ms(last), ms(row.Floor), ratio, row.DeliveriesPerSecond, row.HotKey, row.HotRead, row.HotWrite,
		row.HotPeakRead, row.HotPeakWrite, row.Throttled, row.InvocationsPerEvent)
}

// Met reports whether a run meets the targets: every delivery
// made once, the canaries whole, nothing throttled, and the last delivery
// within 1.5 times the floor.
func (row ScaleRow) Met() bool {
	return row.Error == "" && row.Delivered == row.Expected && row.Duplicates == 0 && row.CanariesOK &&
		row.Throttled == 0 && len(row.Last) > 0 && float64(median(row.Last)) <= 1.5*float64(row.Floor) && row.Fits
}

// ScaleSpread writes each scale figure's spread over several runs.
func ScaleSpread(w io.Writer, reports []*ScaleReport) {
	if len(reports) < 2 {
		return
	}
	fmt.Fprintf(w, "Spread over %d scale-model runs, each on a fresh stack (min / median / max):\n\n", len(reports))
	fmt.Fprintln(w, "| run | last p50 ÷ floor | hottest key read units / event | write units / event | throttled | targets met |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | --- |")
	for i, run := range reports[0].Options.Runs {
		var ratio, rd, wr, th []float64
		met := 0
		for _, r := range reports {
			if i >= len(r.Rows) {
				continue
			}
			row := r.Rows[i]
			if row.Floor > 0 && len(row.Last) > 0 {
				ratio = append(ratio, float64(median(row.Last))/float64(row.Floor))
			}
			rd, wr, th = append(rd, row.HotRead), append(wr, row.HotWrite), append(th, float64(row.Throttled))
			if row.Met() {
				met++
			}
		}
		fmt.Fprintf(w, "| %d subscribers at %d/s | %s | %s | %s | %s | %d of %d |\n", run.Audience, run.PerSecond,
			spread(ratio, "%.2f"), spread(rd, "%.1f"), spread(wr, "%.1f"), spread(th, "%.0f"), met, len(reports))
	}
	var sus []float64
	for _, r := range reports {
		sus = append(sus, float64(r.Sustained))
	}
	fmt.Fprintf(w, "| largest sustained rate (events/s) | %s | | | | |\n\n", spread(sus, "%.0f"))
}

// spread is "min / median / max" of xs.
func spread(xs []float64, f string) string {
	if len(xs) == 0 {
		return "n/a"
	}
	s := slices.Sorted(slices.Values(xs))
	return fmt.Sprintf(f+" / "+f+" / "+f, s[0], s[len(s)/2], s[len(s)-1])
}

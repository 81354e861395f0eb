package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Markdown writes the storm's table.
func (r *StormReport) Markdown(w io.Writer) {
	o := r.Options
	fmt.Fprintf(w, "## Reconnect storm: %d clients in auth-message mode at %g connections a second\n\n", o.Clients, o.Rate)
	if o.Scale() > 0 {
		fmt.Fprintf(w, "API Gateway admits %d new WebSocket connections a second per account, however many clients wait. Here they arrive at %g a second with DynamoDB's per-key ceilings at %g of AWS's (%.0f read and %.0f write units a second per key): every key meets the share of its ceiling it meets at %s connections a second on AWS, so %d clients stand for %s at %s a second (as long a storm, and a shared topic's audience as large against its key). ",
			APIGatewayConnectRate, o.Rate, o.Scale(), r.ReadCeiling, r.WriteCeiling, thousands(int(o.ModelledRate()+0.5)), o.Clients, thousands(o.Modelled()), thousands(int(o.ModelledRate()+0.5)))
		if o.ModelledRate() > APIGatewayConnectRate*1.001 {
			fmt.Fprintf(w, "That is %.3g times the rate API Gateway admits: a harsher storm than AWS can bring, in less time. ", o.ModelledRate()/APIGatewayConnectRate)
		}
	} else {
		fmt.Fprintf(w, "DynamoDB's per-key ceilings are off (units counted only). ")
	}
	fmt.Fprintf(w, "Each client connects without a token, sends `auth`, subscribes to `%s` and a topic of its own; then every connection is cut at once and each client comes back behind the Go client's backoff, admitted at the same rate; then one event on `%s` must reach every client once. Clients ran in %s, %s.\n\n",
		StormTopic, StormTopic, processes(o.Processes), sources(o.Sources))
	fmt.Fprintln(w, "| clients (modelled) | rate (modelled) | all connected (achieved rate) | all back after the cut | errors surfaced to clients (connect; reconnect) | of which conflicts / throttled (functions' errors) | DynamoDB throttles (connect / reconnect) | hottest key (connect; reconnect): peak units in a second, read / write, vs ceiling (units per client) | Lambda throttles | event received by | targets met |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | --- |")
	received := fmt.Sprintf("%d of %d", r.Received, o.Clients)
	if r.Repeats > 0 {
		received += fmt.Sprintf(", %d repeats", r.Repeats)
	}
	if r.Gone > 0 {
		received += fmt.Sprintf("; %d posts to cut connections whose `$disconnect` never ran answered 410, their entries removed", r.Gone)
	}
	met := "yes"
	if !r.Met() {
		met = "**no**"
	}
	fmt.Fprintf(w, "| %d (%s) | %g/s (%s/s) | %s | %s | %s | %d / %d | %d / %d | %s; %s | %s | %s | %s |\n\n",
		o.Clients, thousands(o.Modelled()), o.Rate, thousands(int(o.ModelledRate()+0.5)), phaseTook(r.Connect, o.Clients), phaseTook(r.Reconnect, o.Clients),
		r.errorsByPhase(), r.Causes["conflict"], r.Causes["throttled"], r.Connect.Throttled, r.Reconnect.Throttled,
		r.hot(r.Connect), r.hot(r.Reconnect), r.lambdaThrottles(), received, met)
	if r.Error != "" {
		fmt.Fprintf(w, "The storm stopped: %s.\n\n", oneLine(r.Error))
	}
}

// lambdaThrottles is the invocations throttled, and by which function.
func (r *StormReport) lambdaThrottles() string {
	if r.LambdaThrottles == 0 {
		return "0"
	}
	var by []string
	for _, fn := range slices.Sorted(maps.Keys(r.LambdaThrottlesBy)) {
		by = append(by, fmt.Sprintf("%s %d", fn, r.LambdaThrottlesBy[fn]))
	}
	return fmt.Sprintf("%d (%s)", r.LambdaThrottles, strings.Join(by, ", "))
}

// errorsByPhase is the errors of the connect and reconnect phases, and
// any after them (while the event was delivered).
func (r *StormReport) errorsByPhase() string {
	out := errorKinds(r.Connect.Errors) + "; " + errorKinds(r.Reconnect.Errors)
	after := map[string]int{}
	for k, v := range r.Errors {
		if n := v - r.Connect.Errors[k] - r.Reconnect.Errors[k]; n > 0 {
			after[k] = n
		}
	}
	if len(after) > 0 {
		out += "; after: " + errorKinds(after)
	}
	return out
}

func (r *StormReport) hot(p StormPhase) string {
	if p.HotKey == "" {
		return "none"
	}
	return fmt.Sprintf("`%s` %.0f / %.0f vs %.0f / %.0f (%.1f / %.1f per client)", p.HotKey, p.HotPeakRead, p.HotPeakWrt, r.ReadCeiling, r.WriteCeiling,
		p.HotRead/float64(r.Options.Clients), p.HotWrite/float64(r.Options.Clients))
}

// phaseTook is how long a phase took, and the connections a second
// that made.
func phaseTook(p StormPhase, clients int) string {
	if p.Took == 0 {
		return "not run"
	}
	if !p.Complete {
		return "**not in " + p.Took.Round(time.Second).String() + "**"
	}
	return fmt.Sprintf("%s (%.1f/s)", p.Took.Round(100*time.Millisecond), float64(clients)/p.Took.Seconds())
}

// errorKinds is "0", or each kind with its count.
func errorKinds(errs map[string]int) string {
	if len(errs) == 0 {
		return "0"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(errs)) {
		out = append(out, fmt.Sprintf("%s: %d", k, errs[k]))
	}
	return strings.Join(out, ", ")
}

func processes(n int) string {
	if n == 0 {
		return "the bench's own process"
	}
	return fmt.Sprintf("%d processes", n)
}

func sources(on bool) string {
	if on {
		return "each from its own loopback address (127.10.0.1 up)"
	}
	return "all from 127.0.0.1"
}

// StormRows writes the first storm's table and, over several runs, each
// run's main figures.
func StormRows(w io.Writer, reports []*StormReport) {
	if len(reports) == 0 {
		return
	}
	reports[0].Markdown(w)
	if len(reports) < 2 {
		return
	}
	fmt.Fprintf(w, "Each of %d reconnect storms, each on a fresh stack:\n\n", len(reports))
	fmt.Fprintln(w, "| run | all connected | all back | errors surfaced | DynamoDB throttles | Lambda throttles | event received by | targets met |")
	fmt.Fprintln(w, "| ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |")
	for i, r := range reports {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %d | %d | %d of %d | %t |\n", i+1, phaseTook(r.Connect, r.Options.Clients), phaseTook(r.Reconnect, r.Options.Clients),
			errorKinds(r.Errors), r.Connect.Throttled+r.Reconnect.Throttled, r.LambdaThrottles, r.Received, r.Options.Clients, r.Met())
	}
	fmt.Fprintln(w)
}

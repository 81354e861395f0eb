// Package devcli implements the wsgate developer CLI: dev (run the local
// stack), token (mint tokens and tickets), publish (PutEvents, locally or to
// AWS) and listen (a WebSocket client printing JSON lines).
package devcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/stack"
)

// Streams are the CLI's standard streams.
type Streams struct {
	In       io.Reader
	Out, Err io.Writer
}

// Run executes the command line args (without the program name).
func Run(ctx context.Context, args []string, st Streams) error {
	if len(args) == 0 {
		usage(st.Err)
		return errors.New("no command")
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return Dev(ctx, rest, st)
	case "token":
		return Token(rest, st)
	case "publish":
		return Publish(ctx, rest, st)
	case "listen":
		return Listen(ctx, rest, st)
	case "revoke":
		return Revoke(ctx, rest, st, false)
	case "unrevoke":
		return Revoke(ctx, rest, st, true)
	case "node":
		return Node(ctx, rest, st)
	case "bench":
		return Bench(ctx, rest, st)
	case "bench-clients":
		return BenchClients(ctx, rest, st)
	case "storm-clients":
		return StormClients(ctx, rest, st)
	case "soak":
		return Soak(ctx, rest, st)
	case "help", "-h", "--help":
		usage(st.Out)
		return nil
	}
	usage(st.Err)
	return fmt.Errorf("unknown command %q", cmd)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `wsgate: developer tools for the wsgate real-time gateway

  wsgate dev       run the whole gateway on this machine (WebSocket :4510, AWS APIs :4566)
  wsgate token     mint a token or single-use ticket (HS256, WSGATE_JWT_SECRET)
  wsgate publish   send an event with EventBridge PutEvents (local with --endpoint, else AWS)
  wsgate listen    connect, subscribe, print every message as a JSON line; stdin lines are sent
                   (--bus: print every event on the local stack's bus instead)
  wsgate revoke    close a principal's (or a token's) connections and refuse it until a time
  wsgate unrevoke  lift such a ban now
  wsgate node      one more WebSocket front end of a running dev stack, in its own process
  wsgate bench     the fan-out benchmark (make bench)
  wsgate soak      clients dropping and resuming at random while events flow (make soak)

Run "wsgate <command> -h" for a command's flags.
`)
}

// list is a repeatable, comma-splitting string flag.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }

func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// repeated is a flag given once per value, taken whole: a KEY=VALUE
// whose value lists patterns with commas (WSGATE_PRESENCE_TOPICS=a.*,b.*)
// stays one value.
type repeated []string

func (r *repeated) String() string { return strings.Join(*r, " ") }

func (r *repeated) Set(v string) error {
	*r = append(*r, v)
	return nil
}

func newFlags(name string, st Streams) *flag.FlagSet {
	fs := flag.NewFlagSet("wsgate "+name, flag.ContinueOnError)
	fs.SetOutput(st.Err)
	return fs
}

// eventDelivery adds the flags for how loosely the local EventBridge
// delivers, and returns them as stack.Options reads them once parsed: 0
// on the command line switches a behaviour off (a zero option means the
// default).
func eventDelivery(fs *flag.FlagSet) func() (rate float64, window time.Duration) {
	rate := fs.Float64("event-duplicates", stack.DefaultDuplicateRate, "share of events EventBridge delivers twice, as AWS may (0: none)")
	window := fs.Duration("event-reorder", stack.DefaultReorderWindow, fmt.Sprintf("hold %.0f%%%% of EventBridge deliveries a random time up to this, so events overtake each other as on AWS (0: none)", 100*stack.DefaultReorderRate))
	return func() (float64, time.Duration) {
		r, w := *rate, *window
		if r <= 0 {
			r = -1
		}
		if w <= 0 {
			w = -1
		}
		return r, w
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

package devcli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/wsgate/wsgate/localstack/devtools/bench"
)

// stormFlags adds the reconnect storm's flags to wsgate bench; the
// function returned reads them, once parsed, as the storm's options (the
// zero Clients: no storm).
func stormFlags(fs *flag.FlagSet) func(functions string, log io.Writer) (bench.StormOptions, error) {
	clients := fs.Int("storm-clients", 10000, "reconnect storm: real WebSocket clients in auth-message mode, connected, all cut at once and back, then one event to all (0: no storm)")
	rate := fs.Float64("storm-rate", 5, fmt.Sprintf("reconnect storm: new connections a second; DynamoDB's ceilings are set to rate/%d of AWS's, so the storm stands for API Gateway's %d/s and clients*%d/rate clients", bench.APIGatewayConnectRate, bench.APIGatewayConnectRate, bench.APIGatewayConnectRate))
	procs := fs.Int("storm-procs", 4, "reconnect storm: client processes (0: in the bench's own)")
	scale := fs.Float64("storm-scale", 0, fmt.Sprintf("reconnect storm: DynamoDB's ceilings as a share of AWS's (0: rate/%d); under rate/%d, each key meets more than its share at API Gateway's %d/s, a harsher storm than AWS admits, in less time", bench.APIGatewayConnectRate, bench.APIGatewayConnectRate, bench.APIGatewayConnectRate))
	drain := fs.Int("storm-disconnect-concurrency", 0, fmt.Sprintf("reconnect storm: the disconnect queue mapping's MaximumConcurrency, 2-1000 (the CDK stack's disconnectMaxConcurrency; 0: %d, so the drain leaves this machine's cores to the clients coming back)", bench.DefaultStormDisconnectConcurrency))
	sources := fs.Bool("storm-sources", true, "reconnect storm: each client from its own loopback address (127.10.0.1 up), as clients on AWS come from many; false: all from 127.0.0.1, where the per-address caps refuse them")
	return func(functions string, log io.Writer) (bench.StormOptions, error) {
		if *clients == 0 {
			return bench.StormOptions{}, nil
		}
		self, err := os.Executable()
		if err != nil {
			return bench.StormOptions{}, err
		}
		o := bench.StormOptions{Clients: *clients, Rate: *rate, CapacityScale: *scale, Processes: *procs, Self: self, Sources: *sources, DisconnectConcurrency: *drain, FunctionsDir: functions, Log: log}
		return o, o.Validate()
	}
}

// StormClients is the reconnect storm's client process (hidden): it runs
// its clients until interrupted, writing a status line every 200 ms.
func StormClients(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("storm-clients", st)
	url := fs.String("url", "", "WebSocket endpoint")
	secret := fs.String("secret", DevSecret, "HS256 secret")
	from := fs.Int("from", 0, "first client index")
	to := fs.Int("to", 0, "client index after the last")
	rate := fs.Float64("rate", 1, "new connections a second from this process")
	sources := fs.Bool("sources", false, "each client from its own loopback address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return bench.RunStormClients(ctx, bench.StormClientOptions{URL: *url, Secret: *secret, From: *from, To: *to, Rate: *rate, Sources: *sources}, st.Out)
}

// Command disconnect is the WebSocket API's $disconnect route.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/awsdeps"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/gateway"
)

func main() {
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
	d, err := awsdeps.Load(context.Background(), cfg, false)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start-up:", err)
		os.Exit(1)
	}
	g := gateway.New(cfg, gateway.Deps{Store: d.Store, Verifier: d.Verifier, Connections: d.Connections, Tasks: d.Tasks, Log: d.Log, Metrics: os.Stdout})
	lambda.Start(g.Disconnect)
}

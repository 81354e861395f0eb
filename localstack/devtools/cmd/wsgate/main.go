// Command wsgate is the developer CLI: dev, token, publish, listen.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wsgate/wsgate/localstack/devtools/devcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := devcli.Run(ctx, os.Args[1:], devcli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}); err != nil {
		fmt.Fprintln(os.Stderr, "wsgate:", err)
		stop()
		os.Exit(1)
	}
}

// Command broadcast fans EventBridge events out to subscribers and drains
// the task queue.
package main

import (
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/awsdeps"
	"github.com/wsgate/wsgate/shared/broadcast"
	"github.com/wsgate/wsgate/shared/fanout"
)

func main() {
	cfg, d := awsdeps.MustLoad(awsdeps.Needs{})
	pacer := fanout.NewPacer(float64(cfg.PostRate))
	sender := fanout.NewSender(d.Poster, fanout.Options{
		Workers: cfg.FanoutWorkers, Pacer: pacer, Settling: broadcast.Settling(d.Store, nil),
	})
	h := broadcast.New(cfg, broadcast.Deps{Store: d.Store, Sender: sender, Connections: d.Connections, Tasks: d.Tasks, Log: d.Log, Metrics: os.Stdout})
	lambda.Start(h.Handle)
}

// Command broadcast fans EventBridge events out to subscribers and drains
// the task queue.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/awsdeps"
)

func main() {
	// Bus: the table's stream becomes connection lifecycle events.
	cfg, d := awsdeps.MustLoad(awsdeps.Needs{Bus: true})
	lambda.Start(d.Broadcast(cfg).Handle)
}

// Command disconnect drains the disconnect queue the WebSocket API's
// $disconnect route sends each closed connection to.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/awsdeps"
)

func main() {
	cfg, d := awsdeps.MustLoad(awsdeps.Needs{})
	lambda.Start(d.Gateway(cfg).HandleDisconnect)
}

// Command message is the WebSocket API's $default route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/awsdeps"
)

func main() {
	// Publishing: the publish command numbers and delivers client events
	// here, as the broadcast function does for a backend's.
	cfg, d := awsdeps.MustLoad(awsdeps.Needs{Verifier: true, Publishing: true})
	lambda.Start(d.Gateway(cfg).Message)
}

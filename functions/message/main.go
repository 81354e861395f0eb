// Command message is the WebSocket API's $default route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/awsdeps"
)

func main() {
	cfg, d := awsdeps.MustLoad(awsdeps.Needs{Verifier: true})
	lambda.Start(d.Gateway(cfg).Message)
}

// Command disconnect is the WebSocket API's $disconnect route.
package main

import (
	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/awsdeps"
)

func main() {
	cfg, d := awsdeps.MustLoad(awsdeps.Needs{})
	lambda.Start(d.Gateway(cfg).Disconnect)
}

package publish_test

import (
	"context"
	"encoding/json"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/wsgate/wsgate/shared/publish"
)

// publishHello is the README's Go publisher, word for word between the
// braces (the docs test checks it): a backend with the ordinary AWS
// configuration (AWS_ENDPOINT_URL=http://127.0.0.1:4566 and the dev
// credentials for the local stack) sends one event to the bus.
func publishHello(ctx context.Context) error {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	p := publish.Publisher{Client: eventbridge.NewFromConfig(cfg), Bus: "wsgate-local"}
	_, err = p.Publish(ctx, publish.Detail{
		Topic:   "demo.hello",
		Payload: json.RawMessage(`{"hello":"world"}`),
	})
	return err
}

// Example_publisher compiles the README's publisher; it has no Output
// comment, so go test builds it without calling AWS.
func Example_publisher() {
	_ = publishHello
}

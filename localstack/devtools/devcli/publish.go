package devcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/publish"
)

// Publish sends one event through EventBridge PutEvents. With --endpoint
// (or AWS_ENDPOINT_URL) it goes to the local stack; otherwise to AWS with
// the normal AWS configuration.
func Publish(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("publish", st)
	stage := envOr(config.EnvStage, "local")
	bus := fs.String("bus", envOr("WSGATE_BUS", publish.BusName(stage)), "event bus name or ARN")
	endpoint := fs.String("endpoint", "", "AWS endpoint, e.g. http://127.0.0.1:4566 for the local stack (default: $AWS_ENDPOINT_URL, else AWS)")
	region := fs.String("region", "", "AWS region (default from the AWS configuration, us-east-1 locally)")
	source := fs.String("source", publish.DefaultSource, "EventBridge source")
	detailType := fs.String("detail-type", publish.DefaultDetailType, "EventBridge detail-type")
	detail := fs.String("detail", "", "the whole detail as JSON (instead of the flags below)")
	topic := fs.String("topic", "", "topic, e.g. demo.hello")
	payload := fs.String("payload", "", "payload JSON, delivered as given")
	payloadB64 := fs.String("payload-base64", "", "payload bytes, base64 (protobuf)")
	attributes := fs.String("attributes", "", `attributes JSON, e.g. {"severity":"critical"}`)
	project := fs.String("project", "", `projection JSON, e.g. {"metrics":"telemetry"}`)
	audience := fs.String("audience", "", `audience JSON, e.g. {"orgs":["acme"]}`)
	state := fs.String("state", "", "state JSON list: replaces the topic's stored state")
	history := fs.Bool("history", false, "keep the event for resume")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var d publish.Detail
	if *detail != "" {
		// The broadcast function's own parser: an unknown field, a
		// wildcard topic or a missing one is refused here, with its reason,
		// rather than dropped by the gateway after PutEvents accepted it.
		if _, err := publish.Parse("cli-check", time.Now(), []byte(*detail), false); err != nil {
			return fmt.Errorf("--detail refused: %w", err)
		}
		if err := json.Unmarshal([]byte(*detail), &d); err != nil {
			return fmt.Errorf("--detail: %w", err)
		}
	} else {
		if *topic == "" {
			return errors.New("--topic (or --detail) is required")
		}
		d = publish.Detail{Topic: *topic, PayloadBase64: *payloadB64}
		for name, v := range map[string]struct {
			raw string
			dst any
		}{
			"payload": {*payload, &d.Payload}, "attributes": {*attributes, &d.Attributes},
			"project": {*project, &d.Project}, "state": {*state, &d.State},
		} {
			if v.raw == "" {
				continue
			}
			if err := json.Unmarshal([]byte(v.raw), v.dst); err != nil {
				return fmt.Errorf("--%s is not valid JSON: %w", name, err)
			}
		}
		if *audience != "" {
			d.Audience = &auth.Audience{}
			if err := json.Unmarshal([]byte(*audience), d.Audience); err != nil {
				return fmt.Errorf("--audience: %w", err)
			}
		}
		if *history {
			d.History = aws.Bool(true)
		}
	}
	client, err := eventBridgeClient(ctx, *endpoint, *region)
	if err != nil {
		return err
	}
	ids, err := publish.Publisher{Client: client, Bus: *bus, Source: *source, DetailType: *detailType}.Publish(ctx, d)
	if errors.Is(err, publish.ErrInvalid) || errors.Is(err, publish.ErrTooLarge) {
		return fmt.Errorf("event refused: %w", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(st.Out, "published %s to %s (event id %s)\n", d.Topic, *bus, ids[0])
	return nil
}

func eventBridgeClient(ctx context.Context, endpoint, region string) (*eventbridge.Client, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	if endpoint != "" {
		// The local stack checks signatures against its dev credentials
		// (as LocalStack does), so no real credentials are needed.
		opts = append(opts, awsconfig.WithBaseEndpoint(endpoint),
			awsconfig.WithCredentialsProvider(stack.DevCredentials()))
		if region == "" {
			opts = append(opts, awsconfig.WithRegion("us-east-1"))
		}
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	return eventbridge.NewFromConfig(cfg), nil
}

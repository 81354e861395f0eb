// Package awsdeps builds the functions' production dependencies from the
// configuration and the standard AWS SDK settings (AWS_ENDPOINT_URL*,
// region, credentials), so the same binaries run on AWS, on LocalStack and
// on the local gateway.
package awsdeps

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/broadcast"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/gateway"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// Deps are what the functions need.
type Deps struct {
	Log         *slog.Logger
	Store       *store.Store
	Verifier    *auth.Verifier
	Connections *apigatewaymanagementapi.Client
	// Poster is the fan-out's lean @connections client (see fanout.LeanPoster).
	Poster *fanout.LeanPoster
	// Tasks is nil when WSGATE_QUEUE_URL is not set; retrier is the same
	// queue, for broadcast's failed tasks.
	Tasks   queue.Tasks
	retrier broadcast.TaskRetrier
	// Bus is EventBridge, for the message function's copies of client
	// events; nil unless Needs.Publishing and WSGATE_EVENT_BUS is set.
	Bus publish.PutEventsAPI
	// publishing: Load was asked for Needs.Publishing; hook is the
	// publish hook then, if WSGATE_PUBLISH_HOOK names one.
	publishing bool
	hook       gateway.PublishHook
	// tokenSecret is the HMAC token secret the verifier was built with
	// (presence cursors are sealed with a key derived from it).
	tokenSecret []byte
	// cursorKey is the presence cursor key read from Secrets Manager
	// (WSGATE_CURSOR_KEY_ARN), if configured so.
	cursorKey string
}

// Logger returns the JSON logger every function uses.
func Logger(cfg config.Config) *slog.Logger {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	return slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: level}))
}

// MustLoad reads the configuration from the environment and builds the
// dependencies, or ends the process with the reason: every function's
// start-up (Lambda reports the exit as an init error).
func MustLoad(n Needs) (config.Config, Deps) {
	cfg, err := config.FromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		os.Exit(1)
	}
	d, err := Load(context.Background(), cfg, n)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start-up:", err)
		os.Exit(1)
	}
	return cfg, d
}

// Gateway is the WebSocket routes' Gateway on these dependencies, writing
// its metrics to stdout. With Needs.Publishing it takes client events,
// numbering and delivering them as the broadcast function does.
func (d Deps) Gateway(cfg config.Config) *gateway.Gateway {
	if cfg.CursorKey == "" {
		cfg.CursorKey = d.cursorKey
	}
	gd := gateway.Deps{Store: d.Store, Verifier: d.Verifier, Connections: d.Connections, Tasks: d.Tasks, Log: d.Log, Metrics: os.Stdout, TokenSecret: d.tokenSecret}
	if d.publishing {
		gd.Publisher, gd.Bus, gd.Hook = d.Broadcast(cfg), d.Bus, d.hook
	}
	return gateway.New(cfg, gd)
}

// Broadcast is the broadcast function's Handler on these dependencies.
func (d Deps) Broadcast(cfg config.Config) *broadcast.Handler {
	pacer := fanout.NewPacer(float64(cfg.PostRate))
	sender := fanout.NewSender(d.Poster, fanout.Options{
		Workers: cfg.FanoutWorkers, Pacer: pacer, Settling: broadcast.Settling(d.Store, nil),
	})
	return broadcast.New(cfg, broadcast.Deps{Store: d.Store, Sender: sender, Connections: d.Connections, Tasks: d.Tasks, Retrier: d.retrier, Bus: d.Bus, Log: d.Log, Metrics: os.Stdout})
}

// Needs says which optional dependencies a function builds.
type Needs struct {
	// Verifier: the function checks tokens (it reads the key at start).
	Verifier bool
	// Publishing: the function takes client events (the message function).
	Publishing bool
	// Bus: the function puts events on the stack's bus (lifecycle events).
	Bus bool
}

// Load builds the dependencies, the optional ones as n asks.
func Load(ctx context.Context, cfg config.Config, n Needs) (Deps, error) {
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return Deps{}, fmt.Errorf("aws config: %w", err)
	}
	d := Deps{Log: Logger(cfg), Store: store.New(dynamodb.NewFromConfig(awsCfg, dynamoRetries), cfg.Table)}
	d.Store.Bucketing.SplitAt = cfg.BucketSplitAt
	endpoint, err := ManagementEndpoint(cfg, awsCfg)
	if err != nil {
		return Deps{}, err
	}
	httpClient := fanout.NewHTTPClient(cfg.FanoutWorkers)
	d.Connections = apigatewaymanagementapi.NewFromConfig(awsCfg, func(o *apigatewaymanagementapi.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.HTTPClient = httpClient
		o.RetryMaxAttempts = 1 // fanout retries without blocking its workers
	})
	if d.Poster, err = fanout.NewLeanPoster(endpoint, awsCfg, httpClient); err != nil {
		return Deps{}, err
	}
	if cfg.QueueURL != "" {
		q := queue.New(sqs.NewFromConfig(awsCfg), cfg.QueueURL)
		d.Tasks, d.retrier = q, q
	}
	d.publishing = n.Publishing
	if n.Publishing && cfg.PublishHook != "" {
		d.hook = gateway.LambdaHook{Client: lambda.NewFromConfig(awsCfg), Function: cfg.PublishHook}
	}
	if (n.Publishing || n.Bus) && cfg.EventBus != "" {
		d.Bus = eventbridge.NewFromConfig(awsCfg)
	}
	if n.Verifier {
		if d.Verifier, d.tokenSecret, err = verifier(ctx, cfg, awsCfg); err != nil {
			return Deps{}, err
		}
		if cfg.CursorKey == "" && cfg.CursorKeyARN != "" {
			if d.cursorKey, err = readSecret(ctx, awsCfg, cfg.CursorKeyARN, config.EnvCursorKeyARN); err != nil {
				return Deps{}, err
			}
		}
	}
	return d, nil
}

// dynamoRetries gives DynamoDB calls eight attempts, backing off at most
// a second: a throttled table (ProvisionedThroughputExceeded, on-demand
// tables' partition limits) recovers within seconds, which the SDK's three
// attempts do not cover, and a Lambda cannot wait its 20 s maximum backoff.
func dynamoRetries(o *dynamodb.Options) {
	o.Retryer = retry.AddWithMaxBackoffDelay(retry.AddWithMaxAttempts(retry.NewStandard(), 8), time.Second)
}

// ManagementEndpoint is the @connections endpoint: WSGATE_MANAGEMENT_ENDPOINT,
// else the SDK's endpoint override (AWS_ENDPOINT_URL) plus the stage, as on
// the local gateway and LocalStack.
func ManagementEndpoint(cfg config.Config, awsCfg aws.Config) (string, error) {
	if cfg.ManagementEndpoint != "" {
		return strings.TrimSuffix(cfg.ManagementEndpoint, "/"), nil
	}
	if awsCfg.BaseEndpoint != nil && *awsCfg.BaseEndpoint != "" {
		return strings.TrimSuffix(*awsCfg.BaseEndpoint, "/") + "/" + cfg.Stage, nil
	}
	return "", errors.New(config.EnvManagementEndpoint + " is required (https://{api-id}.execute-api.{region}.amazonaws.com/{stage})")
}

// verifier builds the token verifier and returns the HMAC secret it
// checks with (read from Secrets Manager when configured so), if any.
func verifier(ctx context.Context, cfg config.Config, awsCfg aws.Config) (*auth.Verifier, []byte, error) {
	secret := cfg.JWTSecret
	if secret == "" && cfg.JWTSecretARN != "" {
		var err error
		if secret, err = readSecret(ctx, awsCfg, cfg.JWTSecretARN, config.EnvJWTSecretARN); err != nil {
			return nil, nil, err
		}
		if err := cfg.CheckJWTSecret(secret); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", config.EnvJWTSecretARN, err)
		}
	}
	v, err := auth.NewVerifier(auth.VerifierConfig{
		Alg: cfg.JWTAlg, Secret: []byte(secret), PublicKeyPEM: cfg.JWTPublicKey, JWKSURL: cfg.JWKSURL,
		Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, TicketLifetime: cfg.TicketLifetime,
		MaxLifetime: cfg.MaxTokenLifetime,
	})
	return v, []byte(secret), err
}

// readSecret reads a secret's string from Secrets Manager at start-up.
func readSecret(ctx context.Context, awsCfg aws.Config, arn, env string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := secretsmanager.NewFromConfig(awsCfg).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("read the secret %s names: %w", env, err)
	}
	return aws.ToString(out.SecretString), nil
}

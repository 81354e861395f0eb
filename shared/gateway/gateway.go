// Package gateway implements the WebSocket routes: $connect authenticates
// and stores a connection, $disconnect removes it, $default runs client
// commands. The functions in functions/ only wire it to lambda.Start.
package gateway

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/delivery"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Store is the storage the routes use.
type Store interface {
	PutConnection(ctx context.Context, c store.Connection, subs []store.NewSubscription) error
	GetConnection(ctx context.Context, id string) (store.Connection, error)
	CountCommands(ctx context.Context, id string, at time.Time, n int) (store.Connection, int, error)
	Authenticate(ctx context.Context, c store.Connection, subs []store.NewSubscription) error
	Refresh(ctx context.Context, id string, p auth.Principal, expires time.Time) error
	DeleteConnection(ctx context.Context, id string) (int, error)
	Subscribe(ctx context.Context, c store.Connection, sub store.NewSubscription) (bool, error)
	Unsubscribe(ctx context.Context, connID string, pattern topic.Pattern) (bool, error)
	ConnectionSubscriptions(ctx context.Context, connID string) ([]store.Subscription, error)
	GetState(ctx context.Context, t topic.Pattern) (store.State, error)
	CurrentSeq(ctx context.Context, t topic.Pattern) (uint64, error)
	ClaimTicket(ctx context.Context, jti string, expires time.Time) error
	// What resume reads and charges.
	delivery.ReplayStore
}

// Verifier checks tokens.
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Principal, error)
}

// Connections is the @connections management API.
type Connections interface {
	PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error)
	DeleteConnection(ctx context.Context, in *apigatewaymanagementapi.DeleteConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
}

// Tasks schedules deferred work (auth deadlines, replays).
type Tasks interface {
	Send(ctx context.Context, t queue.Task, delay time.Duration) error
}

// Gateway serves the three WebSocket routes.
type Gateway struct {
	cfg      config.Config
	store    Store
	verifier Verifier
	conns    Connections
	tasks    Tasks
	log      *slog.Logger
	metrics  io.Writer
	now      func() time.Time
}

// Deps are the Gateway's collaborators. Tasks may be nil: then pending
// connections are checked against their deadline on their next message
// only, and ?since= is refused.
type Deps struct {
	Store       Store
	Verifier    Verifier
	Connections Connections
	Tasks       Tasks
	Log         *slog.Logger
	// Metrics receives an EMF line per refusal by an abuse limit
	// (the function's stdout, which CloudWatch turns into metrics).
	Metrics io.Writer
	Now     func() time.Time
}

// New returns a Gateway.
func New(cfg config.Config, d Deps) *Gateway {
	g := &Gateway{cfg: cfg, store: d.Store, verifier: d.Verifier, conns: d.Connections, tasks: d.Tasks, log: d.Log, metrics: d.Metrics, now: d.Now}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.metrics == nil {
		g.metrics = io.Discard
	}
	if g.now == nil {
		g.now = time.Now
	}
	return g
}

// The abuse limits' metrics, one count per refusal.
const (
	MetricRateLimited          = "RateLimited"
	MetricMessageTooLarge      = "MessageTooLarge"
	MetricTooManyConnections   = "TooManyConnections"
	MetricTooManySubscriptions = "TooManySubscriptions"
)

// limited counts a refusal by an abuse limit in the route's EMF line, with
// the connection and principal as searchable properties (not dimensions:
// one metric per tenant would cost per tenant).
func (g *Gateway) limited(route, metric, connID, sub string) {
	m := metrics.New(map[string]string{"Stage": g.cfg.Stage, "Route": route})
	m.Add(metric, 1, metrics.Count)
	m.Property("connection_id", connID)
	if sub != "" {
		m.Property("sub", sub)
	}
	_ = m.Write(g.metrics)
}

// initialSubscriptions are a principal's subscriptions at connect or auth:
// its direct topic, then the scope, or else the token's subscribe list.
func initialSubscriptions(p auth.Principal, scope topic.Pattern) []store.NewSubscription {
	var subs []store.NewSubscription
	if d, ok := p.DirectTopic(); ok {
		subs = append(subs, store.NewSubscription{Pattern: d})
	}
	if !scope.IsZero() {
		return append(subs, store.NewSubscription{Pattern: scope})
	}
	seen := map[string]bool{}
	for _, s := range subs {
		seen[s.Pattern.String()] = true
	}
	for _, s := range p.Subscribe {
		pat, err := topic.ParsePattern(s)
		if err != nil || seen[pat.String()] {
			continue
		}
		seen[pat.String()] = true
		subs = append(subs, store.NewSubscription{Pattern: pat})
	}
	return subs
}

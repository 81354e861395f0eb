// Package gateway implements the WebSocket routes: $connect authenticates
// and stores a connection, $disconnect removes it, $default runs client
// commands. The functions in functions/ only wire it to lambda.Start.
package gateway

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/observe"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Verifier checks tokens.
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Principal, error)
}

// Gateway serves the three WebSocket routes.
type Gateway struct {
	cfg      config.Config
	store    *store.Store
	verifier Verifier
	conns    fanout.Connections
	tasks    queue.Tasks
	// publisher and bus serve the publish command (nil: refused).
	publisher ClientPublisher
	bus       publish.PutEventsAPI
	hook      PublishHook
	cursors   cursorSeal
	log       *slog.Logger
	metrics   io.Writer
	now       func() time.Time
}

// Deps are the Gateway's collaborators. Tasks may be nil: then pending
// connections are checked against their deadline on their next message
// only, and ?since= is refused.
type Deps struct {
	Store       *store.Store
	Verifier    Verifier
	Connections fanout.Connections
	Tasks       queue.Tasks
	// Publisher numbers and delivers client events (the publish command);
	// nil refuses them. Bus receives their copies (cfg.EventBus).
	Publisher ClientPublisher
	Bus       publish.PutEventsAPI
	// Hook checks client events before they are numbered; nil: none.
	Hook PublishHook
	// TokenSecret is the HMAC token secret read at start-up from Secrets
	// Manager (WSGATE_JWT_SECRET_ARN), if any: presence cursors are sealed
	// with a key derived from cfg.CursorKey, else it, else cfg.JWTSecret.
	TokenSecret []byte
	Log         *slog.Logger
	// Metrics receives an EMF line per refusal by an abuse limit
	// (the function's stdout, which CloudWatch turns into metrics).
	Metrics io.Writer
	Now     func() time.Time
}

// New returns a Gateway.
func New(cfg config.Config, d Deps) *Gateway {
	k := observe.Kit{Log: d.Log, Metrics: d.Metrics, Now: d.Now}.OrDefaults()
	secret := []byte(cfg.CursorKey)
	if len(secret) == 0 {
		secret = d.TokenSecret
	}
	if len(secret) == 0 {
		secret = []byte(cfg.JWTSecret)
	}
	return &Gateway{cfg: cfg, store: d.Store, verifier: d.Verifier, conns: d.Connections, tasks: d.Tasks, publisher: d.Publisher, bus: d.Bus, hook: d.Hook, cursors: newCursorSeal(secret), log: k.Log, metrics: k.Metrics, now: k.Now}
}

// The abuse limits' metrics, one count per refusal.
const (
	MetricRateLimited          = "RateLimited"
	MetricMessageTooLarge      = "MessageTooLarge"
	MetricTooManyConnections   = "TooManyConnections"
	MetricTooManySubscriptions = "TooManySubscriptions"
	// MetricClientEventsNotOnBus counts client events whose copy did not
	// reach the bus (they were delivered).
	MetricClientEventsNotOnBus = "ClientEventsNotOnBus"
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

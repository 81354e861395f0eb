// Package broadcast is the broadcast function: it takes a published
// EventBridge event, claims its sequence number once, finds the
// subscribers of its topic by key, has frame decide what each receives and
// fanout post it. The same function drains the task queue (auth deadlines,
// token expiries, replays requested at connect, fan-out shards) and
// applies revocations.
package broadcast

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/observe"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
)

// Sender posts frames to connections.
type Sender interface {
	SendTracked(ctx context.Context, ds []fanout.Delivery, delivered func(i int)) fanout.Summary
}

// Handler is the broadcast function.
type Handler struct {
	cfg     config.Config
	store   *store.Store
	sender  Sender
	conns   fanout.Connections
	tasks   queue.Tasks
	retrier TaskRetrier
	bus     publish.PutEventsAPI
	log     *slog.Logger
	metrics io.Writer
	now     func() time.Time
}

// Deps are the Handler's collaborators. Tasks may be nil.
type Deps struct {
	Store       *store.Store
	Sender      Sender
	Connections fanout.Connections
	Tasks       queue.Tasks
	// Retrier brings a failed task back in seconds (queue.Queue); nil: a
	// failed task waits out the queue's visibility timeout.
	Retrier TaskRetrier
	// Bus receives the lifecycle events (cfg.EventBus); nil: none.
	Bus publish.PutEventsAPI
	Log *slog.Logger
	// Metrics receives one EMF line per invocation (os.Stdout in Lambda).
	Metrics io.Writer
	Now     func() time.Time
}

// New returns a Handler.
func New(cfg config.Config, d Deps) *Handler {
	k := observe.Kit{Log: d.Log, Metrics: d.Metrics, Now: d.Now}.OrDefaults()
	return &Handler{cfg: cfg, store: d.Store, sender: d.Sender, conns: d.Connections, tasks: d.Tasks, retrier: d.Retrier, bus: d.Bus, log: k.Log, metrics: k.Metrics, now: k.Now}
}

// Handle is the Lambda entry point: an EventBridge event, an SQS batch of
// tasks (answered with the ids of the messages to retry), or a batch of
// the table's stream records (lifecycle events).
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records    []json.RawMessage `json:"Records"`
		DetailType *string           `json:"detail-type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		h.log.Error("unreadable invocation", "error", err.Error())
		return nil, nil // retrying unreadable input cannot help
	}
	if len(probe.Records) > 0 && store.IsStream(probe.Records[0]) {
		return nil, h.HandleStream(ctx, probe.Records)
	}
	if probe.Records != nil {
		var ev lambdaevents.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			h.log.Error("unreadable SQS batch", "error", err.Error())
			return nil, nil
		}
		return h.HandleTasks(ctx, ev), nil
	}
	var ev lambdaevents.CloudWatchEvent
	if err := json.Unmarshal(raw, &ev); err != nil || probe.DetailType == nil {
		h.log.Error("invocation is neither an EventBridge event nor an SQS batch")
		return nil, nil
	}
	return nil, h.HandleEvent(ctx, ev)
}

// measure starts the metrics line of an invocation about eventID and puts
// a capacity meter on ctx; flush adds the capacity the store used and
// writes the line.
func (h *Handler) measure(ctx context.Context, eventID string) (_ context.Context, m *metrics.Set, flush func()) {
	m = metrics.New(map[string]string{"Stage": h.cfg.Stage, "Function": "broadcast"})
	m.Property("event_id", eventID)
	meter := &store.Meter{}
	return store.WithMeter(ctx, meter), m, func() {
		read, write, _ := meter.Snapshot()
		m.Add("ReadCapacity", read, metrics.Count)
		m.Add("WriteCapacity", write, metrics.Count)
		_ = m.Write(h.metrics)
	}
}

// requestID is the Lambda request id of the invocation, if ctx has one.
func requestID(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		return lc.AwsRequestID
	}
	return ""
}

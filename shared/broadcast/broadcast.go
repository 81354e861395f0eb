// Package broadcast delivers published events: it validates an EventBridge
// event, claims its sequence number once, finds the subscribers of its topic
// by key, applies audience, filters and projection, and fans out with
// PostToConnection. The same function drains the task queue (auth
// deadlines, replays requested at connect, fan-out shards).
package broadcast

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	lambdaevents "github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/delivery"
	"github.com/wsgate/wsgate/shared/events"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Store is the storage broadcast uses.
type Store interface {
	BeginEvent(ctx context.Context, ev events.Event, owner string, lease, historyTTL time.Duration) (store.EventRecord, error)
	ReplaceState(ctx context.Context, ev events.Event, seq uint64) error
	ClaimEvent(ctx context.Context, eventID, owner string, lease time.Duration) (store.EventRecord, error)
	RenewEvent(ctx context.Context, eventID, owner string, lease time.Duration) error
	ReleaseEvent(ctx context.Context, eventID, owner string) error
	FinishEvent(ctx context.Context, eventID string) error
	SubscriberPatterns(ctx context.Context, t topic.Pattern) ([]store.PatternRef, error)
	Subscribers(ctx context.Context, pattern string, cursor store.Cursor, limit int) ([]store.Subscription, store.Cursor, error)
	ForgetPattern(ctx context.Context, ref store.PatternRef) error
	DeleteConnection(ctx context.Context, id string) (int, error)
	GetConnection(ctx context.Context, id string) (store.Connection, error)
	Revoke(ctx context.Context, r store.Revocation) ([]store.Connection, error)
	ClaimShard(ctx context.Context, eventID string, shard int, owner string, lease time.Duration) (store.ShardProgress, bool, error)
	PutShard(ctx context.Context, eventID string, shard int, owner string, lease time.Duration, p store.ShardProgress) error
	PutDetail(ctx context.Context, eventID string, detail []byte) error
	Detail(ctx context.Context, eventID string) ([]byte, error)
	delivery.ReplayStore
}

// Sender posts frames to connections.
type Sender interface {
	SendTracked(ctx context.Context, ds []fanout.Delivery, delivered func(i int)) fanout.Summary
}

// Connections is the @connections API, for replies to one connection.
type Connections interface {
	PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error)
	DeleteConnection(ctx context.Context, in *apigatewaymanagementapi.DeleteConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
}

// Tasks schedules deferred work: auth-deadline re-checks and fan-out shards.
type Tasks interface {
	Send(ctx context.Context, t queue.Task, delay time.Duration) error
	SendAll(ctx context.Context, ts []queue.Task) error
}

// Handler is the broadcast function.
type Handler struct {
	cfg     config.Config
	store   Store
	sender  Sender
	conns   Connections
	tasks   Tasks
	log     *slog.Logger
	metrics io.Writer
	now     func() time.Time
}

// Deps are the Handler's collaborators. Tasks may be nil.
type Deps struct {
	Store       Store
	Sender      Sender
	Connections Connections
	Tasks       Tasks
	Log         *slog.Logger
	// Metrics receives one EMF line per invocation (os.Stdout in Lambda).
	Metrics io.Writer
	Now     func() time.Time
}

// New returns a Handler.
func New(cfg config.Config, d Deps) *Handler {
	h := &Handler{cfg: cfg, store: d.Store, sender: d.Sender, conns: d.Connections, tasks: d.Tasks, log: d.Log, metrics: d.Metrics, now: d.Now}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.metrics == nil {
		h.metrics = io.Discard
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h
}

// Handle is the Lambda entry point: an EventBridge event, or an SQS batch
// of tasks (answered with the ids of the messages to retry).
func (h *Handler) Handle(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records    []json.RawMessage `json:"Records"`
		DetailType *string           `json:"detail-type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		h.log.Error("unreadable invocation", "error", err.Error())
		return nil, nil // retrying unreadable input cannot help
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

// HandleEvent delivers one EventBridge event. It returns an error only when
// a retry can help (storage failure, another attempt in progress); an
// invalid event is logged, counted and dropped.
func (h *Handler) HandleEvent(ctx context.Context, cwe lambdaevents.CloudWatchEvent) error {
	start := h.now()
	m := metrics.New(map[string]string{"Stage": h.cfg.Stage, "Function": "broadcast"})
	m.Property("event_id", cwe.ID)
	meter := &store.Meter{}
	ctx = store.WithMeter(ctx, meter)
	defer func() {
		read, write, _ := meter.Snapshot()
		m.Add("ReadCapacity", read, metrics.Count)
		m.Add("WriteCapacity", write, metrics.Count)
		_ = m.Write(h.metrics)
	}()
	log := h.log.With("event_id", cwe.ID)
	if reqID := requestID(ctx); reqID != "" {
		log = log.With("request_id", reqID)
	}
	if cwe.DetailType == events.RevokeDetailType {
		m.Add("Revocations", 1, metrics.Count)
		return h.HandleRevocation(ctx, log, cwe)
	}

	ev, err := events.Parse(cwe.ID, cwe.Time, cwe.Detail, h.cfg.HistoryDefault)
	if err != nil {
		m.Add("Rejected", 1, metrics.Count)
		if errors.Is(err, events.ErrTooLarge) {
			m.Add("RejectedTooLarge", 1, metrics.Count)
		}
		log.Warn("event rejected", "reason", err.Error(), "source", cwe.Source, "detail_type", cwe.DetailType)
		return nil
	}
	log = log.With("topic", ev.Topic.String())

	me := owner(ctx)
	rec, err := h.store.BeginEvent(ctx, ev, me, h.cfg.EventLease, h.cfg.HistoryRetention)
	if errors.Is(err, store.ErrInProgress) {
		// Another attempt holds it: wait for it to finish, or for its
		// lease to lapse if it died, and take over.
		err = h.await(ctx, func() (err error) {
			rec, err = h.store.ClaimEvent(ctx, ev.ID, me, h.cfg.EventLease)
			return err
		})
	}
	switch {
	case errors.Is(err, store.ErrInProgress):
		log.Info("event in progress elsewhere; a retry will find it done or abandoned")
		return err
	case err != nil:
		log.Error("sequence assignment failed", "error", err.Error())
		return err
	case rec.Done:
		m.Add("Duplicate", 1, metrics.Count)
		log.Info("duplicate event ignored", "seq", rec.Seq)
		return nil
	}
	log = log.With("seq", rec.Seq)
	if rec.Overtaken > OrderWindow {
		// The ordering promise is broken for this event: say so.
		m.Add("NumberedOutOfOrder", 1, metrics.Count)
		log.Warn("numbered after an event published later", "overtaken_ms", rec.Overtaken.Milliseconds())
	}
	stopLease := h.keepLease(ctx, log, func(ctx context.Context) error { return h.store.RenewEvent(ctx, ev.ID, me, h.cfg.EventLease) })
	defer stopLease()
	if ev.ReplaceState {
		err = h.store.ReplaceState(ctx, ev, rec.Seq)
	}
	if err == nil && ev.HasPayload {
		err = h.deliver(ctx, log, m, ev, rec, cwe.Detail)
	}
	// Renewals stop before the finish: finishing clears the owner, and a
	// renewal after it would read as another attempt having taken over.
	stopLease()
	if err == nil {
		if err = h.store.FinishEvent(ctx, ev.ID); err != nil {
			log.Error("finish failed; a redelivery will repeat the fan-out", "error", err.Error())
		}
	}
	if err != nil {
		// Let EventBridge's retry take the event over without waiting
		// out the lease.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if rerr := h.store.ReleaseEvent(rctx, ev.ID, me); rerr != nil {
			log.Warn("lease not released; the retry waits for it to lapse", "error", rerr.Error())
		}
		return err
	}
	m.Duration("ProcessingDuration", h.now().Sub(start))
	return nil
}

// OrderWindow is the gateway's ordering promise: events one publisher
// sends to one topic at least this far apart are numbered, and so
// delivered, in the order they were published.
const OrderWindow = time.Second

// InlineDetailBytes is the largest event detail a shard task carries
// itself; a larger one is stored in the table once and the tasks name it.
// With FanoutPageSize's 10,000 connection ids a task stays under 256 KB.
const InlineDetailBytes = 16 << 10

// target is one connection's matching subscriptions.
type target struct {
	sub  store.Subscription
	sets []filter.Set
}

// deliver finds the event's audience, decides each connection's frame, and
// fans out: the first shard here, the others in parallel through the task
// queue, each a fresh invocation with its own workers.
func (h *Handler) deliver(ctx context.Context, log *slog.Logger, m *metrics.Set, ev events.Event, rec store.EventRecord, rawDetail []byte) error {
	targets, order, err := h.audience(ctx, log, ev)
	if err != nil {
		return err
	}
	m.Add("Subscribers", float64(len(targets)), metrics.Count)

	enc := delivery.NewEncoder(delivery.FromEvent(ev, rec.Seq))
	p := plan{index: map[string]int{}}
	for _, id := range order {
		t := targets[id]
		keep, ok := enc.Decide(t.sub.Identity, t.sets)
		if ok {
			p.add(id, t.sub.Envelope, keep)
		}
	}
	m.Add("Filtered", float64(len(targets)-len(p.conns)), metrics.Count)

	shards := p.split(h.cfg.FanoutPageSize)
	m.Add("Shards", float64(len(shards)), metrics.Count)
	if len(shards) > 1 && h.tasks != nil {
		detail, ref := json.RawMessage(rawDetail), ""
		if len(rawDetail) > InlineDetailBytes {
			// Stored once rather than copied into every shard's message.
			if err := h.store.PutDetail(ctx, ev.ID, rawDetail); err != nil {
				log.Error("detail not stored; EventBridge will retry the event", "error", err.Error())
				return err
			}
			detail, ref = nil, ev.ID
		}
		tasks := make([]queue.Task, 0, len(shards)-1)
		for i, sh := range shards[1:] {
			tasks = append(tasks, queue.Task{
				Kind: queue.KindShard, EventID: ev.ID, EventTime: ev.Time, Seq: rec.Seq, Shard: i + 1,
				Detail: detail, DetailRef: ref, Variants: p.variants, Conns: sh.conns, VariantOf: sh.variantOf,
			})
		}
		if err := h.tasks.SendAll(ctx, tasks); err != nil {
			log.Error("shards not queued; EventBridge will retry the event", "error", err.Error())
			return err
		}
		return h.deliverShard(ctx, log, m, enc, ev.ID, 0, p.variants, shards[0], true)
	}
	// One shard, or no queue: deliver here. A single shard keeps no progress
	// marker, so a small event costs no write beyond its sequence number.
	for i, sh := range shards {
		if err := h.deliverShard(ctx, log, m, enc, ev.ID, i, p.variants, sh, len(shards) > 1); err != nil {
			return err
		}
	}
	return nil
}

// audience reads every subscriber of the patterns matching the event's
// topic, page by page, one entry per connection with all its matching
// subscriptions' filters.
func (h *Handler) audience(ctx context.Context, log *slog.Logger, ev events.Event) (map[string]*target, []string, error) {
	refs, err := h.store.SubscriberPatterns(ctx, ev.Topic)
	if err != nil {
		log.Error("subscriber lookup failed", "error", err.Error())
		return nil, nil, err
	}
	targets := map[string]*target{}
	var order []string
	for _, ref := range refs {
		var cursor store.Cursor
		for page := 0; ; page++ {
			subs, next, err := h.store.Subscribers(ctx, ref.Pattern, cursor, 0)
			if err != nil {
				log.Error("subscriber page failed", "pattern", ref.Pattern, "error", err.Error())
				return nil, nil, err
			}
			if page == 0 && len(subs) == 0 && next == "" && ref.Wildcard {
				if err := h.store.ForgetPattern(ctx, ref); err != nil {
					log.Warn("stale pattern not removed", "pattern", ref.Pattern, "error", err.Error())
				}
			}
			for _, s := range subs {
				t, ok := targets[s.ConnectionID]
				if !ok {
					t = &target{sub: s}
					targets[s.ConnectionID] = t
					order = append(order, s.ConnectionID)
				}
				t.sets = append(t.sets, s.Filters)
				t.sub.Envelope = t.sub.Envelope || s.Envelope
			}
			if next == "" {
				break
			}
			cursor = next
		}
	}
	return targets, order, nil
}

// plan is an event's decided audience: each connection and the variant of
// the frame it gets.
type plan struct {
	variants  []queue.Variant
	index     map[string]int
	conns     []string
	variantOf []int
}

func (p *plan) add(conn string, envelope bool, keep map[string][]string) {
	k := filter.KeepKey(keep)
	if envelope {
		k = "env|" + k
	}
	v, ok := p.index[k]
	if !ok {
		v = len(p.variants)
		p.index[k] = v
		p.variants = append(p.variants, queue.Variant{Envelope: envelope, Keep: keep})
	}
	p.conns = append(p.conns, conn)
	p.variantOf = append(p.variantOf, v)
}

// shard is one slice of a plan.
type shard struct {
	conns     []string
	variantOf []int // nil when there is one variant
}

// split cuts the plan into shards of at most size connections.
func (p *plan) split(size int) []shard {
	var out []shard
	for start := 0; start < len(p.conns); start += size {
		end := min(start+size, len(p.conns))
		sh := shard{conns: p.conns[start:end]}
		if len(p.variants) > 1 {
			sh.variantOf = p.variantOf[start:end]
		}
		out = append(out, sh)
	}
	return out
}

// send fans out and removes gone connections.
func (h *Handler) send(ctx context.Context, log *slog.Logger, m *metrics.Set, ds []fanout.Delivery, published time.Time, delivered func(int)) {
	sum := h.sender.SendTracked(ctx, ds, delivered)
	m.Add("Delivered", float64(sum.Delivered), metrics.Count)
	m.Add("Gone", float64(len(sum.Gone)), metrics.Count)
	m.Add("Settling", float64(sum.Settling), metrics.Count)
	m.Add("Throttled", float64(sum.Throttled), metrics.Count)
	m.Add("BufferFull", float64(sum.BufferFull), metrics.Count)
	m.Add("SlowClients", float64(len(sum.SlowClients)), metrics.Count)
	m.Add("Retried", float64(sum.Retried), metrics.Count)
	m.Add("Failed", float64(len(sum.Failed)), metrics.Count)
	m.Add("PostCalls", float64(sum.Calls), metrics.Count)
	m.Duration("FanoutDuration", sum.Duration)
	if !published.IsZero() {
		m.Duration("EventAge", h.now().Sub(published))
	}
	h.removeGone(ctx, log, sum.Gone)
	level := slog.LevelInfo
	if len(sum.Failed) > 0 {
		level = slog.LevelWarn
	}
	log.Log(ctx, level, "fanned out", "deliveries", len(ds), "delivered", sum.Delivered, "gone", len(sum.Gone),
		"throttled", sum.Throttled, "buffer_full", sum.BufferFull, "retried", sum.Retried, "failed", len(sum.Failed),
		"duration_ms", sum.Duration.Milliseconds())
}

// removeGone deletes the records of connections that answered 410, a few
// at a time.
func (h *Handler) removeGone(ctx context.Context, log *slog.Logger, gone []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, id := range gone {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := h.store.DeleteConnection(ctx, id); err != nil {
				log.Warn("gone connection not removed; its TTL will", "connection_id", id, "error", err.Error())
			}
		}()
	}
	wg.Wait()
}

// HandleTasks runs an SQS batch; failed messages are reported for retry.
func (h *Handler) HandleTasks(ctx context.Context, ev lambdaevents.SQSEvent) lambdaevents.SQSEventResponse {
	var resp lambdaevents.SQSEventResponse
	for _, r := range ev.Records {
		t, err := queue.Decode(r.Body)
		if err != nil {
			h.log.Error("task dropped", "message_id", r.MessageId, "error", err.Error())
			continue
		}
		if err := h.runTask(ctx, t); err != nil {
			h.log.Warn("task failed; SQS will retry", "message_id", r.MessageId, "kind", t.Kind, "error", err.Error())
			resp.BatchItemFailures = append(resp.BatchItemFailures, lambdaevents.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
		}
	}
	return resp
}

func (h *Handler) runTask(ctx context.Context, t queue.Task) error {
	switch t.Kind {
	case queue.KindAuthDeadline:
		return h.authDeadline(ctx, t)
	case queue.KindReplay:
		return h.replay(ctx, t)
	case queue.KindShard:
		return h.shardTask(ctx, t)
	case queue.KindTokenExpiry:
		return h.tokenExpiry(ctx, t)
	}
	return fmt.Errorf("task kind %q is not handled here", t.Kind)
}

// authDeadline closes a connection that is still pending at its deadline.
func (h *Handler) authDeadline(ctx context.Context, t queue.Task) error {
	log := h.log.With("connection_id", t.ConnectionID)
	c, err := h.store.GetConnection(ctx, t.ConnectionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !c.Pending {
		return nil
	}
	if c.AuthDeadline.After(h.now()) {
		return h.waitAgain(ctx, t, c.AuthDeadline)
	}
	log.Info("auth deadline passed; closing")
	return h.closeConnection(ctx, c,
		protocol.Encode(protocol.AuthResponse{Type: protocol.TypeAuthResponse, Success: false, Error: protocol.AuthTimeout, Message: "authentication deadline passed"}))
}

// replay sends a connection the history it asked for with ?since=, under
// a resume's caps: at most MaxReplayBytes, taken from the connection's
// allowance per minute, each frame posted as soon as it is read, then
// resumed (with more when the cap stopped it short) or the error.
func (h *Handler) replay(ctx context.Context, t queue.Task) error {
	log := h.log.With("connection_id", t.ConnectionID, "topic", t.Topic)
	c, err := h.store.GetConnection(ctx, t.ConnectionID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	tp, err := topic.ParseTopic(t.Topic)
	if err != nil {
		log.Error("replay task with a bad topic", "error", err.Error())
		return nil
	}
	id := t.ConnectionID
	// The replay is queued by $connect and may arrive before API Gateway
	// has registered the connection: Post waits that out.
	post := func(f []byte) error { return fanout.Post(ctx, h.conns, id, f, c.ConnectedAt, h.now) }
	lim := delivery.ReplayLimits{Bytes: int64(h.cfg.MaxReplayBytes), PerMinute: int64(h.cfg.MaxReplayBytesPerMinute)}
	p := delivery.NewReplayer(h.store, c, lim, h.now)
	r, err := p.Replay(ctx, delivery.Request{Topic: tp, Since: t.Since, Envelope: c.Envelope}, post)
	if cerr := p.Close(ctx); cerr != nil {
		log.Warn("replay allowance not given back", "error", cerr.Error())
	}
	var last []byte
	switch {
	case errors.Is(err, delivery.ErrHistoryExpired):
		last = protocol.Encode(protocol.Errorf(nil, protocol.CodeHistoryExpired, "%v", err))
	case errors.Is(err, delivery.ErrReplayLimited):
		last = protocol.Encode(protocol.Errorf(nil, protocol.CodeRateLimited, "%v; connect again later with since=%d", err, t.Since))
	case err != nil:
		return h.replayFailed(ctx, id, err)
	default:
		last = protocol.Encode(protocol.Resumed{Type: protocol.TypeResumed, Topic: tp.String(), Seq: r.Last, Replayed: r.Frames, More: r.More})
	}
	if err := post(last); err != nil {
		return h.replayFailed(ctx, id, err)
	}
	log.Info("replayed", "since", t.Since, "frames", r.Frames, "seq", r.Last, "more", r.More)
	return nil
}

// replayFailed ends a replay that could not go on: a connection gone is
// removed and the task done; anything else is retried by the queue.
func (h *Handler) replayFailed(ctx context.Context, id string, err error) error {
	if errors.Is(fanout.Classify(err), fanout.ErrGone) {
		_, _ = h.store.DeleteConnection(ctx, id)
		return nil
	}
	return err
}

func requestID(ctx context.Context) string {
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		return lc.AwsRequestID
	}
	return ""
}

// owner names this attempt at an event, for its lease.
func owner(ctx context.Context) string {
	if id := requestID(ctx); id != "" {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// await runs claim until it stops answering ErrInProgress, for at most
// one lease and a second: the holder finishes, or its lease lapses if it
// died. It leaves time for the work the claim is for.
func (h *Handler) await(ctx context.Context, claim func() error) error {
	lease := h.cfg.EventLease
	until := time.Now().Add(lease + time.Second)
	if d, ok := ctx.Deadline(); ok && d.Add(-lease).Before(until) {
		until = d.Add(-lease)
	}
	for {
		err := claim()
		if !errors.Is(err, store.ErrInProgress) || !time.Now().Before(until) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(max(lease/5, 50*time.Millisecond)):
		}
	}
}

// keepLease renews a lease every third of its length until the returned
// stop is called (once or more).
func (h *Handler) keepLease(ctx context.Context, log *slog.Logger, renew func(context.Context) error) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(h.cfg.EventLease / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := renew(ctx); err != nil {
					log.Warn("lease not renewed", "error", err.Error())
				}
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

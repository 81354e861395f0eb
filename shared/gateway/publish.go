package gateway

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/publish"
)

// ClientPublisher numbers and delivers an event a client published: the
// broadcast function's work (broadcast.Handler.PublishNow), run in the
// message function so that the answer carries the event's number.
type ClientPublisher interface {
	PublishNow(ctx context.Context, id string, at time.Time, detail []byte) (uint64, error)
}

// PublishCost is what a publish counts against WSGATE_MESSAGES_PER_SECOND:
// at the default 100 a connection publishes at most 10 events a second. A
// publish is a fan-out, which costs the gateway far more than a command.
const PublishCost = 10

// publishCalls is the store calls a publish counts against the frame's
// budget: number, history, the audience's pages, finish.
const publishCalls = 5

// publish runs the publish command: the token's publish claim must cover
// the topic; the event then goes through the publisher contract's
// validation, numbering, history, audience and filters like a backend's,
// with "from" naming the principal, and a copy goes to the bus.
func (inv *invocation) publish(ctx context.Context, c protocol.Publish) {
	p := inv.conn.Principal
	if !p.MayPublish(c.Topic) {
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "not allowed to publish to %s (the token's publish claim)", c.Topic))
		return
	}
	if inv.g.publisher == nil {
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "this gateway does not take events from clients"))
		return
	}
	if inv.refused(inv.spend(c.ID, publishCalls)) {
		return
	}
	payload, attributes, ok := inv.check(ctx, c)
	if !ok {
		return
	}
	at := inv.arrived.UTC()
	d := struct {
		Topic       string          `json:"topic"`
		Payload     json.RawMessage `json:"payload"`
		Attributes  json.RawMessage `json:"attributes,omitempty"`
		From        string          `json:"from"`
		History     bool            `json:"history"`
		PublishedAt time.Time       `json:"published_at"`
	}{c.Topic.String(), payload, attributes, auth.AudienceSub(p.Type, p.Sub), inv.g.cfg.ClientHistory, at}
	detail, err := json.Marshal(d)
	if err != nil {
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "publish: %v", err))
		return
	}
	id := newEventID()
	log := inv.log.With("event_id", id, "topic", d.Topic)
	seq, err := inv.g.publisher.PublishNow(ctx, id, at, detail)
	switch {
	case errors.Is(err, publish.ErrTooLarge):
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeTooLarge, "%v", err))
		return
	case errors.Is(err, publish.ErrInvalid):
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeBadRequest, "%v", err))
		return
	case err != nil:
		// Numbered perhaps, not fully delivered: the client sends it again
		// (a new id, so a new event; say so).
		log.Error("client event not delivered", "error", err.Error())
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeUnavailable, "the event was not delivered to every subscriber; publish it again"))
		return
	}
	log.Info("client event published", "seq", seq)
	inv.announce(ctx, log, publish.ClientPublished{EventID: id, Seq: seq, From: d.From, Orgs: p.Orgs, ConnectionID: inv.conn.ID, Event: detail})
	inv.reply(protocol.Published{Type: protocol.TypePublished, ID: c.ID, Topic: d.Topic, EventID: id, Seq: seq})
}

// check asks the publish hook, if any, about the event: its payload and
// attributes to publish (rewritten perhaps), or false when it is refused
// (answered already). No answer in time refuses it: the check fails closed.
func (inv *invocation) check(ctx context.Context, c protocol.Publish) (json.RawMessage, json.RawMessage, bool) {
	if inv.g.hook == nil {
		return c.Payload, c.Attributes, true
	}
	p := inv.conn.Principal
	hctx, cancel := context.WithTimeout(ctx, inv.g.cfg.PublishHookTimeout)
	defer cancel()
	ans, err := inv.g.hook.Check(hctx, publish.HookRequest{
		Topic: c.Topic.String(), Payload: c.Payload, Attributes: c.Attributes,
		From: auth.AudienceSub(p.Type, p.Sub), Orgs: p.Orgs, ConnectionID: inv.conn.ID,
	})
	switch {
	case err != nil:
		inv.log.Error("publish hook failed; the publish is refused", "topic", c.Topic.String(), "error", err.Error())
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeUnavailable, "the publish check did not answer; publish again"))
		return nil, nil, false
	case ans.Action == publish.HookDeny:
		inv.log.Info("publish hook refused the event", "topic", c.Topic.String())
		reason := ans.Reason
		if reason == "" {
			reason = "refused by the publish check"
		}
		inv.replyErr(protocol.Errorf(c.ID, protocol.CodeForbidden, "%.300s", reason))
		return nil, nil, false
	case ans.Action == publish.HookRewrite:
		payload, attributes := c.Payload, c.Attributes
		if len(ans.Payload) > 0 {
			payload = ans.Payload
		}
		if len(ans.Attributes) > 0 {
			attributes = ans.Attributes
		}
		return payload, attributes, true
	}
	return c.Payload, c.Attributes, true
}

// announce puts the copy of a client's event on the bus. The event is
// delivered already: a failure is logged and counted, not the client's.
func (inv *invocation) announce(ctx context.Context, log interface{ Error(string, ...any) }, cp publish.ClientPublished) {
	if inv.g.bus == nil || !inv.g.cfg.ClientEventsToBus || inv.g.cfg.EventBus == "" {
		return
	}
	pub := publish.Publisher{Client: inv.g.bus, Bus: inv.g.cfg.EventBus, Source: publish.ClientSource}
	if err := pub.Announce(ctx, publish.ClientDetailType, cp); err != nil {
		log.Error("client event not copied to the bus", "error", err.Error())
		inv.g.limited("$default", MetricClientEventsNotOnBus, inv.conn.ID, inv.conn.Principal.Sub)
	}
}

// newEventID is a random UUID, the form of EventBridge's event ids.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

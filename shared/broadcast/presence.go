package broadcast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/config"
	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/metrics"
	"github.com/wsgate/wsgate/shared/protocol"
	"github.com/wsgate/wsgate/shared/queue"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/topic"
)

// Presence comes in two steps, so that a stream batch never waits on, nor
// fails for, a client:
//
//  1. the stream batch applies its subscription changes to the rosters
//     (store.ApplyToRoster: any order, any number of times) and, for each
//     principal it touched, claims the announcement now due, if any
//     (store.DueAnnouncement), handing it to the task queue;
//  2. a presence task posts it to the topic's watchers; posts that fail
//     (a client's full buffer, ordinary) are retried by a task of their
//     own a few seconds later, then given up, never holding back the
//     others nor the stream.
//
// The batch fails only when the table or the queue does: its retry then
// applies nothing twice and claims only what is still due.

// presenceRetries is how many rounds a failed post gets, and
// presenceRetry how they are spaced.
const presenceRetries = 3

var presenceRetry = backoff.Policy{Base: 2 * time.Second, Max: 20 * time.Second}

// who is a principal of a topic's roster.
type who struct {
	topic string
	id    auth.Identity
}

// presence applies a batch's subscription changes of presence-enabled
// topics and hands on the announcements they make due.
func (h *Handler) presence(ctx context.Context, m *metrics.Set, changes []store.SubscriptionChange) error {
	var touched []who
	seen := map[string]bool{}
	for _, c := range changes {
		t, err := topic.ParseTopic(c.Topic)
		if err != nil || !config.Matches(h.cfg.PresenceTopics, t) {
			continue
		}
		if _, err := h.store.ApplyToRoster(ctx, c); err != nil {
			return err
		}
		if k := c.Topic + "\x00" + store.RosterKey(c.Identity); !seen[k] {
			seen[k] = true
			touched = append(touched, who{c.Topic, c.Identity})
		}
	}
	// Every principal touched, changed or not: a retry of a batch whose
	// first run stopped between applying and announcing finds the
	// announcement still due here.
	for _, w := range touched {
		a, due, err := h.store.DueAnnouncement(ctx, w.topic, w.id)
		if err != nil {
			return err
		}
		if !due {
			continue
		}
		if err := h.handOn(ctx, m, a); err != nil {
			if rerr := h.store.Unannounce(context.WithoutCancel(ctx), a); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return err
		}
		kind := "Leaves"
		if a.Present {
			kind = "Joins"
		}
		m.Add("Presence"+kind, 1, metrics.Count)
	}
	return nil
}

// handOn queues an announcement's delivery, or, with no queue (tests),
// delivers it here.
func (h *Handler) handOn(ctx context.Context, m *metrics.Set, a store.Announcement) error {
	t := queue.Task{Kind: queue.KindPresence, Topic: a.Topic, Announce: &queue.Announce{Identity: a.Identity, Present: a.Present, Seq: a.Seq}}
	if h.tasks != nil {
		return h.tasks.Send(ctx, t, 0)
	}
	return h.announce(ctx, m, t)
}

// presenceTask delivers a queued announcement.
func (h *Handler) presenceTask(ctx context.Context, t queue.Task) error {
	if t.Announce == nil || t.Topic == "" {
		h.log.Error("presence task without an announcement dropped")
		return nil
	}
	ctx, m, flush := h.measure(ctx, "")
	defer flush()
	return h.announce(ctx, m, t)
}

// announce posts an announcement to the topic's watchers (t.Conns on a
// retry round); the posts that failed get a round of their own later.
func (h *Handler) announce(ctx context.Context, m *metrics.Set, t queue.Task) error {
	a := store.Announcement{Topic: t.Topic, Identity: t.Announce.Identity, Present: t.Announce.Present, Seq: t.Announce.Seq}
	log := h.log.With("topic", t.Topic, "announcement", store.AnnouncementID(a))
	frame := protocol.Encode(presenceEvent(a))
	var failed []string
	send := func(conns []string) {
		ds := make([]fanout.Delivery, len(conns))
		for i, c := range conns {
			ds[i] = fanout.Delivery{ConnectionID: c, Data: frame}
		}
		sum := h.sender.SendTracked(ctx, ds, nil)
		m.Add("PresenceDelivered", float64(sum.Delivered), metrics.Count)
		h.removeGone(ctx, log, sum.Gone)
		failed = append(failed, sum.Failed...)
	}
	if len(t.Conns) > 0 {
		send(t.Conns)
		return h.retryFailed(ctx, m, log, t, failed)
	}
	// One page of watchers per task, whatever their number: the next page
	// is handed on before this one is posted, so pages go out one queue
	// hop apart and no invocation posts to more than a page (a topic's
	// 100,000 watchers are the same wall as an event's audience).
	conns, next, err := h.store.Watchers(ctx, t.Topic, store.Cursor(t.Announce.From), h.cfg.FanoutPageSize)
	if err != nil {
		return err
	}
	if next != "" {
		if err := h.nextWatchers(ctx, m, t, next); err != nil {
			return err
		}
	}
	if len(conns) > 0 {
		send(conns)
	}
	return h.retryFailed(ctx, m, log, t, failed)
}

// nextWatchers hands on an announcement's next page of watchers: a task
// of its own, or, with no queue (tests), delivered here.
func (h *Handler) nextWatchers(ctx context.Context, m *metrics.Set, t queue.Task, from store.Cursor) error {
	a := *t.Announce
	a.From = string(from)
	next := queue.Task{Kind: queue.KindPresence, Topic: t.Topic, Announce: &a}
	if h.tasks == nil {
		return h.announce(ctx, m, next)
	}
	if err := h.tasks.Send(ctx, next, 0); err != nil {
		return fmt.Errorf("broadcast: announcement's next watchers not queued: %w", err)
	}
	return nil
}

// retryFailed gives the posts that failed a later round, while rounds
// are left; after the last they are given up (counted and logged).
func (h *Handler) retryFailed(ctx context.Context, m *metrics.Set, log *slog.Logger, t queue.Task, failed []string) error {
	if len(failed) == 0 {
		return nil
	}
	if t.Attempt >= presenceRetries || h.tasks == nil {
		m.Add("PresenceUndelivered", float64(len(failed)), metrics.Count)
		log.Warn("announcement given up for connections whose posts kept failing", "connections", len(failed), "attempts", t.Attempt+1)
		return nil
	}
	retry := t
	retry.Conns, retry.Attempt = failed, t.Attempt+1
	if err := h.tasks.Send(ctx, retry, presenceRetry.Delay(t.Attempt)); err != nil {
		return fmt.Errorf("broadcast: announcement's failed posts not queued again: %w", err)
	}
	return nil
}

// presenceEvent is the frame of an announcement.
func presenceEvent(a store.Announcement) protocol.PresenceEvent {
	ev := protocol.PresenceEvent{Type: protocol.TypeLeave, ID: store.AnnouncementID(a), Topic: a.Topic,
		PType: a.Identity.Type, Sub: a.Identity.Sub, Seq: a.Seq}
	if a.Present {
		ev.Type = protocol.TypeJoin
	}
	if a.Identity.Anonymous {
		ev.PType, ev.Sub = "anonymous", ""
	}
	return ev
}

package broadcast

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/wsgate/wsgate/shared/topic"
)

// A shard task that SQS hands out again (its first attempt failed, or its
// invocation died) runs seconds after its event was numbered, and a later
// event on the topic may have reached the shard's subscribers meanwhile:
// sending the older one now would deliver it after the newer. So a
// redelivered shard sends only while its event is still its topic's last
// numbered one. It reads the topic's number before it sends and every
// orderCheckEvery while it sends, and once a later number has been drawn
// it sends nothing more: the rest of the shard is counted Superseded, and
// their clients see the hole by its number when the later event arrives
// and fetch it with resume (as for a delivery that failed). Any later
// number counts, even one an attempt drew and skipped: a
// missed live delivery can be resumed, an event delivered out of order
// cannot be taken back. A topic quiet since gets its event within seconds.

// orderCheckEvery is how often a redelivered shard reads its topic's
// number while it sends: the longest an event numbered meanwhile can race
// the shard's last posts.
const orderCheckEvery = checkpointEvery

// Why a shard's sending was cut short.
var (
	errTakenOver  = errors.New("another attempt took the shard over")
	errSuperseded = errors.New("a later event on the topic has been numbered")
)

// ordering is what a redelivered shard checks: its event's topic and
// number.
type ordering struct {
	topic topic.Pattern
	seq   uint64
}

// superseded reports whether a number after the shard's event has been
// drawn on its topic.
func (h *Handler) superseded(ctx context.Context, o *ordering) (bool, error) {
	ts, err := h.store.TopicSeq(ctx, o.topic)
	if err != nil {
		return false, err
	}
	return ts.Seq > o.seq, nil
}

// watchOrder reads the topic's number every orderCheckEvery until the
// returned stop is called, and calls later (once) when a later event has
// been numbered. A failed read is logged; the next one may succeed.
func (h *Handler) watchOrder(ctx context.Context, log *slog.Logger, o *ordering, later func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(orderCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				after, err := h.superseded(ctx, o)
				if err != nil {
					log.Warn("topic's number not read", "error", err.Error())
					continue
				}
				if after {
					later()
					return
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

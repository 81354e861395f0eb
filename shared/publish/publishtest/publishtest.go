// Package publishtest makes events of a chosen size, for the tests of the
// gateway's size limits.
package publishtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wsgate/wsgate/shared/publish"
)

// blobBytes is the payload's filler: well under a frame, so that the
// payload is never what limits the event.
const blobBytes = 100 * 1024

// DetailOfSize returns a detail on topic that marshals (json.Marshal) to
// exactly n bytes: a payload of about 100 KB kept for resume, and state
// frames filling the rest, so that the event stores as much as one event
// can (a detail item, a state item and a history entry). n must leave
// room for the payload and stay within what state may hold.
func DetailOfSize(topic string, n int) publish.Detail {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	yes := true
	d := publish.Detail{
		Topic: topic, History: &yes, PublishedAt: &at,
		Payload: json.RawMessage(`{"blob":"` + strings.Repeat("x", blobBytes) + `"}`),
	}
	pad := 0
	for range 10 {
		d.State = frames(pad)
		b, err := json.Marshal(d)
		if err != nil {
			panic(err)
		}
		if len(b) == n {
			return d
		}
		pad += n - len(b)
		if pad < 0 {
			break
		}
	}
	panic(fmt.Sprintf("publishtest: no detail of %d bytes on %q", n, topic))
}

// frames returns state frames holding pad bytes of filler, each under a
// frame's limit.
func frames(pad int) []json.RawMessage {
	var out []json.RawMessage
	for pad > 0 {
		k := min(pad, blobBytes)
		out = append(out, json.RawMessage(`{"s":"`+strings.Repeat("y", k)+`"}`))
		pad -= k
	}
	return out
}

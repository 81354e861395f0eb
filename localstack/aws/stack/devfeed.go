package stack

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/eventbus"
)

// What a developer cannot see otherwise on one machine: the events on the
// stack's bus (lifecycle, client publishes, backends' events), served as
// JSON lines at GET /_wsgate/bus, and the events the broadcast function
// refused, with their reason, at GET /_wsgate/refused and in the console.

// busFeedPattern matches every event on the bus: every event has a source.
const busFeedPattern = `{"source":[{"prefix":""}]}`

// maxRecent is how many refusals the stack remembers.
const maxRecent = 100

// Refusal is an event the broadcast function refused, read from its
// "event rejected" (or "revocation rejected") log line.
type Refusal struct {
	EventID    string    `json:"event_id"`
	Reason     string    `json:"reason"`
	Source     string    `json:"source,omitempty"`
	DetailType string    `json:"detail_type,omitempty"`
	Time       time.Time `json:"time"`
}

// ParseRefusal reads a broadcast function log line: ok when it tells of a
// refused event.
func ParseRefusal(line []byte) (Refusal, bool) {
	var l struct {
		Msg        string    `json:"msg"`
		EventID    string    `json:"event_id"`
		Reason     string    `json:"reason"`
		Source     string    `json:"source"`
		DetailType string    `json:"detail_type"`
		Time       time.Time `json:"time"`
	}
	if json.Unmarshal(line, &l) != nil || (l.Msg != "event rejected" && l.Msg != "revocation rejected") {
		return Refusal{}, false
	}
	return Refusal{EventID: l.EventID, Reason: l.Reason, Source: l.Source, DetailType: l.DetailType, Time: l.Time}, true
}

// feed hands each line to its current followers and keeps the last few.
type feed struct {
	mu        sync.Mutex
	recent    [][]byte
	followers map[chan []byte]struct{}
}

func (f *feed) add(line []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recent = append(f.recent, line)
	if len(f.recent) > maxRecent {
		f.recent = f.recent[1:]
	}
	for c := range f.followers {
		select {
		case c <- line:
		default: // a follower too slow to read loses lines, never slows the bus
		}
	}
}

func (f *feed) last() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]byte(nil), f.recent...)
}

func (f *feed) follow() (<-chan []byte, func()) {
	c := make(chan []byte, 256)
	f.mu.Lock()
	if f.followers == nil {
		f.followers = map[chan []byte]struct{}{}
	}
	f.followers[c] = struct{}{}
	f.mu.Unlock()
	return c, func() {
		f.mu.Lock()
		delete(f.followers, c)
		f.mu.Unlock()
	}
}

// stream writes each line f gets as a JSON line until the client leaves.
func (f *feed) stream(w http.ResponseWriter, r *http.Request) {
	lines, stop := f.follow()
	defer stop()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case l := <-lines:
			if _, err := w.Write(append(l, '\n')); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// watchBus adds the rule that copies every event on the stack's bus to the
// bus feed (at least once, as EventBridge delivers).
func (s *Stack) watchBus() error {
	return s.Bus.PutRule(eventbus.Rule{
		Name: s.BusName + "-dev-feed", Bus: s.BusName, Pattern: busFeedPattern,
		Target: func(_ context.Context, event []byte) error {
			s.busFeed.add(append([]byte(nil), event...))
			return nil
		},
	})
}

// functionLog notes the broadcast function's refusals, then passes each
// line on to next (nil: nowhere).
func (s *Stack) functionLog(next func(string, []byte)) func(string, []byte) {
	return func(fn string, line []byte) {
		if fn == FnBroadcast {
			if r, ok := ParseRefusal(line); ok {
				b, _ := json.Marshal(r)
				s.refusals.add(b)
			}
		}
		if next != nil {
			next(fn, line)
		}
	}
}

// Refused returns the last refused events, oldest first.
func (s *Stack) Refused() []Refusal {
	var out []Refusal
	for _, b := range s.refusals.last() {
		var r Refusal
		if json.Unmarshal(b, &r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// serveRefused answers the last refused events as a JSON list, or with
// ?follow=1 streams each new one as a JSON line.
func (s *Stack) serveRefused(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("follow") != "" {
		s.refusals.stream(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	out := s.Refused()
	if out == nil {
		out = []Refusal{}
	}
	_ = json.NewEncoder(w).Encode(out)
}

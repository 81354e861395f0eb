package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgate/wsgate/localstack/aws/eventbus"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest/dynamolocal"
	"github.com/wsgate/wsgate/shared/topic"
)

// The presence variant (Options.Presence) turns presence on for every
// soak topic and lifecycle events on for the stack, adds observers that
// watch every topic's joins and leaves, and collects the lifecycle events
// at an ordinary rule of the bus, as a backend would. It checks, once the
// drops are over and before the clients close, that every roster and every
// observer's view agree with the subscriptions the table holds, and, after
// the clients closed, that every connection's opened and closed events
// reached the rule.

// observers is how many connections watch every topic's presence.
const observers = 3

// presenceCheck is what the presence variant saw.
type presenceCheck struct {
	// Principals checked (topic x principal), and how many of them the
	// store's roster or an observer got wrong.
	Principals, RostersWrong, ViewsWrong int
	// Announcements the observers received, repeats included.
	Announcements, RepeatedAnnouncements int
	// Lifecycle events at the rule: distinct connection ids opened and
	// closed, events in all, and the connections the gateway accepted.
	Opened, Closed, LifecycleEvents int
	Connected, ClosedOwed           int
	Wrong                           []string
}

func (p presenceCheck) ok() bool {
	return p.RostersWrong == 0 && p.ViewsWrong == 0 && p.Opened == p.Connected && p.Closed == p.ClosedOwed
}

func (p presenceCheck) rows() [][2]string {
	return [][2]string{
		{"presence: principals checked (topic x principal)", fmt.Sprint(p.Principals)},
		{"presence: rosters wrong (must be 0)", fmt.Sprint(p.RostersWrong)},
		{"presence: observers' views wrong (must be 0)", fmt.Sprint(p.ViewsWrong)},
		{"presence: announcements received / of them repeats", fmt.Sprintf("%d / %d", p.Announcements, p.RepeatedAnnouncements)},
		{"lifecycle: connections opened / their opened events (must match)", fmt.Sprintf("%d / %d", p.Connected, p.Opened)},
		{"lifecycle: connections closed / their closed events (must match)", fmt.Sprintf("%d / %d", p.ClosedOwed, p.Closed)},
		{"lifecycle: events at the rule, repeats included", fmt.Sprint(p.LifecycleEvents)},
	}
}

// announced is an observer's last word on a principal in a topic.
type announced struct {
	seq     int64
	present bool
}

// observer watches every topic's joins and leaves on one connection.
type observer struct {
	ws   *websocket.Conn
	mu   sync.Mutex
	view map[string]announced // topic + " " + ptype:sub
	ids  map[string]int       // topic + " " + announcement id
}

// lifecycleLog collects the lifecycle events at a rule.
type lifecycleLog struct {
	mu             sync.Mutex
	opened, closed map[string]bool
	events         int
}

// presenceRun is the presence variant's part of a run.
type presenceRun struct {
	obs  []*observer
	life *lifecycleLog
}

// startPresence puts the lifecycle rule on the bus and connects the
// observers, each subscribed to every topic with presence.
func (rn *run) startPresence(ctx, runCtx context.Context) (*presenceRun, error) {
	pr := &presenceRun{life: &lifecycleLog{opened: map[string]bool{}, closed: map[string]bool{}}}
	l := pr.life
	err := rn.s.Bus.PutRule(eventbus.Rule{
		Name: "soak-lifecycle", Bus: rn.s.BusName,
		Pattern: `{"source":["wsgate"],"detail-type":["` + publish.ConnectionOpened + `","` + publish.ConnectionClosed + `"]}`,
		Target: func(_ context.Context, event []byte) error {
			var e struct {
				DetailType string                  `json:"detail-type"`
				Detail     publish.ConnectionEvent `json:"detail"`
			}
			if err := json.Unmarshal(event, &e); err != nil {
				return err
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			l.events++
			if e.DetailType == publish.ConnectionOpened {
				l.opened[e.Detail.ConnectionID] = true
			} else {
				l.closed[e.Detail.ConnectionID] = true
			}
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	minter := auth.Minter{Alg: "HS256", Key: []byte(rn.s.Secret)}
	for i := range observers {
		tok, err := minter.Token(auth.Grant{Sub: fmt.Sprintf("observer-%d", i), Topics: []string{"soak.>"}})
		if err != nil {
			return nil, err
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ws, _, err := websocket.Dial(dctx, rn.s.WebSocketURL+"?token="+tok, nil)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("soak: observer: %w", err)
		}
		ws.SetReadLimit(1 << 20)
		o := &observer{ws: ws, view: map[string]announced{}, ids: map[string]int{}}
		pr.obs = append(pr.obs, o)
		go o.read(runCtx)
		for _, t := range rn.topics {
			b, _ := json.Marshal(map[string]any{"type": "subscribe", "topic": t, "presence": true})
			if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
				return nil, fmt.Errorf("soak: observer: %w", err)
			}
		}
		go o.ping(runCtx)
	}
	// Once the observers' own subscriptions are on their rosters, each
	// asks who is there already, as a client does: announcements count
	// from when it watches.
	time.Sleep(3 * time.Second)
	for _, o := range pr.obs {
		for _, t := range rn.topics {
			b, _ := json.Marshal(map[string]any{"type": "presence", "topic": t})
			if err := o.ws.Write(ctx, websocket.MessageText, b); err != nil {
				return nil, fmt.Errorf("soak: observer: %w", err)
			}
		}
	}
	return pr, nil
}

// read records every join and leave; the highest seq of a principal wins.
func (o *observer) read(ctx context.Context) {
	for {
		_, b, err := o.ws.Read(ctx)
		if err != nil {
			return
		}
		var m struct {
			Type, ID, Topic, PType, Sub string
			Seq                         int64
			Members                     []struct{ PType, Sub string }
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if m.Type == "presence" {
			o.mu.Lock()
			for _, w := range m.Members {
				k := m.Topic + " " + w.PType + ":" + w.Sub
				if _, heard := o.view[k]; !heard {
					o.view[k] = announced{present: true} // seq 0: any announcement is newer
				}
			}
			o.mu.Unlock()
			continue
		}
		if m.Type != "join" && m.Type != "leave" {
			continue
		}
		k := m.Topic + " " + m.PType + ":" + m.Sub
		o.mu.Lock()
		o.ids[m.Topic+" "+m.ID]++ // an id is unique within its topic
		if a, ok := o.view[k]; !ok || m.Seq > a.seq {
			o.view[k] = announced{seq: m.Seq, present: m.Type == "join"}
		}
		o.mu.Unlock()
	}
}

// ping keeps the observer's connection from API Gateway's idle cut.
func (o *observer) ping(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = o.ws.Close(websocket.StatusNormalClosure, "")
			return
		case <-t.C:
			_ = o.ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
		}
	}
}

// checkRosters waits (up to settle) until every roster and every
// observer agrees with the table's subscriptions, and counts what does
// not by then.
func (pr *presenceRun) checkRosters(ctx context.Context, rn *run, settle time.Duration, c *presenceCheck) error {
	st := store.New(dynamolocal.Client(rn.s.DynamoDBEndpoint), rn.s.Table)
	deadline := time.Now().Add(settle)
	for {
		*c = presenceCheck{}
		if err := pr.compare(ctx, st, rn.topics, c); err != nil {
			return err
		}
		if (c.RostersWrong == 0 && c.ViewsWrong == 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	for _, o := range pr.obs {
		o.mu.Lock()
		for _, n := range o.ids {
			c.Announcements += n
			c.RepeatedAnnouncements += n - 1
		}
		o.mu.Unlock()
	}
	return nil
}

// compare checks each topic's principals: those subscribed now (the
// subscriber index) and those any observer heard of.
func (pr *presenceRun) compare(ctx context.Context, st *store.Store, topics []string, c *presenceCheck) error {
	for _, t := range topics {
		truth := map[string]auth.Identity{}
		tp, err := topic.ParsePattern(t)
		if err != nil {
			return err
		}
		var cursor store.Cursor
		for {
			subs, next, err := st.TopicSubscribers(ctx, tp, cursor, 0)
			if err != nil {
				return err
			}
			for _, s := range subs {
				truth[store.RosterKey(s.Identity)] = s.Identity
			}
			if cursor = next; next == "" {
				break
			}
		}
		all := map[string]auth.Identity{}
		for k, id := range truth {
			all[k] = id
		}
		for _, o := range pr.obs {
			o.mu.Lock()
			for k := range o.view {
				if who, ok := strings.CutPrefix(k, t+" "); ok {
					if _, known := all[who]; !known {
						all[who] = identityOf(who)
					}
				}
			}
			o.mu.Unlock()
		}
		keys := make([]string, 0, len(all))
		for k := range all {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			_, want := truth[k]
			c.Principals++
			present, ann, err := st.RosterState(ctx, t, all[k])
			if err != nil {
				return err
			}
			if present != want || ann != want {
				c.RostersWrong++
				c.note("%s %s: subscribed %v, roster says present %v, announced %v", t, k, want, present, ann)
			}
			for i, o := range pr.obs {
				o.mu.Lock()
				got := o.view[t+" "+k]
				o.mu.Unlock()
				if got.present != want {
					c.ViewsWrong++
					c.note("%s %s: subscribed %v, observer %d heard %v (seq %d)", t, k, want, i, got.present, got.seq)
				}
			}
		}
	}
	return nil
}

func (c *presenceCheck) note(format string, a ...any) {
	if len(c.Wrong) < 10 {
		c.Wrong = append(c.Wrong, fmt.Sprintf(format, a...))
	}
}

// identityOf reads "ptype:sub" as the observers' frames name principals.
func identityOf(who string) auth.Identity {
	if who == "anonymous:" {
		return auth.Identity{Anonymous: true}
	}
	if ptype, sub, ok := strings.Cut(who, ":"); ok {
		return auth.Identity{Type: ptype, Sub: sub}
	}
	return auth.Identity{Sub: who}
}

// checkLifecycle waits (up to settle) until every connection record gone
// from the table has its closed event, and fills c's lifecycle figures:
// connected is what the gateway accepted, leftover the records still in
// the table.
func (pr *presenceRun) checkLifecycle(connected int64, leftover int, settle time.Duration, c *presenceCheck) {
	c.Connected, c.ClosedOwed = int(connected), int(connected)-leftover
	deadline := time.Now().Add(settle)
	for {
		l := pr.life
		l.mu.Lock()
		c.Opened, c.Closed, c.LifecycleEvents = len(l.opened), len(l.closed), l.events
		l.mu.Unlock()
		if (c.Opened == c.Connected && c.Closed == c.ClosedOwed) || time.Now().After(deadline) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

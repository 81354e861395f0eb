package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	client "github.com/wsgate/wsgate/clients/go"
	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/protocol"
)

// StormTopic is the topic every storm client subscribes to, and the one
// the storm's event is published on; stormOwnTopic is client i's own.
const StormTopic = "storm.all"

func stormOwnTopic(i int) string { return "storm.c" + strconv.Itoa(i) }

// StormClientOptions configure one process's share of the storm's clients.
type StormClientOptions struct {
	URL      string
	Secret   string
	From, To int // client indexes [From, To)
	// Rate is how many new connections a second this process opens, its
	// share of the rate API Gateway admits: every dial, first or after a
	// drop, waits its turn.
	Rate float64
	// Sources dials client i from its own loopback address (StormSource),
	// as clients on AWS come from many addresses; otherwise 127.0.0.1.
	Sources bool
	// Every is how often a status line is written (default 200 ms).
	Every time.Duration
}

// StormStatus is a storm client process's status line, written every
// StormClientOptions.Every on its output, one JSON object a line.
type StormStatus struct {
	Clients int `json:"clients"`
	// Ready: clients connected, authenticated and subscribed to both
	// their topics now.
	Ready int `json:"ready"`
	// MinSessions is the fewest ready sessions any client has had: 1
	// once all connected, 2 once all are back after the cut.
	MinSessions int `json:"min_sessions"`
	// Received: clients that got the storm event; Repeats: its
	// deliveries to a client that already had it.
	Received int `json:"received"`
	Repeats  int `json:"repeats"`
	// Errors are what the gateway told the clients, by kind: "HTTP 429"
	// (a refused handshake), "auth_timeout" (an auth_response's error),
	// "unavailable" (an error frame's code), "internal" (API Gateway's
	// {"message":"Internal server error"}), "dial" (no handshake at all).
	Errors map[string]int `json:"errors"`
}

// StormSource is client i's loopback source address: 127.10.0.1 onwards,
// 254 to a /24, never 127.0.0.1 (Linux routes all of 127.0.0.0/8 to lo).
func StormSource(i int) net.IP {
	n := i / 254
	return net.IPv4(127, byte(10+n/256), byte(n%256), byte(1+i%254))
}

// stormProcess holds one process's storm clients.
type stormProcess struct {
	o      StormClientOptions
	admit  <-chan time.Time
	http   *http.Client
	minter auth.Minter

	mu       sync.Mutex
	ready    int
	sessions []int    // ready sessions per client (index i-From)
	got      []string // the first storm event id each client received
	repeats  int
	errs     map[string]int
}

// stormBackoff is the Go client's reconnect backoff, at its defaults.
func stormBackoff() backoff.Policy {
	return backoff.Policy{Base: client.DefaultMinBackoff, Max: client.DefaultMaxBackoff, Jitter: backoff.Equal}
}

// sourceKey carries a dial's source address in its context.
type sourceKey struct{}

// RunStormClients is the storm client process: it runs clients From..To
// until ctx ends, each reconnecting with the Go client's backoff whenever
// its connection ends, and writes a StormStatus line every o.Every.
func RunStormClients(ctx context.Context, o StormClientOptions, out io.Writer) error {
	if o.To <= o.From || o.Rate <= 0 {
		return fmt.Errorf("bench: storm clients [%d, %d) at %g/s: want a range and a positive rate", o.From, o.To, o.Rate)
	}
	if o.Every <= 0 {
		o.Every = 200 * time.Millisecond
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.Rate))
	defer tick.Stop()
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: 30 * time.Second}
		if ip, ok := ctx.Value(sourceKey{}).(net.IP); ok {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
		return d.DialContext(ctx, network, addr)
	}
	p := &stormProcess{
		o: o, admit: tick.C, minter: auth.Minter{Alg: "HS256", Key: []byte(o.Secret)},
		// No keep-alive: a refused handshake's connection, from one
		// client's address, must not carry another client's.
		http:     &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}},
		sessions: make([]int, o.To-o.From), got: make([]string, o.To-o.From), errs: map[string]int{},
	}
	var wg sync.WaitGroup
	for i := o.From; i < o.To; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(ctx, i)
		}()
	}
	enc := json.NewEncoder(out)
	every := time.NewTicker(o.Every)
	defer every.Stop()
	for {
		if err := enc.Encode(p.status()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-every.C:
		}
	}
}

func (p *stormProcess) status() StormStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := StormStatus{Clients: len(p.sessions), Ready: p.ready, Repeats: p.repeats, Errors: make(map[string]int, len(p.errs)), MinSessions: -1}
	for i, n := range p.sessions {
		if st.MinSessions < 0 || n < st.MinSessions {
			st.MinSessions = n
		}
		if p.got[i] != "" {
			st.Received++
		}
	}
	for k, v := range p.errs {
		st.Errors[k] = v
	}
	return st
}

func (p *stormProcess) fail(kind string) {
	p.mu.Lock()
	p.errs[kind]++
	p.mu.Unlock()
}

// run is client i: admitted, connected, authenticated and subscribed,
// again after every end, waiting the Go client's backoff between tries
// (its defaults, equal jitter), reset by a session that got ready.
func (p *stormProcess) run(ctx context.Context, i int) {
	tok, err := p.minter.Token(auth.Grant{Sub: "storm-" + strconv.Itoa(i), Topics: []string{"storm.>"}, TTL: 2 * time.Hour})
	if err != nil {
		p.fail("token")
		return
	}
	for attempt := 0; ; attempt++ {
		select {
		case <-ctx.Done():
			return
		case <-p.admit:
		}
		if p.session(ctx, i, tok) {
			attempt = 0
		}
		if backoff.Sleep(ctx, stormBackoff().Delay(attempt)) != nil {
			return
		}
	}
}

// session is one connection of client i; it reports whether it got ready.
func (p *stormProcess) session(ctx context.Context, i int, tok string) (wasReady bool) {
	dctx := ctx
	if p.o.Sources {
		dctx = context.WithValue(ctx, sourceKey{}, StormSource(i))
	}
	dctx, cancel := context.WithTimeout(dctx, 30*time.Second)
	ws, resp, err := websocket.Dial(dctx, p.o.URL+"?envelope=1", &websocket.DialOptions{HTTPClient: p.http})
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
				p.fail("HTTP " + strconv.Itoa(resp.StatusCode))
			} else {
				p.fail("dial")
			}
		}
		return false
	}
	defer ws.CloseNow()
	ready := false
	defer func() {
		if ready {
			p.mu.Lock()
			p.ready--
			p.mu.Unlock()
		}
	}()
	write := func(v any) bool {
		b, err := protocol.Marshal(v)
		return err == nil && ws.Write(ctx, websocket.MessageText, b) == nil
	}
	// What was asked and not answered, as the Go client keeps it: at API
	// Gateway's "Internal server error" (which names no command) and past
	// the client's reply timeout, it is asked again (auth on an
	// authenticated connection refreshes it; subscribe is idempotent).
	var mu sync.Mutex
	authed := false
	subs := map[string]string{"s0": StormTopic, "s1": stormOwnTopic(i)}
	askAgain := func() {
		mu.Lock()
		again := !authed
		pending := maps.Clone(subs)
		mu.Unlock()
		if again {
			write(protocol.AuthRequest{ID: "auth", Token: tok})
			return
		}
		for id, t := range pending {
			write(protocol.SubscribeRequest{ID: id, Topic: t})
		}
	}
	if !write(protocol.AuthRequest{ID: "auth", Token: tok}) {
		return false
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		t := time.NewTicker(client.DefaultReplyTimeout)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
				mu.Lock()
				done := authed && len(subs) == 0
				mu.Unlock()
				if done {
					return
				}
				p.fail("reply timeout")
				askAgain()
			}
		}
	}()
	retries := 0
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			return ready
		}
		var h protocol.Header
		if json.Unmarshal(data, &h) != nil {
			continue
		}
		switch h.Type {
		case protocol.TypeAuthResponse:
			var a protocol.AuthResponse
			if json.Unmarshal(data, &a) != nil || !a.Success {
				p.fail(cmp.Or(a.Error, "auth refused"))
				return false // the gateway closes it
			}
			mu.Lock()
			first := !authed
			authed = true
			pending := maps.Clone(subs)
			mu.Unlock()
			if !first {
				continue
			}
			for id, t := range pending {
				if !write(protocol.SubscribeRequest{ID: id, Topic: t}) {
					return false
				}
			}
		case protocol.TypeSubscribed:
			mu.Lock()
			delete(subs, idString(h.ID))
			now := len(subs) == 0 && !ready
			mu.Unlock()
			if now {
				ready = true
				p.mu.Lock()
				p.ready++
				p.sessions[i-p.o.From]++
				p.mu.Unlock()
			}
		case protocol.TypeError:
			var e protocol.Error
			_ = json.Unmarshal(data, &e)
			p.fail(cmp.Or(e.Code, "error"))
			id := idString(h.ID)
			mu.Lock()
			t, ok := subs[id]
			mu.Unlock()
			if ok && e.Code == protocol.CodeUnavailable {
				// As the Go client does: send it again, with backoff.
				retries++
				wait := stormBackoff().Delay(retries)
				go func() {
					if backoff.Sleep(ctx, wait) == nil {
						write(protocol.SubscribeRequest{ID: id, Topic: t})
					}
				}()
			}
		case protocol.TypeEvent:
			var e protocol.Event
			if json.Unmarshal(data, &e) == nil && e.Topic == StormTopic {
				p.mu.Lock()
				switch got := &p.got[i-p.o.From]; {
				case *got == "":
					*got = e.ID
				case *got == e.ID:
					p.repeats++
				}
				p.mu.Unlock()
			}
		case "":
			var m struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(data, &m) == nil && m.Message != "" {
				p.fail("internal") // API Gateway: the integration failed
				askAgain()
			}
		}
	}
}

// idString is a reply's id as the string it was sent as.
func idString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return string(raw)
	}
	return s
}

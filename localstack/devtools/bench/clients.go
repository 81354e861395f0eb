// Package bench measures wsgate's fan-out on the local stack: many real
// WebSocket clients in processes of their own, the @connections API slowed
// to a chosen latency, and the naive Scan-and-post fan-out of the AWS
// samples measured side by side. `make bench` runs it.
package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgate/wsgate/shared/auth"
)

// Payload is what every benchmark event carries: an event label, its
// publish time and whether receivers keep per-delivery latencies.
type Payload struct {
	Label   string `json:"e"`
	Sent    int64  `json:"t"`
	Latency bool   `json:"lat,omitempty"`
}

// Topic is the benchmark topic an audience of n subscribes to.
func Topic(n int) string { return "bench.a" + strconv.Itoa(n) }

// ClientOptions configure a client process.
type ClientOptions struct {
	URL       string
	Secret    string
	From, To  int   // client indexes [From, To)
	Audiences []int // client i subscribes to Topic(a) for every a > i
	Parallel  int   // dials at once
}

// eventStats are one event's deliveries to this process.
type eventStats struct {
	count, first, last atomic.Int64
}

// clientProcess holds the connections of one client process.
type clientProcess struct {
	mu        sync.Mutex
	events    map[string]*eventStats
	latencies []int64
}

func (p *clientProcess) record(data []byte, at int64) {
	var pl Payload
	if json.Unmarshal(data, &pl) != nil || pl.Label == "" {
		return
	}
	p.mu.Lock()
	st, ok := p.events[pl.Label]
	if !ok {
		st = &eventStats{}
		p.events[pl.Label] = st
	}
	if pl.Latency {
		p.latencies = append(p.latencies, at-pl.Sent)
	}
	p.mu.Unlock()
	st.count.Add(1)
	st.first.CompareAndSwap(0, at)
	for {
		last := st.last.Load()
		if at <= last || st.last.CompareAndSwap(last, at) {
			break
		}
	}
	if first := st.first.Load(); at < first {
		st.first.CompareAndSwap(first, at)
	}
}

// RunClients is the client process: it connects every client, says how it
// went, then answers commands on in (one JSON object a line) on out:
// {"cmd":"stats","event":label} → {"count","first","last"} (unix ns);
// {"cmd":"latencies"} → {"latencies_ns":[...]} (and forgets them);
// {"cmd":"quit"}.
func RunClients(ctx context.Context, o ClientOptions, in io.Reader, out io.Writer) error {
	p := &clientProcess{events: map[string]*eventStats{}}
	start := time.Now()
	conns, failed, msg := p.dialAll(ctx, o)
	enc := json.NewEncoder(out)
	_ = enc.Encode(map[string]any{"connected": int64(o.To-o.From) - failed, "failed": failed, "ms": time.Since(start).Milliseconds(), "error": msg})
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		var cmd struct {
			Cmd   string `json:"cmd"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			_ = enc.Encode(map[string]string{"error": err.Error()})
			continue
		}
		if cmd.Cmd == "quit" {
			for _, c := range conns {
				if c != nil {
					_ = c.CloseNow()
				}
			}
			return nil
		}
		_ = enc.Encode(p.answer(cmd.Cmd, cmd.Event))
	}
	return sc.Err()
}

// dialAll connects clients From..To, Parallel at a time, each subscribed
// (push-only) to the audiences it belongs to, and reads their frames; it
// returns the connections, how many failed and the first error.
func (p *clientProcess) dialAll(ctx context.Context, o ClientOptions) ([]*websocket.Conn, int64, string) {
	minter := auth.Minter{Alg: "HS256", Key: []byte(o.Secret)}
	dialer := &net.Dialer{Timeout: 30 * time.Second}
	client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, MaxIdleConnsPerHost: -1}}
	var failed atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, max(o.Parallel, 1))
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, o.To-o.From)
	for i := o.From; i < o.To; i++ {
		var topics []string
		for _, a := range o.Audiences {
			if i < a {
				topics = append(topics, Topic(a))
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			tok, err := minter.Token(auth.Grant{Sub: "b" + strconv.Itoa(i), Subscribe: topics, Mode: auth.ModePush, TTL: 2 * time.Hour})
			if err != nil {
				failed.Add(1)
				return
			}
			dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			ws, _, err := websocket.Dial(dctx, o.URL+"?token="+tok, &websocket.DialOptions{HTTPClient: client})
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i-o.From] = ws
			go p.read(ws)
		}()
	}
	wg.Wait()
	msg, _ := firstErr.Load().(string)
	return conns, failed.Load(), msg
}

// read records every frame a client receives.
func (p *clientProcess) read(ws *websocket.Conn) {
	for {
		_, data, err := ws.Read(context.Background())
		if err != nil {
			return
		}
		p.record(data, time.Now().UnixNano())
	}
}

// answer is the reply to a stats or latencies command.
func (p *clientProcess) answer(cmd, event string) any {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch cmd {
	case "stats":
		st := p.events[event]
		if st == nil {
			return map[string]int64{"count": 0}
		}
		return map[string]int64{"count": st.count.Load(), "first": st.first.Load(), "last": st.last.Load()}
	case "latencies":
		l := p.latencies
		p.latencies = nil
		return map[string]any{"latencies_ns": l}
	}
	return map[string]string{"error": "unknown command " + cmd}
}

// ParseAudiences reads "100,1000,10000".
func ParseAudiences(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("audience %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

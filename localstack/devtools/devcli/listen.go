package devcli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	client "github.com/wsgate/wsgate/clients/go"
	"github.com/wsgate/wsgate/shared/protocol"
)

// Listen connects, subscribes, prints every message as a JSON line and sends
// each line typed on standard input as a frame. It runs the Go client
// (clients/go): it reconnects with backoff, resumes every topic from the
// last event it printed, and prints each event once, in order, in the gateway envelope.
// --raw instead prints exactly what one connection receives, and ends with it.
func Listen(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("listen", st)
	var t tokenFlags
	t.register(fs)
	endpoint := fs.String("url", envOr("WSGATE_URL", "ws://127.0.0.1:4510/"), "WebSocket endpoint")
	token := fs.String("token", "", "token (default: mint one from the claim flags, afresh for every connect, when --sub is given)")
	var subscribe list
	fs.Var(&subscribe, "subscribe", "patterns to subscribe to after connecting (repeat or comma-separate)")
	scope := fs.String("topic", "", "connect scoped to this topic (push-only)")
	since := fs.Uint64("since", 0, "with --topic: start after this sequence number (replays the history after it)")
	raw := fs.Bool("raw", false, "one connection, frames exactly as the gateway sends them; no reconnect, resume or dedup")
	envelope := fs.Bool("envelope", false, "with --raw: receive events in the gateway envelope, with seq")
	bus := fs.Bool("bus", false, "print every event on the local stack's bus instead (lifecycle, client publishes, backends' events) as JSON lines")
	awsEndpoint := fs.String("endpoint", envOr("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"), "with --bus: the local stack's AWS endpoint")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bus {
		return listenBus(ctx, st, *awsEndpoint)
	}
	if *since > 0 && *scope == "" {
		return errors.New("--since needs --topic")
	}
	tokenFor := func(context.Context) (string, error) {
		if *token != "" || t.sub == "" {
			return *token, nil
		}
		return t.mint()
	}
	if *raw {
		return rawListen(ctx, st, *endpoint, tokenFor, subscribe, *scope, *since, *envelope)
	}

	lines := json.NewEncoder(st.Out)
	lines.SetEscapeHTML(false)
	o := client.Options{
		URL: *endpoint, Token: tokenFor, Topics: subscribe, Scope: *scope,
		OnEvent: func(e client.Event) {
			ev := protocol.Event{Type: protocol.TypeEvent, Topic: e.Topic, Seq: e.Seq, ID: e.ID, Time: e.Time.UTC().Format(time.RFC3339Nano), Data: e.Data}
			if e.Data == nil {
				ev.DataBase64 = base64.StdEncoding.EncodeToString(e.Binary)
			}
			_ = lines.Encode(ev)
		},
		OnGap: func(g client.Gap) {
			_ = lines.Encode(map[string]any{"type": "gap", "topic": g.Topic, "after": g.After, "error": g.Err.Error()})
		},
		OnReply: func(b []byte) { fmt.Fprintln(st.Out, string(jsonLine(websocket.MessageText, b))) },
		OnState: func(c client.StateChange) {
			switch {
			case c.State == client.Connected:
				fmt.Fprintf(st.Err, "connected to %s\n", *endpoint)
			case c.State == client.Disconnected && c.Err != nil && c.Wait > 0:
				fmt.Fprintf(st.Err, "disconnected (%v); reconnecting in %s\n", c.Err, c.Wait.Round(time.Millisecond))
			}
		},
	}
	if *scope != "" && *since > 0 {
		o.Positions = map[string]uint64{*scope: *since}
	}
	c, err := client.New(o)
	if err != nil {
		return err
	}
	if st.In != nil {
		go func() {
			sc := bufio.NewScanner(st.In)
			sc.Buffer(make([]byte, 64*1024), 1<<20)
			for sc.Scan() {
				if line := strings.TrimSpace(sc.Text()); line != "" {
					if err := c.Send(ctx, []byte(line)); err != nil {
						fmt.Fprintf(st.Err, "not sent: %v\n", err)
					}
				}
			}
		}()
	}
	err = c.Run(ctx)
	var refused *client.RefusedError
	if errors.As(err, &refused) {
		return fmt.Errorf("connect refused: HTTP %d%s", refused.Status, reasonSuffix(refused.Reason))
	}
	return err
}

// rawListen is one plain connection printing every frame as it comes.
func rawListen(ctx context.Context, st Streams, endpoint string, tokenFor func(context.Context) (string, error), subscribe []string, scope string, since uint64, envelope bool) error {
	tok, err := tokenFor(ctx)
	if err != nil {
		return err
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	q := u.Query()
	for k, v := range map[string]string{"token": tok, "topic": scope} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if since > 0 {
		q.Set("since", strconv.FormatUint(since, 10))
	}
	if envelope {
		q.Set("envelope", "1")
	}
	u.RawQuery = q.Encode()

	ws, resp, err := websocket.Dial(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("connect refused: HTTP %d%s", resp.StatusCode, reasonSuffix(client.RefusalReason(resp.Body)))
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	fmt.Fprintf(st.Err, "connected to %s\n", redact(u))

	for _, p := range subscribe {
		cmd := jsonOut(map[string]string{"type": "subscribe", "topic": p})
		if err := ws.Write(ctx, websocket.MessageText, cmd); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if st.In != nil {
		go func() {
			sc := bufio.NewScanner(st.In)
			sc.Buffer(make([]byte, 64*1024), 1<<20)
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if line == "" {
					continue
				}
				if err := ws.Write(ctx, websocket.MessageText, []byte(line)); err != nil {
					return
				}
			}
		}()
	}
	go keepAlive(ctx, ws)
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			if s := websocket.CloseStatus(err); s != -1 {
				fmt.Fprintf(st.Err, "closed by the server: %d\n", s)
				return nil
			}
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		fmt.Fprintln(st.Out, string(jsonLine(typ, data)))
	}
}

// keepAlive sends a ping command every 4 minutes: API Gateway closes
// connections idle for 10.
func keepAlive(ctx context.Context, ws *websocket.Conn) {
	t := time.NewTicker(4 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = ws.Write(ctx, websocket.MessageText, []byte(`{"type":"ping"}`))
		}
	}
}

// jsonLine renders a message as one JSON line: JSON as it came, compacted;
// other text as {"text":...}; bytes as {"binary_base64":...}.
func jsonLine(typ websocket.MessageType, data []byte) []byte {
	if typ == websocket.MessageText && json.Valid(data) {
		var b bytes.Buffer
		if json.Compact(&b, data) == nil {
			return b.Bytes()
		}
	}
	var v map[string]string
	if typ == websocket.MessageBinary {
		v = map[string]string{"binary_base64": base64.StdEncoding.EncodeToString(data)}
	} else {
		v = map[string]string{"text": string(data)}
	}
	return jsonOut(v)
}

// jsonOut is v as compact JSON without HTML escaping: topic patterns keep
// their ">" rather than showing "\u003e". Every JSON the CLI prints or
// sends goes through it.
func jsonOut(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // maps of strings and plain structs always encode
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func redact(u *url.URL) string {
	c := *u
	q := c.Query()
	if q.Has("token") {
		q.Set("token", "redacted")
	}
	c.RawQuery = q.Encode()
	return c.String()
}

// reasonSuffix is ": reason" for an error message, or nothing.
func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

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
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Listen connects, subscribes, prints every message as a JSON line and sends
// each line typed on standard input as a frame.
func Listen(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("listen", st)
	var t tokenFlags
	t.register(fs)
	endpoint := fs.String("url", envOr("WSGATE_URL", "ws://127.0.0.1:4510/"), "WebSocket endpoint")
	token := fs.String("token", "", "token (default: mint one from the claim flags when --sub is given)")
	var subscribe list
	fs.Var(&subscribe, "subscribe", "patterns to subscribe to after connecting (repeat or comma-separate)")
	scope := fs.String("topic", "", "connect scoped to this topic (push-only)")
	envelope := fs.Bool("envelope", false, "receive events in the gateway envelope, with seq")
	since := fs.String("since", "", "with --topic: replay the history after this sequence number")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tok := *token
	if tok == "" && t.sub != "" {
		var err error
		if tok, err = t.mint(); err != nil {
			return err
		}
	}
	u, err := url.Parse(*endpoint)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	q := u.Query()
	for k, v := range map[string]string{"token": tok, "topic": *scope, "since": *since} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if *envelope {
		q.Set("envelope", "1")
	}
	u.RawQuery = q.Encode()

	ws, resp, err := websocket.Dial(ctx, u.String(), nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("connect refused: HTTP %d", resp.StatusCode)
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	fmt.Fprintf(st.Err, "connected to %s\n", redact(u))

	for _, p := range subscribe {
		cmd, _ := json.Marshal(map[string]string{"type": "subscribe", "topic": p})
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
	out, _ := json.Marshal(v)
	return out
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

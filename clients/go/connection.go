package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/coder/websocket"

	"github.com/wsgate/wsgate/shared/backoff"
	"github.com/wsgate/wsgate/shared/protocol"
)

// Run connects and keeps reconnecting until ctx ends (nil) or the gateway
// refuses the handshake for good: 400, 401, 403 or 404 (a *RefusedError).
func (c *Client) Run(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		c.state(StateChange{State: Connecting, Attempt: max(attempt, 0)})
		ws, err := c.dial(ctx)
		if err == nil {
			attempt = -1 // the next failure waits from the start
			err = c.session(ctx, ws)
		}
		if ctx.Err() != nil {
			return nil
		}
		var refused *RefusedError
		if errors.As(err, &refused) && refused.Status != http.StatusTooManyRequests && refused.Status < 500 {
			c.state(StateChange{State: Disconnected, Err: err})
			return err
		}
		wait := c.backoff(max(attempt, 0))
		c.state(StateChange{State: Disconnected, Attempt: max(attempt, 0), Err: err, Wait: wait})
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// backoff is the wait before attempt n+1: exponential, capped, with equal
// jitter (half fixed, half random) so a gateway restart does not bring
// every client back in the same instant.
func (c *Client) backoff(n int) time.Duration {
	return backoff.Policy{Base: c.o.MinBackoff, Max: c.o.MaxBackoff, Jitter: backoff.Equal}.Delay(n)
}

func (c *Client) dial(ctx context.Context) (*websocket.Conn, error) {
	u, _ := url.Parse(c.o.URL)
	q := u.Query()
	q.Set("envelope", "1")
	if c.o.Scope != "" {
		q.Set("topic", c.o.Scope)
		if last := c.Position(c.o.Scope); last > 0 {
			q.Set("since", strconv.FormatUint(last, 10))
		}
	}
	u.RawQuery = q.Encode()
	h := c.o.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if c.o.Token != nil {
		tok, err := c.o.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: token: %w", err)
		}
		if tok != "" {
			h.Set("Authorization", "Bearer "+tok)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(dctx, u.String(), &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, &RefusedError{Status: resp.StatusCode, Reason: RefusalReason(resp.Body)}
		}
		return nil, fmt.Errorf("client: connect: %w", err)
	}
	ws.SetReadLimit(256 << 10)
	return ws, nil
}

// frame is one message read from the connection, or the error ending it.
type frame struct {
	data []byte
	bin  bool
	err  error
}

// session serves one connection until it ends.
func (c *Client) session(ctx context.Context, ws *websocket.Conn) error {
	defer ws.CloseNow()
	c.mu.Lock()
	c.ws = ws
	c.stats.Connects++
	clear(c.asked) // a new connection asks everything again
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.ws = nil
		c.mu.Unlock()
	}()
	c.state(StateChange{State: Connected})

	frames := make(chan frame, 64)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		for {
			typ, data, err := ws.Read(rctx)
			select {
			case frames <- frame{data: data, bin: typ == websocket.MessageBinary, err: err}:
			case <-rctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()

	if err := c.start(ctx, ws); err != nil {
		return err
	}
	ping := time.NewTicker(c.o.PingEvery)
	defer ping.Stop()
	age := time.NewTimer(c.o.MaxAge)
	defer age.Stop()
	gaps := time.NewTicker(c.gapTick())
	defer gaps.Stop()
	answers := time.NewTicker(max(c.o.ReplyTimeout/4, 10*time.Millisecond))
	defer answers.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = ws.Close(websocket.StatusNormalClosure, "")
			return ctx.Err()
		case f := <-frames:
			if f.err != nil {
				c.interrupted()
				return f.err
			}
			c.handle(ctx, ws, f.data)
		case <-ping.C:
			if err := c.write(ctx, ws, protocol.PingRequest{}); err != nil {
				c.interrupted()
				return err
			}
		case <-age.C:
			_ = ws.Close(websocket.StatusNormalClosure, "reconnecting before the 2-hour limit")
			c.interrupted()
			return errors.New("client: connection reached MaxAge")
		case now := <-gaps.C:
			c.checkGaps(ctx, ws, now)
		case now := <-answers.C:
			c.checkAnswers(ctx, ws, now)
		}
	}
}

func (c *Client) gapTick() time.Duration {
	if c.o.GapWait < 0 {
		return time.Hour
	}
	return max(c.o.GapWait/4, 10*time.Millisecond)
}

func (c *Client) state(s StateChange) {
	if s.Err != nil {
		c.log.Info("connection "+s.State.String(), "attempt", s.Attempt, "error", s.Err.Error(), "retry_in", s.Wait)
	}
	if c.o.OnState != nil {
		c.o.OnState(s)
	}
}

package devcli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/wsgate/wsgate/localstack/aws/apigw"
	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/shared/queue"
)

// Node runs one more WebSocket front end of a running local stack, in its
// own process: API Gateway is a fleet, and one process can hold only as
// many connections as it may open files (20,000 on some machines). The
// node runs the route functions through the stack and registers so that
// @connections calls for its connections reach it.
func Node(ctx context.Context, args []string, st Streams) error {
	fs := newFlags("node", st)
	stackURL := fs.String("stack", "http://127.0.0.1:4566", "the local stack's AWS endpoint")
	listen := fs.String("listen", "127.0.0.1:0", "address for WebSocket clients and the node's @connections API")
	prefix := fs.String("prefix", stack.NodePrefix+"1", "connection-id prefix ("+stack.NodePrefix+"<digits>)")
	stage := fs.String("stage", "local", "stage name")
	idle := fs.Duration("idle-timeout", 10*time.Minute, "close connections idle this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !strings.HasPrefix(*prefix, stack.NodePrefix) {
		return fmt.Errorf("--prefix must start with %s", stack.NodePrefix)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(*stackURL, "/")
	inv := httpInvoker{base: base, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}}
	gw := apigw.New(apigw.Options{
		Stage: *stage, DomainName: ln.Addr().String(), IDPrefix: *prefix, IdleTimeout: *idle,
		Routes: apigw.Routes{
			Connect: stack.FnConnect, Disconnect: stack.FnDisconnect, Default: stack.FnMessage,
			DisconnectQueue: &apigw.QueueIntegration{Template: queue.DisconnectTemplate, Send: inv.sendDisconnect},
		},
		Invoker: inv,
		Log:     slog.New(slog.NewJSONHandler(st.Err, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	mux := http.NewServeMux()
	mux.HandleFunc("/_wsgate/faults", func(w http.ResponseWriter, r *http.Request) {
		var f apigw.Faults
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		gw.SetFaults(f)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if gw.ManagementPath(r) {
			gw.ServeManagement(w, r)
			return
		}
		gw.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	addr := ln.Addr().String()
	reg := jsonOut(map[string]string{"prefix": *prefix, "management": "http://" + addr})
	resp, err := http.Post(base+"/_wsgate/nodes", "application/json", bytes.NewReader(reg))
	if err != nil {
		return fmt.Errorf("register with the stack at %s: %w", base, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("register with the stack: HTTP %d", resp.StatusCode)
	}
	line := jsonOut(map[string]string{"websocket": "ws://" + addr + "/", "management": "http://" + addr})
	fmt.Fprintln(st.Out, string(line))

	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gw.CloseAll(closeCtx)
	return srv.Shutdown(closeCtx)
}

// httpInvoker runs functions through the stack's /_wsgate/invoke endpoint.
type httpInvoker struct {
	base   string
	client *http.Client
}

// sendDisconnect hands a $disconnect's message to the stack's disconnect
// queue.
func (h httpInvoker) sendDisconnect(ctx context.Context, body string) error {
	payload, err := json.Marshal(map[string]string{"messageBody": body})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/_wsgate/disconnects", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("the stack's disconnect queue: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

func (h httpInvoker) Invoke(ctx context.Context, name string, payload []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.base+"/_wsgate/invoke/"+name, bytes.NewReader(payload))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			ErrorMessage string `json:"errorMessage"`
		}
		_ = json.Unmarshal(out, &e)
		return nil, errors.New(e.ErrorMessage)
	}
	return out, nil
}

package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/backoff"
)

// The $disconnect route does not invoke the disconnect function. API
// Gateway sends each closed connection's id to an SQS queue (an AWS
// service integration with queue.DisconnectTemplate), and the function
// drains the queue in batches at a bounded concurrency (the stack's event
// source mapping). A cut of every connection at once (a network failure,
// a deployment) is then a queue that fills and empties, not a burst of
// synchronous invocations far over the account's Lambda concurrency: those
// are throttled, API Gateway never retries them, and while the burst holds
// the account's concurrency, $connect and $default of the clients coming
// back are throttled too (docs/capacity.md, the reconnect storm).

// disconnectAttempts bounds the tries to remove a closed connection in one
// invocation, disconnectRetry spaces them.
const disconnectAttempts = 3

var disconnectRetry = backoff.Policy{Base: 200 * time.Millisecond, Max: 2 * time.Second}

// HandleDisconnect is the disconnect function's handler: a batch from the
// disconnect queue (the stack's integration) or, for a $disconnect route
// integrated with the function directly, API Gateway's proxy request.
func (g *Gateway) HandleDisconnect(ctx context.Context, raw json.RawMessage) (any, error) {
	var probe struct {
		Records        []json.RawMessage `json:"Records"`
		RequestContext *json.RawMessage  `json:"requestContext"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		g.log.Error("unreadable invocation", "route", "$disconnect", "error", err.Error())
		return nil, nil // retrying unreadable input cannot help
	}
	if probe.Records != nil {
		var ev events.SQSEvent
		if err := json.Unmarshal(raw, &ev); err != nil {
			g.log.Error("unreadable SQS batch", "route", "$disconnect", "error", err.Error())
			return nil, nil
		}
		return g.DisconnectBatch(ctx, ev), nil
	}
	if probe.RequestContext == nil {
		g.log.Error("invocation is neither a disconnect queue batch nor a $disconnect request", "route", "$disconnect")
		return nil, nil
	}
	var req events.APIGatewayWebsocketProxyRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		g.log.Error("unreadable $disconnect request", "route", "$disconnect", "error", err.Error())
		return events.APIGatewayProxyResponse{StatusCode: http.StatusBadRequest}, nil
	}
	return g.Disconnect(ctx, req)
}

// DisconnectBatch removes the connections of a batch from the disconnect
// queue, all at once. A connection whose removal failed is reported as a
// batch item failure, so the queue gives it back (and, after its last
// receive, to the dead-letter queue); what is left behind then is removed
// by the first fan-out that meets the connection's 410, or by its TTL. A
// message repeated by SQS removes nothing the second time.
func (g *Gateway) DisconnectBatch(ctx context.Context, ev events.SQSEvent) events.SQSEventResponse {
	var (
		mu   sync.Mutex
		resp events.SQSEventResponse
		wg   sync.WaitGroup
	)
	for _, r := range ev.Records {
		id := strings.TrimSpace(r.Body)
		log := g.log.With("connection_id", id, "message_id", r.MessageId, "route", "$disconnect")
		if id == "" || strings.ContainsAny(id, " \t\r\n#") {
			// Not a connection id: retrying cannot make it one.
			log.Error("disconnect queue message is not a connection id", "body_bytes", len(r.Body))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !g.removeConnection(ctx, log, id) {
				mu.Lock()
				resp.BatchItemFailures = append(resp.BatchItemFailures, events.SQSBatchItemFailure{ItemIdentifier: r.MessageId})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return resp
}

// Disconnect handles $disconnect integrated with the function directly
// (API Gateway's proxy request): every item of the connection goes.
func (g *Gateway) Disconnect(ctx context.Context, req events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	rc := req.RequestContext
	log := g.log.With("connection_id", rc.ConnectionID, "request_id", rc.RequestID, "route", "$disconnect")
	if rc.ConnectionID == "" {
		log.Error("not a WebSocket $disconnect request: no requestContext.connectionId")
		return events.APIGatewayProxyResponse{StatusCode: http.StatusBadRequest}, nil
	}
	reason := ""
	if rc.DisconnectReason != nil {
		reason = *rc.DisconnectReason
	}
	log = log.With("status_code", rc.DisconnectStatusCode, "reason", reason)
	// API Gateway invokes $disconnect once, synchronously, at best: nothing
	// retries it.
	if !g.removeConnection(ctx, log, rc.ConnectionID) {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, nil
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// removeConnection removes every item of connection id, trying a few
// times; false when it could not.
func (g *Gateway) removeConnection(ctx context.Context, log *slog.Logger, id string) bool {
	var n int
	var err error
	for attempt := range disconnectAttempts {
		if n, err = g.store.DeleteConnection(ctx, id); err == nil || ctx.Err() != nil {
			break
		}
		log.Warn("disconnect cleanup failed; retrying", "attempt", attempt+1, "error", err.Error())
		_ = disconnectRetry.Wait(ctx, attempt)
	}
	if err != nil {
		log.Error("disconnect cleanup failed; a 410 on the next fan-out or the TTL will remove the connection", "error", err.Error())
		return false
	}
	log.Info("disconnected", "items_removed", n)
	return true
}

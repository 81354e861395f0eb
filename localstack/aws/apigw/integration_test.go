package apigw

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/queue"
)

func TestRenderTemplate_TheStacksDisconnectTemplate(t *testing.T) {
	reason := "Client-side close frame status code 1006"
	req := events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: "L0SM9cOF+vHc/Ihw=", EventType: "DISCONNECT", RouteKey: "$disconnect", DisconnectReason: &reason,
	}}
	rendered, err := renderTemplate(queue.DisconnectTemplate, contextVars(req))
	require.NoError(t, err)
	assert.Equal(t, "Action=SendMessage&MessageBody=L0SM9cOF%2BvHc%2FIhw%3D", rendered)
	body, err := sendMessageBody(rendered)
	require.NoError(t, err)
	assert.Equal(t, "L0SM9cOF+vHc/Ihw=", body, "the id survives the round trip")

	got, err := renderTemplate("a=$context.routeKey&r=$util.urlEncode($context.disconnectReason)&n=$context.nothing", contextVars(req))
	require.NoError(t, err)
	assert.Equal(t, "a=$disconnect&r=Client-side+close+frame+status+code+1006&n=", got, "an unknown variable renders empty, as in API Gateway")
}

func TestRenderTemplate_RefusesWhatItDoesNotRender(t *testing.T) {
	for _, tmpl := range []string{
		"Action=SendMessage&MessageBody=$input.body",
		"Action=SendMessage&MessageBody=$util.escapeJavaScript($context.connectionId)",
		"#set($x = 1)Action=SendMessage&MessageBody=$x",
	} {
		_, err := renderTemplate(tmpl, map[string]string{"connectionId": "c"})
		assert.Error(t, err, tmpl)
	}
}

func TestSendMessageBody_RefusesOtherRequests(t *testing.T) {
	for rendered, why := range map[string]string{
		"Action=DeleteMessage&MessageBody=x":                         "another action",
		"Action=SendMessage":                                         "no body",
		"Action=SendMessage&MessageBody=x&MessageAttribute.1.Name=a": "a parameter the local queues do not take",
		"Action=SendMessage&MessageBody=x&DelaySeconds=5":            "a parameter the local queues do not take",
		"Action=SendMessage&MessageBody=%zz":                         "not form-encoded",
	} {
		_, err := sendMessageBody(rendered)
		assert.Error(t, err, why)
	}
	q := &QueueIntegration{Template: "Action=SendMessage&MessageBody=$input.body", Send: func(context.Context, string) error { return nil }}
	assert.Error(t, q.Check(), "a template the gateway cannot render fails at start")
	q = &QueueIntegration{Template: queue.DisconnectTemplate}
	assert.Error(t, q.Check(), "no Send")
}

// With the queue integration, a closed connection's id goes to the queue
// and no function is invoked for $disconnect; a send that fails is lost,
// as API Gateway does not retry it.
func TestDisconnectQueue_ClosedConnectionIsSentNotInvoked(t *testing.T) {
	t.Parallel()
	sent := make(chan string, 4)
	fail := make(chan struct{}, 1)
	fns := newFunctions()
	tg := start(t, Options{Routes: Routes{DisconnectQueue: &QueueIntegration{
		Template: queue.DisconnectTemplate,
		Send: func(_ context.Context, body string) error {
			select {
			case <-fail:
				return errors.New("AccessDenied")
			default:
			}
			sent <- body
			return nil
		},
	}}}, fns)
	ws, id := tg.dial(t, nil)
	require.NoError(t, ws.CloseNow())
	select {
	case got := <-sent:
		assert.Equal(t, id, got)
	case <-time.After(5 * time.Second):
		t.Fatal("no message sent for the closed connection")
	}
	assert.Empty(t, fns.of(fnDisconnect), "the function is not invoked")

	fail <- struct{}{}
	ws, _ = tg.dial(t, nil)
	require.NoError(t, ws.CloseNow())
	assert.Never(t, func() bool { return len(sent) > 0 || len(fns.of(fnDisconnect)) > 0 }, 300*time.Millisecond, 20*time.Millisecond)
}

// Command hook is a publish hook for the tests (WSGATE_PUBLISH_HOOK): it
// denies messages that say "spam", rewrites "darn" to "****", takes too
// long on topic chat.slow, and allows the rest.
package main

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/wsgate/wsgate/shared/publish"
)

func main() {
	lambda.Start(func(ctx context.Context, req publish.HookRequest) (publish.HookAnswer, error) {
		var msg struct {
			Text string `json:"text"`
		}
		_ = json.Unmarshal(req.Payload, &msg)
		switch {
		case req.Topic == "chat.slow":
			time.Sleep(5 * time.Second)
			return publish.HookAnswer{Action: publish.HookAllow}, nil
		case strings.Contains(msg.Text, "spam"):
			return publish.HookAnswer{Action: publish.HookDeny, Reason: "no spam in " + req.Topic + ", " + req.From}, nil
		case strings.Contains(msg.Text, "darn"):
			b, _ := json.Marshal(map[string]string{"text": strings.ReplaceAll(msg.Text, "darn", "****"), "moderated": "yes"})
			return publish.HookAnswer{Action: publish.HookRewrite, Payload: b}, nil
		}
		return publish.HookAnswer{Action: publish.HookAllow}, nil
	})
}

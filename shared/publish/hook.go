package publish

import "encoding/json"

// A publish hook (WSGATE_PUBLISH_HOOK) is a Lambda function the message
// function asks, synchronously and within WSGATE_PUBLISH_HOOK_TIMEOUT,
// before it numbers a client's event, as AppSync Events' onPublish
// handler: allow it, deny it with a reason, or rewrite its payload and
// attributes. No answer in time, or a failed invocation, refuses the
// publish (unavailable): the check fails closed.

// Hook actions.
const (
	HookAllow   = "allow"
	HookDeny    = "deny"
	HookRewrite = "rewrite"
)

// HookRequest is the hook's event.
type HookRequest struct {
	Topic        string          `json:"topic"`
	Payload      json.RawMessage `json:"payload"`
	Attributes   json.RawMessage `json:"attributes,omitempty"`
	From         string          `json:"from"`
	Orgs         []string        `json:"orgs,omitempty"`
	ConnectionID string          `json:"connection_id"`
}

// HookAnswer is the hook's answer. A rewrite replaces the payload, and the
// attributes when given; the rewritten event is validated as any.
type HookAnswer struct {
	Action     string          `json:"action"`
	Reason     string          `json:"reason,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
}

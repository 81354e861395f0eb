package sqslocal

import (
	"encoding/base64"
	"strings"
	"time"
)

// ChangeMessageVisibility as SQS answers it: the new timeout counts from
// the call (0 makes the message visible at once), a message stays in
// flight at most 12 hours from its receive, and only the latest receipt
// handle of a message in flight changes it.

type changeMessageVisibilityInput struct {
	QueueUrl          *string
	ReceiptHandle     *string
	VisibilityTimeout *int64
}

// changeMessageVisibility answers ChangeMessageVisibility.
func (s *Service) changeMessageVisibility(body []byte, _ string) (any, *apiError) {
	var in changeMessageVisibilityInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if in.ReceiptHandle == nil || *in.ReceiptHandle == "" {
		return nil, errMissing("ReceiptHandle")
	}
	if in.VisibilityTimeout == nil {
		return nil, errMissing("VisibilityTimeout")
	}
	timeout := *in.VisibilityTimeout
	if timeout < 0 || timeout > maxVisibilityTimeout {
		return nil, newError(codeInvalidParameterValue,
			"Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and %d, if provided.", timeout, maxVisibilityTimeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.requestQueue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	handle := *in.ReceiptHandle
	id, ok := parseReceiptHandle(handle)
	if !ok {
		return nil, newError(codeReceiptHandleIsInvalid, "The input receipt handle %q is not a valid receipt handle.", handle)
	}
	now := time.Now()
	q.advance(now)
	m, ok := q.messages[id]
	if !ok || m.receiptHandle != handle {
		return nil, newError(codeInvalidParameterValue,
			"Value %s for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.", handle)
	}
	if m.state != stateInFlight {
		return nil, newError(codeMessageNotInflight, "The message referred to is not in flight.")
	}
	if held := int64(now.Sub(m.receivedAt) / time.Second); held+timeout > maxVisibilityTimeout {
		return nil, newError(codeInvalidParameterValue,
			"Value %d for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [%d seconds].", timeout, maxVisibilityTimeout)
	}
	if timeout == 0 {
		q.setState(m, stateVisible, time.Time{})
	} else {
		q.setState(m, stateInFlight, now.Add(time.Duration(timeout)*time.Second))
	}
	q.stats.VisibilityChanged++
	// Pollers wait for the earliest visibleAt they saw; this one may now
	// come sooner.
	q.notify()
	return struct{}{}, nil
}

// newReceiptHandle returns a fresh receipt handle for message id: opaque
// to clients, as SQS's are, but naming the message, so that a handle can
// be told apart from one that was never handed out.
func newReceiptHandle(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(id + "/" + newID()))
}

// parseReceiptHandle returns the message id a receipt handle names.
func parseReceiptHandle(handle string) (id string, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil {
		return "", false
	}
	id, rest, ok := strings.Cut(string(raw), "/")
	return id, ok && id != "" && rest != ""
}

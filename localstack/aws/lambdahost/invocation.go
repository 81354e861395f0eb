package lambdahost

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Error types the host itself reports, as AWS Lambda names them.
const (
	ErrorTypeExit       = "Runtime.ExitError"
	ErrorTypeTimeout    = "Sandbox.Timedout"
	ErrorTypeEntrypoint = "Runtime.InvalidEntrypoint"
	ErrorTypeTooLarge   = "Function.ResponseSizeTooLarge"
	ErrorTypeUnhandled  = "Unhandled"
)

// FunctionError is returned by Invoke when the function failed: it posted to
// /error (Type and Message from its errorType and errorMessage), crashed
// (Runtime.ExitError), timed out (Sandbox.Timedout) or failed to initialise
// (the type it posted to /runtime/init/error, or Runtime.ExitError).
type FunctionError struct {
	Type    string
	Message string
}

func (e *FunctionError) Error() string {
	return fmt.Sprintf("lambda function error: %s: %s", e.Type, e.Message)
}

// invocation is one request handed to one instance. Its mutable fields are
// guarded by Host.mu.
type invocation struct {
	fn      *function
	id      string
	traceID string
	payload []byte

	deadline time.Time     // set when dispatched
	timeout  time.Duration // deadline minus dispatch time

	timer     *time.Timer    // fires expire at the deadline
	failure   *FunctionError // why the host killed the process holding it
	delivered bool           // the runtime received it from /next
	counted   bool           // counts against the concurrency limits (admitLimitsLocked)
	answered  bool           // response or err is set
	response  []byte
	err       error

	// finished is closed, after answered is set, when the invocation is
	// over: the runtime asked for its next one or its process ended.
	finished chan struct{}
}

func newInvocation(fn *function, payload []byte) *invocation {
	return &invocation{
		fn:       fn,
		id:       newRequestID(),
		traceID:  newTraceID(),
		payload:  bytes.Clone(payload), // the caller may reuse its buffer once Invoke returns
		finished: make(chan struct{}),
	}
}

func (inv *invocation) timedOut() *FunctionError {
	return &FunctionError{
		Type:    ErrorTypeTimeout,
		Message: fmt.Sprintf("RequestId: %s Error: Task timed out after %.2f seconds", inv.id, inv.timeout.Seconds()),
	}
}

// exited describes a process that ended while holding inv, as AWS words it.
func (inv *invocation) exited(status string) *FunctionError {
	msg := "Runtime exited with error: " + status
	if status == "exit status 0" {
		msg = "Runtime exited without providing a reason"
	}
	return &FunctionError{
		Type:    ErrorTypeExit,
		Message: fmt.Sprintf("RequestId: %s Error: %s", inv.id, msg),
	}
}

// newRequestID returns a random (version 4) UUID, like Lambda's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// newTraceID returns an X-Ray trace header, not sampled.
func newTraceID() string {
	return fmt.Sprintf("Root=1-%08x-%s;Parent=%s;Sampled=0", time.Now().Unix(), randomHex(12), randomHex(8))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

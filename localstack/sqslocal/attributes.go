package sqslocal

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Queue attribute names.
const (
	attrVisibilityTimeout             = "VisibilityTimeout"
	attrDelaySeconds                  = "DelaySeconds"
	attrMessageRetentionPeriod        = "MessageRetentionPeriod"
	attrMaximumMessageSize            = "MaximumMessageSize"
	attrReceiveMessageWaitTimeSeconds = "ReceiveMessageWaitTimeSeconds"
	attrRedrivePolicy                 = "RedrivePolicy"
	attrQueueArn                      = "QueueArn"
	attrApproximateNumberOfMessages   = "ApproximateNumberOfMessages"
	attrApproximateNotVisible         = "ApproximateNumberOfMessagesNotVisible"
	attrApproximateDelayed            = "ApproximateNumberOfMessagesDelayed"
	attrCreatedTimestamp              = "CreatedTimestamp"
	attrLastModifiedTimestamp         = "LastModifiedTimestamp"
	attrFifoQueue                     = "FifoQueue"
)

// Limits SQS enforces. Since August 2025 a message may be up to 1 MiB
// (body plus attributes), the most MaximumMessageSize allows and its
// default; the messages of one SendMessageBatch together may be 1 MiB too.
const (
	maxMessageSize       = 1 << 20
	minMessageSize       = 1024
	maxBatchBytes        = 1 << 20
	maxBatchEntries      = 10
	maxVisibilityTimeout = 43200
	maxDelaySeconds      = 900
	maxWaitTimeSeconds   = 20
)

// queueConfig is the settable configuration of a queue.
type queueConfig struct {
	visibilityTimeout int // seconds
	delaySeconds      int
	retentionPeriod   int
	maxMessageSize    int
	waitTimeSeconds   int
	redrive           *redrivePolicy
	// opaque holds attributes stored and returned but without effect here
	// (Policy, KMS and SSE settings, RedriveAllowPolicy).
	opaque map[string]string
}

func defaultQueueConfig() queueConfig {
	return queueConfig{
		visibilityTimeout: 30,
		delaySeconds:      0,
		retentionPeriod:   345600,
		maxMessageSize:    maxMessageSize,
		waitTimeSeconds:   0,
		opaque:            map[string]string{},
	}
}

func (c queueConfig) clone() queueConfig {
	out := c
	out.opaque = make(map[string]string, len(c.opaque))
	for k, v := range c.opaque {
		out.opaque[k] = v
	}
	if c.redrive != nil {
		r := *c.redrive
		out.redrive = &r
	}
	return out
}

func (c queueConfig) visibility() time.Duration {
	return time.Duration(c.visibilityTimeout) * time.Second
}

func (c queueConfig) retention() time.Duration {
	return time.Duration(c.retentionPeriod) * time.Second
}

// redrivePolicy sends a message to a dead-letter queue once it has been
// received maxReceiveCount times and a receive would deliver it again.
type redrivePolicy struct {
	deadLetterTargetARN string
	maxReceiveCount     int
}

// parseRedrivePolicy reads the JSON document of the RedrivePolicy
// attribute; maxReceiveCount may be a number or a string holding one.
func parseRedrivePolicy(value string) (*redrivePolicy, *apiError) {
	var doc struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	invalid := func(reason string) *apiError {
		return newError(codeInvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: %s", value, reason)
	}
	if err := json.Unmarshal([]byte(value), &doc); err != nil {
		return nil, invalid("Redrive policy is not a valid JSON map.")
	}
	if doc.DeadLetterTargetArn == "" {
		return nil, invalid("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
	}
	if len(doc.MaxReceiveCount) == 0 {
		return nil, invalid("Redrive policy does not contain mandatory attribute: maxReceiveCount.")
	}
	raw := strings.Trim(string(doc.MaxReceiveCount), `"`)
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 1000 {
		return nil, invalid("Invalid value for maxReceiveCount: " + raw + ", valid values are from 1 to 1000 both inclusive.")
	}
	return &redrivePolicy{deadLetterTargetARN: doc.DeadLetterTargetArn, maxReceiveCount: n}, nil
}

// String renders the policy the way SQS returns it.
func (r *redrivePolicy) String() string {
	// JSON quoting, not Go's %q: an ARN with a control byte must come back
	// as JSON SQS clients can read.
	arn, _ := json.Marshal(r.deadLetterTargetARN)
	return fmt.Sprintf(`{"deadLetterTargetArn":%s,"maxReceiveCount":%d}`, arn, r.maxReceiveCount)
}

// opaqueAttributes are accepted and echoed back unchanged.
func isOpaqueAttribute(name string) bool {
	switch name {
	case "Policy", "RedriveAllowPolicy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled":
		return true
	}
	return false
}

func isReadOnlyAttribute(name string) bool {
	switch name {
	case attrQueueArn, attrApproximateNumberOfMessages, attrApproximateNotVisible, attrApproximateDelayed,
		attrCreatedTimestamp, attrLastModifiedTimestamp:
		return true
	}
	return false
}

// set applies one attribute. creating allows FifoQueue=false, which only
// CreateQueue accepts. deadLetterExists checks a redrive target.
func (c *queueConfig) set(name, value string, creating bool, deadLetterExists func(arn string) bool) *apiError {
	intRange := func(lo, hi int) (int, *apiError) {
		n, err := strconv.Atoi(value)
		if err != nil || n < lo || n > hi {
			return 0, newError(codeInvalidAttributeValue, "Invalid value for the parameter %s.", name)
		}
		return n, nil
	}
	var err *apiError
	switch {
	case name == attrVisibilityTimeout:
		c.visibilityTimeout, err = intRange(0, maxVisibilityTimeout)
	case name == attrDelaySeconds:
		c.delaySeconds, err = intRange(0, maxDelaySeconds)
	case name == attrMessageRetentionPeriod:
		c.retentionPeriod, err = intRange(60, 1209600)
	case name == attrMaximumMessageSize:
		c.maxMessageSize, err = intRange(minMessageSize, maxMessageSize)
	case name == attrReceiveMessageWaitTimeSeconds:
		c.waitTimeSeconds, err = intRange(0, maxWaitTimeSeconds)
	case name == attrRedrivePolicy:
		if value == "" {
			c.redrive = nil
			return nil
		}
		var policy *redrivePolicy
		if policy, err = parseRedrivePolicy(value); err == nil {
			if !deadLetterExists(policy.deadLetterTargetARN) {
				return newError(codeInvalidAttributeValue, "Value %s for parameter RedrivePolicy is invalid. Reason: Dead letter target does not exist.", value)
			}
			c.redrive = policy
		}
	case name == attrFifoQueue && creating:
		if value != "false" {
			return newError(codeInvalidAttributeValue, "Invalid value for the parameter FifoQueue. FIFO queues are not supported by this emulator.")
		}
	case isOpaqueAttribute(name):
		c.opaque[name] = value
	default:
		return newError(codeInvalidAttributeName, "Unknown Attribute %s.", name)
	}
	return err
}

// get returns the value of a settable attribute, if it has one.
func (c queueConfig) get(name string) (string, bool) {
	switch name {
	case attrVisibilityTimeout:
		return strconv.Itoa(c.visibilityTimeout), true
	case attrDelaySeconds:
		return strconv.Itoa(c.delaySeconds), true
	case attrMessageRetentionPeriod:
		return strconv.Itoa(c.retentionPeriod), true
	case attrMaximumMessageSize:
		return strconv.Itoa(c.maxMessageSize), true
	case attrReceiveMessageWaitTimeSeconds:
		return strconv.Itoa(c.waitTimeSeconds), true
	case attrRedrivePolicy:
		if c.redrive == nil {
			return "", false
		}
		return c.redrive.String(), true
	}
	v, ok := c.opaque[name]
	return v, ok
}

// settableNames lists the settable attributes a queue has values for.
func (c queueConfig) settableNames() []string {
	names := []string{attrVisibilityTimeout, attrDelaySeconds, attrMessageRetentionPeriod,
		attrMaximumMessageSize, attrReceiveMessageWaitTimeSeconds}
	if c.redrive != nil {
		names = append(names, attrRedrivePolicy)
	}
	opaque := make([]string, 0, len(c.opaque))
	for name := range c.opaque {
		opaque = append(opaque, name)
	}
	sort.Strings(opaque)
	return append(names, opaque...)
}

// sameAs reports whether the attributes given to CreateQueue match the
// queue's, the condition for CreateQueue to be idempotent. It compares
// canonical values, so "5" and "05" or two spellings of one redrive policy
// are equal; the name of the first difference is returned.
func (c queueConfig) sameAs(attributes map[string]string, deadLetterExists func(string) bool) (string, bool) {
	for name, value := range attributes {
		if name == attrFifoQueue {
			continue
		}
		want := c.clone()
		if err := want.set(name, value, true, deadLetterExists); err != nil {
			return name, false
		}
		got, _ := c.get(name)
		canonical, _ := want.get(name)
		if got != canonical {
			return name, false
		}
	}
	return "", true
}

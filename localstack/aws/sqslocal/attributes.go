package sqslocal

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxVisibilityTimeout is SQS's upper bound on VisibilityTimeout, seconds.
const maxVisibilityTimeout = 43200

// queueConfig is what a queue's attributes set.
type queueConfig struct {
	visibility time.Duration
	redrive    *redrivePolicy // nil without a dead-letter queue
}

// redrivePolicy sends a message to a dead-letter queue once it has been
// received maxReceiveCount times and a receive would deliver it again.
type redrivePolicy struct {
	deadLetterTargetARN string
	maxReceiveCount     int
}

// parseAttributes reads the attributes of CreateQueue, in name order so
// that errors are deterministic. Lock held.
func (s *Service) parseAttributes(attributes map[string]string) (queueConfig, error) {
	cfg := queueConfig{visibility: 30 * time.Second}
	for _, name := range slices.Sorted(maps.Keys(attributes)) {
		value := attributes[name]
		switch name {
		case "VisibilityTimeout":
			n, err := strconv.Atoi(value)
			if err != nil || n < 0 || n > maxVisibilityTimeout {
				return queueConfig{}, fmt.Errorf("%w: VisibilityTimeout %q is not 0 to %d seconds", ErrInvalidAttributeValue, value, maxVisibilityTimeout)
			}
			cfg.visibility = time.Duration(n) * time.Second
		case "RedrivePolicy":
			policy, err := parseRedrivePolicy(value)
			if err != nil {
				return queueConfig{}, err
			}
			if _, ok := s.queueByARN(policy.deadLetterTargetARN); !ok {
				return queueConfig{}, fmt.Errorf("%w: RedrivePolicy: dead-letter queue %s does not exist", ErrInvalidAttributeValue, policy.deadLetterTargetARN)
			}
			cfg.redrive = policy
		default:
			return queueConfig{}, fmt.Errorf("%w: %s is not supported by this emulator (VisibilityTimeout and RedrivePolicy are)", ErrInvalidAttributeName, name)
		}
	}
	return cfg, nil
}

// parseRedrivePolicy reads the JSON document of the RedrivePolicy
// attribute; maxReceiveCount may be a number or a string holding one.
func parseRedrivePolicy(value string) (*redrivePolicy, error) {
	var doc struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(value), &doc); err != nil {
		return nil, fmt.Errorf("%w: RedrivePolicy is not a JSON object: %w", ErrInvalidAttributeValue, err)
	}
	if doc.DeadLetterTargetArn == "" {
		return nil, fmt.Errorf("%w: RedrivePolicy has no deadLetterTargetArn", ErrInvalidAttributeValue)
	}
	raw := strings.Trim(string(doc.MaxReceiveCount), `"`)
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || n > 1000 {
		return nil, fmt.Errorf("%w: RedrivePolicy maxReceiveCount %q is not 1 to 1000", ErrInvalidAttributeValue, raw)
	}
	return &redrivePolicy{deadLetterTargetARN: doc.DeadLetterTargetArn, maxReceiveCount: n}, nil
}

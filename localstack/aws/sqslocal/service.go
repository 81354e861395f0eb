// Package sqslocal is an in-memory Amazon SQS standard queue for the local
// stack, as harsh as SQS where the functions can tell: they send to it with
// the real SDK client (SendMessage and SendMessageBatch in the AWS JSON 1.0
// protocol, with SQS's limits), an event source mapping drains it into a
// function the way Lambda's SQS poller does, with visibility timeouts,
// partial batch responses, redelivery and redrive to a dead-letter queue,
// and the function may bring a message back sooner with
// ChangeMessageVisibility on its receipt handle. Queues are made through
// the Go API; every other SQS operation, and every request member it does
// not implement, is refused rather than ignored.
package sqslocal

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// The region and account of every queue ARN and URL.
const (
	region    = "us-east-1"
	accountID = "000000000000"
)

// Options configures a Service.
type Options struct {
	// BaseURL prefixes queue URLs: BaseURL + "/000000000000/" + name, e.g.
	// "http://127.0.0.1:4566"; default DefaultBaseURL. Queues are found by
	// the path of a URL alone, so any host works in requests.
	BaseURL string
}

// DefaultBaseURL is the base of queue URLs when Options.BaseURL is empty.
const DefaultBaseURL = "http://localhost:4566"

// Service is an in-memory SQS. It is safe for concurrent use; one lock
// guards all queues, which keeps dead-letter moves between queues simple.
type Service struct {
	baseURL string

	mu     sync.Mutex
	queues map[string]*queue // by name; never deleted
	// esmPollers counts the event source mappings' pollers by queue URL.
	esmPollers map[string]int

	// life ends when Close is called; every event source mapping runs
	// under it.
	life    context.Context
	end     context.CancelFunc
	pollers sync.WaitGroup
}

// New returns an empty Service.
func New(opts Options) *Service {
	base := strings.TrimSuffix(opts.BaseURL, "/")
	if base == "" {
		base = DefaultBaseURL
	}
	life, end := context.WithCancel(context.Background())
	return &Service{baseURL: base, queues: map[string]*queue{}, esmPollers: map[string]int{}, life: life, end: end}
}

// Close stops every event source mapping, cancelling invocations in
// progress, and waits for them. Queues and their messages stay.
func (s *Service) Close() {
	s.mu.Lock()
	s.end()
	s.mu.Unlock()
	s.pollers.Wait()
}

// CreateQueue creates a standard queue and returns its URL. attributes may
// hold VisibilityTimeout (seconds, default 30) and RedrivePolicy (SQS's
// JSON document, naming a dead-letter queue that exists); anything else
// fails with ErrInvalidAttributeName. A name in use fails with
// ErrQueueNameExists.
func (s *Service) CreateQueue(name string, attributes map[string]string) (string, error) {
	if !validID(name) {
		return "", fmt.Errorf("create queue %q: %w: a queue name has 1 to 80 alphanumeric characters, hyphens or underscores",
			name, ErrInvalidParameterValue)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.queues[name]; ok {
		return "", fmt.Errorf("create queue %q: %w", name, ErrQueueNameExists)
	}
	cfg, err := s.parseAttributes(attributes)
	if err != nil {
		return "", fmt.Errorf("create queue %q: %w", name, err)
	}
	q := newQueue(name, arn(name), cfg)
	s.queues[name] = q
	return s.baseURL + "/" + accountID + "/" + name, nil
}

// QueueARN returns the ARN of the queue at queueURL.
func (s *Service) QueueARN(queueURL string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queueByURL(queueURL)
	if !ok {
		return "", fmt.Errorf("queue arn of %q: %w", queueURL, ErrQueueDoesNotExist)
	}
	return q.arn, nil
}

// Depth returns the approximate message counts SQS reports as
// ApproximateNumberOfMessages, ...NotVisible and ...Delayed.
func (s *Service) Depth(queueURL string) (visible, inFlight, delayed int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queueByURL(queueURL)
	if !ok {
		return 0, 0, 0, fmt.Errorf("depth of %q: %w", queueURL, ErrQueueDoesNotExist)
	}
	q.advance(time.Now())
	return q.visible, q.inFlight, q.delayed, nil
}

// QueueStats counts what happened to a queue's messages.
type QueueStats struct {
	// Received counts messages handed out; Redelivered those of them
	// handed out before (ApproximateReceiveCount over 1).
	Received, Redelivered int64
	// VisibilityChanged counts successful ChangeMessageVisibility calls.
	VisibilityChanged int64
	// DeadLettered counts messages moved to the dead-letter queue.
	DeadLettered int64
}

// Stats returns the counts of the queue at queueURL.
func (s *Service) Stats(queueURL string) (QueueStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queueByURL(queueURL)
	if !ok {
		return QueueStats{}, fmt.Errorf("stats of %q: %w", queueURL, ErrQueueDoesNotExist)
	}
	return q.stats, nil
}

// validID reports whether id has 1 to 80 alphanumeric characters, hyphens
// or underscores, the rule for queue names and batch entry ids.
func validID(id string) bool {
	if id == "" || len(id) > 80 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func arn(name string) string {
	return "arn:aws:sqs:" + region + ":" + accountID + ":" + name
}

// queueByURL finds a queue from the path of its URL,
// "/<account>/<name>"; the host is ignored. Lock held.
func (s *Service) queueByURL(raw string) (*queue, bool) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, false
	}
	account, name, ok := strings.Cut(strings.Trim(u.Path, "/"), "/")
	if !ok || account != accountID {
		return nil, false
	}
	q, ok := s.queues[name]
	return q, ok
}

// queueByARN finds a queue by ARN. Lock held.
func (s *Service) queueByARN(queueARN string) (*queue, bool) {
	name, ok := strings.CutPrefix(queueARN, arn(""))
	if !ok {
		return nil, false
	}
	q, ok := s.queues[name]
	return q, ok
}

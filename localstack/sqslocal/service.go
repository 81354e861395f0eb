// Package sqslocal is an in-memory Amazon SQS (standard queues) that speaks
// the AWS JSON 1.0 wire protocol the AWS SDKs use, plus a Lambda event
// source mapping that drains a queue into a function the way Lambda's SQS
// poller does. It lets the whole system run on one machine with the real
// SDK clients pointed at it.
package sqslocal

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// Options configures a Service. Zero values take the documented defaults.
type Options struct {
	Region    string // default "us-east-1"
	AccountID string // default "000000000000"
	// BaseURL prefixes queue URLs: BaseURL + "/" + AccountID + "/" + name,
	// e.g. "http://127.0.0.1:4566". When empty, URLs returned over HTTP use
	// the request's Host and those returned by CreateQueue use
	// DefaultBaseURL. Queues are found by the path of a URL alone, so any
	// host works in requests.
	BaseURL string
	Now     func() time.Time // default time.Now
}

// DefaultBaseURL is the base of queue URLs made without a request when
// Options.BaseURL is empty.
const DefaultBaseURL = "http://localhost:4566"

// Service is an in-memory SQS. It is safe for concurrent use; one lock
// guards all queues, which keeps dead-letter moves between queues simple.
type Service struct {
	opts Options

	mu     sync.Mutex
	queues map[string]*queue // by name

	done      chan struct{} // closed by Close
	closeOnce sync.Once
	mappings  map[int]context.CancelFunc
	nextID    int
	pollers   sync.WaitGroup
}

// New returns an empty Service.
func New(opts Options) *Service {
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.AccountID == "" {
		opts.AccountID = "000000000000"
	}
	opts.BaseURL = strings.TrimSuffix(opts.BaseURL, "/")
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{
		opts:     opts,
		queues:   map[string]*queue{},
		done:     make(chan struct{}),
		mappings: map[int]context.CancelFunc{},
	}
}

// Close stops every event source mapping and ends every long poll. Queues
// and their messages stay readable.
func (s *Service) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.mu.Lock()
		for id, cancel := range s.mappings {
			cancel()
			delete(s.mappings, id)
		}
		s.mu.Unlock()
	})
	s.pollers.Wait()
}

// CreateQueue creates a standard queue and returns its URL. Like SQS it is
// idempotent: asking again with attributes equal to the queue's returns the
// same URL, while different values fail with ErrQueueNameExists.
func (s *Service) CreateQueue(name string, attributes map[string]string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.createQueue(name, attributes, nil)
	if err != nil {
		return "", fmt.Errorf("create queue %q: %w", name, err)
	}
	return s.queueURL(DefaultBaseURL, q), nil
}

// QueueARN returns the ARN of the queue at url.
func (s *Service) QueueARN(queueURL string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.queueByURL(queueURL)
	if err != nil {
		return "", fmt.Errorf("queue arn of %q: %w", queueURL, err)
	}
	return q.arn, nil
}

// Depth returns the approximate message counts SQS reports as
// ApproximateNumberOfMessages, ...NotVisible and ...Delayed.
func (s *Service) Depth(queueURL string) (visible, inFlight, delayed int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, aerr := s.queueByURL(queueURL)
	if aerr != nil {
		return 0, 0, 0, fmt.Errorf("depth of %q: %w", queueURL, aerr)
	}
	q.advance(s.opts.Now())
	return q.visible, q.inFlight, q.delayed, nil
}

// validQueueName reports whether name has 1 to 80 alphanumeric characters,
// hyphens or underscores.
func validQueueName(name string) bool {
	return validID(name, 80)
}

// validID reports whether id has 1 to maxLen alphanumeric characters, hyphens
// or underscores, the rule for queue names and batch entry ids.
func validID(id string, maxLen int) bool {
	if id == "" || len(id) > maxLen {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// createQueue creates or, idempotently, finds a queue. Lock held.
func (s *Service) createQueue(name string, attributes, tags map[string]string) (*queue, *apiError) {
	if strings.HasSuffix(name, ".fifo") || attributes[attrFifoQueue] == "true" {
		return nil, newError(codeInvalidParameterValue, "FIFO queues are not supported by this emulator.")
	}
	if !validQueueName(name) {
		return nil, newError(codeInvalidParameterValue,
			"Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	if q, ok := s.queues[name]; ok {
		if attr, same := q.cfg.sameAs(attributes, s.deadLetterExists); !same {
			return nil, newError(codeQueueNameExists,
				"A queue already exists with the same name and a different value for attribute %s", attr)
		}
		return q, nil
	}
	cfg := defaultQueueConfig()
	// Apply in name order so that errors are deterministic.
	names := make([]string, 0, len(attributes))
	for n := range attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if isReadOnlyAttribute(n) {
			return nil, newError(codeInvalidAttributeName, "Unknown Attribute %s.", n)
		}
		if err := cfg.set(n, attributes[n], true, s.deadLetterExists); err != nil {
			return nil, err
		}
	}
	copied := make(map[string]string, len(tags))
	for k, v := range tags {
		copied[k] = v
	}
	q := newQueue(name, s.arn(name), cfg, copied, s.opts.Now())
	s.queues[name] = q
	return q, nil
}

func (s *Service) arn(name string) string {
	return "arn:aws:sqs:" + s.opts.Region + ":" + s.opts.AccountID + ":" + name
}

func (s *Service) queueURL(base string, q *queue) string {
	if s.opts.BaseURL != "" {
		base = s.opts.BaseURL
	}
	return base + "/" + s.opts.AccountID + "/" + q.name
}

// queueByURL finds a queue from the path of its URL,
// "/<account>/<name>"; the host is ignored. Lock held.
func (s *Service) queueByURL(raw string) (*queue, *apiError) {
	if raw == "" {
		return nil, errMissing("QueueUrl")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errQueueDoesNotExist()
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[0] != s.opts.AccountID {
		return nil, errQueueDoesNotExist()
	}
	q, ok := s.queues[parts[1]]
	if !ok {
		return nil, errQueueDoesNotExist()
	}
	return q, nil
}

// queueByARN finds a queue of this account and region by ARN. Lock held.
func (s *Service) queueByARN(arn string) *queue {
	prefix := s.arn("")
	if !strings.HasPrefix(arn, prefix) {
		return nil
	}
	return s.queues[strings.TrimPrefix(arn, prefix)]
}

func (s *Service) deadLetterExists(arn string) bool {
	return s.queueByARN(arn) != nil
}

// deleteQueue removes a queue and wakes its waiters. Lock held.
func (s *Service) deleteQueue(q *queue) {
	delete(s.queues, q.name)
	q.deleted = true
	q.purge()
	q.notify()
}

// wait blocks until ch is closed, the service clock reaches next (when a
// pending message becomes visible), the wall clock reaches deadline (the
// end of a long poll), ctx ends or the service closes; zero times are
// ignored. It reports false in the last two cases. Keeping the two clocks
// apart lets a frozen test clock hold delays without hanging long polls.
func (s *Service) wait(ctx context.Context, ch <-chan struct{}, next, deadline time.Time) bool {
	d := time.Duration(-1)
	if !next.IsZero() {
		// A millisecond of slack so the timer never fires just before the
		// moment it waits for.
		d = max(next.Sub(s.opts.Now())+time.Millisecond, 0)
	}
	if !deadline.IsZero() {
		if r := max(time.Until(deadline), 0); d < 0 || r < d {
			d = r
		}
	}
	var timeout <-chan time.Time
	if d >= 0 {
		timer := time.NewTimer(d)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-ch:
		return true
	case <-timeout:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

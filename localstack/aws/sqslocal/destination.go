package sqslocal

import "fmt"

// SendMessage puts a message on a queue for a sender inside the stack,
// such as Lambda's on-failure destinations, with SendMessage's rules: it
// fails with ErrQueueDoesNotExist or ErrInvalidParameterValue.
func (s *Service) SendMessage(queueURL, body string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queueByURL(queueURL)
	if !ok {
		return fmt.Errorf("send to %q: %w", queueURL, ErrQueueDoesNotExist)
	}
	m, delay, err := newMessage(sendMessageFields{MessageBody: &body}, "lambda.amazonaws.com")
	if err != nil {
		return fmt.Errorf("send to %q: %w: %s", queueURL, ErrInvalidParameterValue, err.message)
	}
	q.send(m, delay)
	q.notify()
	return nil
}

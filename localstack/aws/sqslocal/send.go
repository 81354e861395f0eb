package sqslocal

import (
	"strconv"
	"time"
)

// Limits SQS enforces on sends. Since August 2025 a message may be up to
// 1 MiB, and the messages of one SendMessageBatch together 1 MiB too.
const (
	maxMessageSize  = 1 << 20
	maxBatchBytes   = 1 << 20
	maxBatchEntries = 10
	maxDelaySeconds = 900
)

// sendMessage answers SendMessage.
func (s *Service) sendMessage(body []byte, sender string) (any, *apiError) {
	var in sendMessageInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.requestQueue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	m, delay, err := newMessage(in.sendMessageFields, sender)
	if err != nil {
		return nil, err
	}
	out := q.send(m, delay)
	q.notify()
	return out, nil
}

// sendMessageBatch answers SendMessageBatch: the batch as a whole must be
// well formed and within maxBatchBytes, then each entry succeeds or fails
// on its own.
func (s *Service) sendMessageBatch(body []byte, sender string) (any, *apiError) {
	var in sendMessageBatchInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	q, err := s.requestQueue(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	if err := checkBatch(in.Entries); err != nil {
		return nil, err
	}
	out := sendMessageBatchOutput{Successful: []sendMessageBatchResultEntry{}, Failed: []batchResultErrorEntry{}}
	for _, e := range in.Entries {
		m, delay, err := newMessage(e.sendMessageFields, sender)
		if err != nil {
			out.Failed = append(out.Failed, batchResultErrorEntry{Id: *e.Id, Code: err.code.queryCode(), Message: err.message, SenderFault: true})
			continue
		}
		out.Successful = append(out.Successful, sendMessageBatchResultEntry{Id: *e.Id, sendMessageOutput: q.send(m, delay)})
	}
	q.notify()
	return out, nil
}

// requestQueue finds the queue a request names. Lock held.
func (s *Service) requestQueue(queueURL *string) (*queue, *apiError) {
	if queueURL == nil || *queueURL == "" {
		return nil, errMissing("QueueUrl")
	}
	q, ok := s.queueByURL(*queueURL)
	if !ok {
		return nil, errQueueDoesNotExist()
	}
	return q, nil
}

// checkBatch applies the rules for the whole batch: 1 to 10 entries with
// distinct, well-formed ids, and bodies of at most maxBatchBytes together.
func checkBatch(entries []sendMessageBatchEntry) *apiError {
	if len(entries) == 0 {
		return newError(codeEmptyBatchRequest, "There should be at least one entry in the request.")
	}
	if len(entries) > maxBatchEntries {
		return newError(codeTooManyEntriesInBatchRequest,
			"Maximum number of entries per request are %d. You have sent %d.", maxBatchEntries, len(entries))
	}
	seen := make(map[string]bool, len(entries))
	total := 0
	for _, e := range entries {
		if e.Id == nil {
			return errMissing("Id")
		}
		if !validID(*e.Id) {
			return newError(codeInvalidBatchEntryID,
				"A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
		}
		if seen[*e.Id] {
			return newError(codeBatchEntryIdsNotDistinct, "Id %s repeated.", *e.Id)
		}
		seen[*e.Id] = true
		if e.MessageBody != nil {
			total += len(*e.MessageBody)
		}
	}
	if total > maxBatchBytes {
		return errBatchTooLong(total)
	}
	return nil
}

// newMessage validates one SendMessage (or batch entry) and returns the
// message and its delay.
func newMessage(f sendMessageFields, senderID string) (*message, time.Duration, *apiError) {
	if f.MessageBody == nil || *f.MessageBody == "" {
		return nil, 0, errMissing("MessageBody")
	}
	body := *f.MessageBody
	if !validMessageText(body) {
		return nil, 0, newError(codeInvalidMessageContents,
			"Invalid binary character in message body. Only characters #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF are allowed.")
	}
	var delay int64
	if f.DelaySeconds != nil {
		delay = *f.DelaySeconds
		if delay < 0 || delay > maxDelaySeconds {
			return nil, 0, newError(codeInvalidParameterValue,
				"Value %s for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.", strconv.FormatInt(delay, 10))
		}
	}
	if len(body) > maxMessageSize {
		return nil, 0, errMessageTooLong()
	}
	m := &message{id: newID(), body: body, md5OfBody: md5Hex(body), senderID: senderID}
	return m, time.Duration(delay) * time.Second, nil
}

// send stores a validated message and returns what SendMessage answers.
// The caller then calls q.notify once, which also makes waiters re-arm
// their timers for a delayed message that may now be the earliest.
func (q *queue) send(m *message, delay time.Duration) sendMessageOutput {
	m.sentAt = time.Now()
	q.add(m, m.sentAt, delay)
	return sendMessageOutput{MessageId: m.id, MD5OfMessageBody: m.md5OfBody}
}

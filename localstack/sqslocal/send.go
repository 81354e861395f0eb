package sqslocal

import (
	"strconv"
	"time"
)

func itoa64(n int64) string { return strconv.FormatInt(n, 10) }

// sendRequest is a validated message ready to be stored.
type sendRequest struct {
	msg   *message
	delay time.Duration
	size  int
}

// prepareSend validates one SendMessage (or batch entry) against q. Lock held.
func (s *Service) prepareSend(q *queue, f sendMessageFields, senderID string) (sendRequest, *apiError) {
	if f.MessageBody == nil || *f.MessageBody == "" {
		return sendRequest{}, errMissing("MessageBody")
	}
	body := *f.MessageBody
	if !validMessageText(body) {
		return sendRequest{}, newError(codeInvalidMessageContents,
			"Invalid binary character in message body. Only characters #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF are allowed.")
	}
	delay := q.cfg.delaySeconds
	if f.DelaySeconds != nil {
		if *f.DelaySeconds < 0 || *f.DelaySeconds > maxDelaySeconds {
			return sendRequest{}, errInvalidValue("DelaySeconds", itoa64(*f.DelaySeconds),
				"DelaySeconds must be >= 0 and <= 900.")
		}
		delay = int(*f.DelaySeconds)
	}
	if f.MessageDeduplicationId != nil {
		return sendRequest{}, newError(codeInvalidParameterValue,
			"The request include parameter MessageDeduplicationId which is not valid for this queue type")
	}
	attrSize, err := validateAttributes(f.MessageAttributes)
	if err != nil {
		return sendRequest{}, err
	}
	for name, v := range f.MessageSystemAttributes {
		if name != "AWSTraceHeader" || deref(v.DataType) != "String" || v.StringValue == nil {
			return sendRequest{}, newError(codeInvalidParameterValue,
				"Message system attribute '%s' is invalid: only AWSTraceHeader of type String is supported.", name)
		}
	}
	size := len(body) + attrSize
	if size > q.cfg.maxMessageSize {
		return sendRequest{}, errMessageTooLong(q.cfg.maxMessageSize)
	}
	return sendRequest{
		msg: &message{
			id:               newID(),
			body:             body,
			md5OfBody:        md5Hex(body),
			attributes:       f.MessageAttributes,
			systemAttributes: f.MessageSystemAttributes,
			groupID:          deref(f.MessageGroupId),
			senderID:         senderID,
		},
		delay: time.Duration(delay) * time.Second,
		size:  size,
	}, nil
}

// commitSend stores a prepared message and returns what SendMessage
// answers. The caller then calls q.notify once, which also makes waiters
// re-arm their timers for a delayed message that may now be the earliest.
// Lock held.
func (s *Service) commitSend(q *queue, r sendRequest, now time.Time) sendMessageOutput {
	r.msg.sentAt = now
	q.add(r.msg, now, r.delay)
	return sendMessageOutput{
		MessageId:                    r.msg.id,
		MD5OfMessageBody:             r.msg.md5OfBody,
		MD5OfMessageAttributes:       md5OfAttributes(r.msg.attributes),
		MD5OfMessageSystemAttributes: md5OfAttributes(r.msg.systemAttributes),
	}
}

package sqslocal

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// maxRequestBody bounds a request body. JSON escaping takes at most 6
// bytes per byte of message (\u00XX; base64 attributes take 4 per 3), and
// ids, attribute names and the rest of the request fit in the slack: a
// longer body cannot hold a request within maxBatchBytes, and is answered
// as one whose messages are too long.
const maxRequestBody = 6*maxBatchBytes + 2<<20

// ServeHTTP answers SQS requests in the AWS JSON 1.0 protocol: POST with
// X-Amz-Target "AmazonSQS.<Operation>". Signatures are not checked.
func (s *Service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "AmazonSQS.")
	if r.Method != http.MethodPost || !ok {
		writeError(w, newError(codeUnknownOperation, "Operation %q is not supported; use POST with X-Amz-Target AmazonSQS.<Operation>.", target))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	var tooLong *http.MaxBytesError
	switch {
	case errors.As(err, &tooLong):
		writeError(w, errRequestTooLong(op))
		return
	case err != nil:
		writeError(w, newError(codeInvalidParameterValue, "Request body could not be read: %v", err))
		return
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		body = []byte("{}")
	}
	c := &call{s: s, r: r, body: body, base: s.opts.BaseURL}
	if c.base == "" {
		c.base = "http://" + r.Host
	}
	var out any
	var aerr *apiError
	switch op {
	case "CreateQueue":
		out, aerr = c.createQueue()
	case "GetQueueUrl":
		out, aerr = c.getQueueURL()
	case "DeleteQueue":
		out, aerr = c.deleteQueue()
	case "ListQueues":
		out, aerr = c.listQueues()
	case "ListDeadLetterSourceQueues":
		out, aerr = c.listDeadLetterSourceQueues()
	case "GetQueueAttributes":
		out, aerr = c.getQueueAttributes()
	case "SetQueueAttributes":
		out, aerr = c.setQueueAttributes()
	case "TagQueue":
		out, aerr = c.tagQueue()
	case "UntagQueue":
		out, aerr = c.untagQueue()
	case "ListQueueTags":
		out, aerr = c.listQueueTags()
	case "PurgeQueue":
		out, aerr = c.purgeQueue()
	case "SendMessage":
		out, aerr = c.sendMessage()
	case "SendMessageBatch":
		out, aerr = c.sendMessageBatch()
	case "ReceiveMessage":
		out, aerr = c.receiveMessage()
	case "DeleteMessage":
		out, aerr = c.deleteMessage()
	case "DeleteMessageBatch":
		out, aerr = c.deleteMessageBatch()
	case "ChangeMessageVisibility":
		out, aerr = c.changeMessageVisibility()
	case "ChangeMessageVisibilityBatch":
		out, aerr = c.changeMessageVisibilityBatch()
	case "AddPermission", "RemovePermission", "StartMessageMoveTask", "CancelMessageMoveTask", "ListMessageMoveTasks":
		aerr = newError(codeUnsupportedOperation, "%s is not supported by this emulator.", op)
	default:
		aerr = newError(codeUnknownOperation, "Unknown operation %s.", op)
	}
	if aerr != nil {
		writeError(w, aerr)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	payload, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		payload = []byte(`{"__type":"com.amazonaws.sqs#InternalError","message":"response encoding failed"}`)
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-RequestId", newID())
	w.WriteHeader(status)
	_, _ = w.Write(payload)
}

func writeError(w http.ResponseWriter, e *apiError) {
	w.Header().Set("X-Amzn-Query-Error", e.code.queryCode()+";Sender")
	writeJSON(w, e.code.status(), errorOutput{Type: e.code.wireType(), Message: e.message})
}

// call is one request being answered.
type call struct {
	s    *Service
	r    *http.Request
	body []byte
	base string // of the queue URLs it returns
}

func (c *call) decode(v any) *apiError {
	if err := json.Unmarshal(c.body, v); err != nil {
		return newError(codeSerialization, "Request body is not valid for this operation: %v", err)
	}
	return nil
}

// senderID stands in for the IAM identity SQS reports as SenderId: the
// access key id of the request's SigV4 credential, else the account id.
func (c *call) senderID() string {
	auth := c.r.Header.Get("Authorization")
	if _, rest, ok := strings.Cut(auth, "Credential="); ok {
		if key, _, ok := strings.Cut(rest, "/"); ok && key != "" {
			return key
		}
	}
	return c.s.opts.AccountID
}

// withQueue decodes the request into in, then runs fn with the lock held
// and the queue named by the QueueUrl that getURL reads from in.
func withQueue[T any](c *call, in *T, getURL func(*T) *string, fn func(q *queue, now time.Time) (any, *apiError)) (any, *apiError) {
	if err := c.decode(in); err != nil {
		return nil, err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	q, err := c.s.queueByURL(deref(getURL(in)))
	if err != nil {
		return nil, err
	}
	now := c.s.opts.Now()
	q.advance(now)
	return fn(q, now)
}

func (c *call) createQueue() (any, *apiError) {
	var in createQueueInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if in.QueueName == nil {
		return nil, errMissing("QueueName")
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	q, err := c.s.createQueue(*in.QueueName, in.Attributes, in.Tags)
	if err != nil {
		return nil, err
	}
	return queueURLOutput{QueueUrl: c.s.queueURL(c.base, q)}, nil
}

func (c *call) getQueueURL() (any, *apiError) {
	var in getQueueURLInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if in.QueueName == nil {
		return nil, errMissing("QueueName")
	}
	if owner := deref(in.QueueOwnerAWSAccountId); owner != "" && owner != c.s.opts.AccountID {
		return nil, errQueueDoesNotExist()
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	q, ok := c.s.queues[*in.QueueName]
	if !ok {
		return nil, errQueueDoesNotExist()
	}
	return queueURLOutput{QueueUrl: c.s.queueURL(c.base, q)}, nil
}

func (c *call) deleteQueue() (any, *apiError) {
	var in queueInput
	return withQueue(c, &in, func(in *queueInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		c.s.deleteQueue(q)
		return struct{}{}, nil
	})
}

func (c *call) purgeQueue() (any, *apiError) {
	var in queueInput
	return withQueue(c, &in, func(in *queueInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		q.purge()
		return struct{}{}, nil
	})
}

// page returns the slice of sorted names a ListQueues-style call shows:
// everything up to 1000 without MaxResults, otherwise MaxResults names
// after the NextToken (the last name of the previous page).
func page(names []string, maxResults *int64, token string) ([]string, string, *apiError) {
	sort.Strings(names)
	if maxResults == nil {
		if len(names) > 1000 {
			names = names[:1000]
		}
		return names, "", nil
	}
	if *maxResults < 1 || *maxResults > 1000 {
		return nil, "", errInvalidValue("MaxResults", itoa64(*maxResults), "MaxResults must be an integer between 1 and 1000.")
	}
	start := sort.SearchStrings(names, token)
	if token != "" && start < len(names) && names[start] == token {
		start++
	}
	names = names[start:]
	if int64(len(names)) <= *maxResults {
		return names, "", nil
	}
	names = names[:*maxResults]
	return names, names[len(names)-1], nil
}

func (c *call) listQueues() (any, *apiError) {
	var in listQueuesInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	var names []string
	for name := range c.s.queues {
		if strings.HasPrefix(name, in.QueueNamePrefix) {
			names = append(names, name)
		}
	}
	names, next, err := page(names, in.MaxResults, in.NextToken)
	if err != nil {
		return nil, err
	}
	out := listQueuesOutput{NextToken: next}
	for _, name := range names {
		out.QueueUrls = append(out.QueueUrls, c.s.queueURL(c.base, c.s.queues[name]))
	}
	return out, nil
}

func (c *call) listDeadLetterSourceQueues() (any, *apiError) {
	var in listDeadLetterSourceQueuesInput
	return withQueue(c, &in, func(in *listDeadLetterSourceQueuesInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		var names []string
		for name, src := range c.s.queues {
			if src.cfg.redrive != nil && src.cfg.redrive.deadLetterTargetARN == q.arn {
				names = append(names, name)
			}
		}
		names, next, err := page(names, in.MaxResults, in.NextToken)
		if err != nil {
			return nil, err
		}
		out := listDeadLetterSourceQueuesOutput{QueueUrls: []string{}, NextToken: next}
		for _, name := range names {
			out.QueueUrls = append(out.QueueUrls, c.s.queueURL(c.base, c.s.queues[name]))
		}
		return out, nil
	})
}

func (c *call) getQueueAttributes() (any, *apiError) {
	var in getQueueAttributesInput
	return withQueue(c, &in, func(in *getQueueAttributesInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		all := map[string]string{
			attrQueueArn:                    q.arn,
			attrApproximateNumberOfMessages: strconv.Itoa(q.visible),
			attrApproximateNotVisible:       strconv.Itoa(q.inFlight),
			attrApproximateDelayed:          strconv.Itoa(q.delayed),
			attrCreatedTimestamp:            strconv.FormatInt(q.createdAt.Unix(), 10),
			attrLastModifiedTimestamp:       strconv.FormatInt(q.modifiedAt.Unix(), 10),
		}
		for _, name := range q.cfg.settableNames() {
			all[name], _ = q.cfg.get(name)
		}
		out := map[string]string{}
		for _, name := range in.AttributeNames {
			if name == "All" {
				out = all
				break
			}
			v, ok := all[name]
			if !ok && !isKnownAttribute(name) {
				return nil, newError(codeInvalidAttributeName, "Unknown Attribute %s.", name)
			}
			if ok {
				out[name] = v
			}
		}
		return attributesOutput{Attributes: out}, nil
	})
}

// isKnownAttribute reports whether name is a queue attribute SQS knows,
// even if this queue has no value for it.
func isKnownAttribute(name string) bool {
	switch name {
	case attrVisibilityTimeout, attrDelaySeconds, attrMessageRetentionPeriod, attrMaximumMessageSize,
		attrReceiveMessageWaitTimeSeconds, attrRedrivePolicy, attrFifoQueue, "ContentBasedDeduplication",
		"DeduplicationScope", "FifoThroughputLimit":
		return true
	}
	return isReadOnlyAttribute(name) || isOpaqueAttribute(name)
}

func (c *call) setQueueAttributes() (any, *apiError) {
	var in setQueueAttributesInput
	return withQueue(c, &in, func(in *setQueueAttributesInput) *string { return in.QueueUrl }, func(q *queue, now time.Time) (any, *apiError) {
		cfg := q.cfg.clone()
		names := make([]string, 0, len(in.Attributes))
		for name := range in.Attributes {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if isReadOnlyAttribute(name) {
				return nil, newError(codeInvalidAttributeName, "Unknown Attribute %s.", name)
			}
			if err := cfg.set(name, in.Attributes[name], false, c.s.deadLetterExists); err != nil {
				return nil, err
			}
		}
		q.cfg = cfg
		q.modifiedAt = now
		q.notify() // a retention change can matter to waiters' next sweep
		return struct{}{}, nil
	})
}

func (c *call) tagQueue() (any, *apiError) {
	var in tagQueueInput
	return withQueue(c, &in, func(in *tagQueueInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		for k, v := range in.Tags {
			q.tags[k] = v
		}
		return struct{}{}, nil
	})
}

func (c *call) untagQueue() (any, *apiError) {
	var in untagQueueInput
	return withQueue(c, &in, func(in *untagQueueInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		for _, k := range in.TagKeys {
			delete(q.tags, k)
		}
		return struct{}{}, nil
	})
}

func (c *call) listQueueTags() (any, *apiError) {
	var in queueInput
	return withQueue(c, &in, func(in *queueInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		return listQueueTagsOutput{Tags: q.tags}, nil
	})
}

func (c *call) sendMessage() (any, *apiError) {
	var in sendMessageInput
	sender := c.senderID()
	return withQueue(c, &in, func(in *sendMessageInput) *string { return in.QueueUrl }, func(q *queue, now time.Time) (any, *apiError) {
		req, err := c.s.prepareSend(q, in.sendMessageFields, sender)
		if err != nil {
			return nil, err
		}
		out := c.s.commitSend(q, req, now)
		q.notify()
		return out, nil
	})
}

// checkBatch applies the rules every batch operation shares: 1 to 10
// entries with distinct, well-formed ids.
func checkBatch(ids []*string) *apiError {
	if len(ids) == 0 {
		return newError(codeEmptyBatchRequest, "There should be at least one entry in the request.")
	}
	if len(ids) > maxBatchEntries {
		return newError(codeTooManyEntriesInBatchRequest,
			"Maximum number of entries per request are %d. You have sent %d.", maxBatchEntries, len(ids))
	}
	seen := make(map[string]bool, len(ids))
	for _, id := range ids {
		if id == nil {
			return errMissing("Id")
		}
		if !validID(*id, 80) {
			return newError(codeInvalidBatchEntryID,
				"A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
		}
		if seen[*id] {
			return newError(codeBatchEntryIdsNotDistinct, "Id %s repeated.", *id)
		}
		seen[*id] = true
	}
	return nil
}

func failedEntry(id string, err *apiError) batchResultErrorEntry {
	return batchResultErrorEntry{Id: id, Code: err.code.queryCode(), Message: err.message, SenderFault: true}
}

func (c *call) sendMessageBatch() (any, *apiError) {
	var in sendMessageBatchInput
	sender := c.senderID()
	return withQueue(c, &in, func(in *sendMessageBatchInput) *string { return in.QueueUrl }, func(q *queue, now time.Time) (any, *apiError) {
		ids := make([]*string, len(in.Entries))
		for i := range in.Entries {
			ids[i] = in.Entries[i].Id
		}
		if err := checkBatch(ids); err != nil {
			return nil, err
		}
		out := sendMessageBatchOutput{Successful: []sendMessageBatchResultEntry{}, Failed: []batchResultErrorEntry{}}
		prepared := make([]sendRequest, len(in.Entries))
		errs := make([]*apiError, len(in.Entries))
		total := 0
		for i, e := range in.Entries {
			prepared[i], errs[i] = c.s.prepareSend(q, e.sendMessageFields, sender)
			if errs[i] == nil {
				total += prepared[i].size
			} else {
				total += len(deref(e.MessageBody))
			}
		}
		if total > maxBatchBytes {
			return nil, errBatchTooLong(total)
		}
		for i, e := range in.Entries {
			if errs[i] != nil {
				out.Failed = append(out.Failed, failedEntry(*e.Id, errs[i]))
				continue
			}
			res := c.s.commitSend(q, prepared[i], now)
			out.Successful = append(out.Successful, sendMessageBatchResultEntry{Id: *e.Id, sendMessageOutput: res})
		}
		q.notify()
		return out, nil
	})
}

func (c *call) receiveMessage() (any, *apiError) {
	var in receiveMessageInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	limit := int64(1)
	if in.MaxNumberOfMessages != nil {
		limit = *in.MaxNumberOfMessages
		if limit < 1 || limit > maxBatchEntries {
			return nil, errInvalidValue("MaxNumberOfMessages", itoa64(limit), "Must be between 1 and 10, if provided.")
		}
	}
	var visibility *time.Duration
	if in.VisibilityTimeout != nil {
		if v := *in.VisibilityTimeout; v < 0 || v > maxVisibilityTimeout {
			return nil, errInvalidValue("VisibilityTimeout", itoa64(v), "Must be >= 0 and <= 43200, if provided.")
		}
		d := time.Duration(*in.VisibilityTimeout) * time.Second
		visibility = &d
	}
	if in.WaitTimeSeconds != nil {
		if v := *in.WaitTimeSeconds; v < 0 || v > maxWaitTimeSeconds {
			return nil, errInvalidValue("WaitTimeSeconds", itoa64(v), "Must be >= 0 and <= 20, if provided.")
		}
	}
	c.s.mu.Lock()
	q, err := c.s.queueByURL(deref(in.QueueUrl))
	var wait time.Duration
	if err == nil {
		wait = time.Duration(q.cfg.waitTimeSeconds) * time.Second
		if in.WaitTimeSeconds != nil {
			wait = time.Duration(*in.WaitTimeSeconds) * time.Second
		}
	}
	c.s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	deliveries, err := c.s.receive(c.r.Context(), q, int(limit), visibility, wait)
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, name := range append(in.AttributeNames, in.MessageSystemAttributeNames...) {
		wanted[name] = true
	}
	out := receiveMessageOutput{}
	for _, d := range deliveries {
		attrs := selectAttributes(d.msg.attributes, in.MessageAttributeNames)
		out.Messages = append(out.Messages, messageOutput{
			MessageId:              d.msg.id,
			ReceiptHandle:          d.receiptHandle,
			MD5OfBody:              d.msg.md5OfBody,
			Body:                   d.msg.body,
			Attributes:             d.systemAttributes(wanted),
			MD5OfMessageAttributes: md5OfAttributes(attrs),
			MessageAttributes:      attrs,
		})
	}
	return out, nil
}

func (c *call) deleteMessage() (any, *apiError) {
	var in deleteMessageInput
	return withQueue(c, &in, func(in *deleteMessageInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		if in.ReceiptHandle == nil {
			return nil, errMissing("ReceiptHandle")
		}
		if err := c.s.deleteMessage(q, *in.ReceiptHandle); err != nil {
			return nil, err
		}
		return struct{}{}, nil
	})
}

func (c *call) deleteMessageBatch() (any, *apiError) {
	var in deleteMessageBatchInput
	return withQueue(c, &in, func(in *deleteMessageBatchInput) *string { return in.QueueUrl }, func(q *queue, _ time.Time) (any, *apiError) {
		ids := make([]*string, len(in.Entries))
		for i := range in.Entries {
			ids[i] = in.Entries[i].Id
		}
		return eachEntry(ids, func(i int) *apiError {
			if in.Entries[i].ReceiptHandle == nil {
				return errMissing("ReceiptHandle")
			}
			return c.s.deleteMessage(q, *in.Entries[i].ReceiptHandle)
		})
	})
}

// eachEntry checks a batch's ids, runs do for each entry, and reports each
// entry's outcome as SQS does: Successful and Failed, never a whole-call
// error for one entry.
func eachEntry(ids []*string, do func(i int) *apiError) (any, *apiError) {
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	out := batchOutput{Successful: []batchResultEntry{}, Failed: []batchResultErrorEntry{}}
	for i, id := range ids {
		if err := do(i); err != nil {
			out.Failed = append(out.Failed, failedEntry(*id, err))
			continue
		}
		out.Successful = append(out.Successful, batchResultEntry{Id: *id})
	}
	return out, nil
}

func (c *call) changeMessageVisibility() (any, *apiError) {
	var in changeMessageVisibilityInput
	return withQueue(c, &in, func(in *changeMessageVisibilityInput) *string { return in.QueueUrl }, func(q *queue, now time.Time) (any, *apiError) {
		if in.ReceiptHandle == nil {
			return nil, errMissing("ReceiptHandle")
		}
		if err := c.s.changeVisibility(q, *in.ReceiptHandle, in.VisibilityTimeout, now); err != nil {
			return nil, err
		}
		return struct{}{}, nil
	})
}

func (c *call) changeMessageVisibilityBatch() (any, *apiError) {
	var in changeMessageVisibilityBatchInput
	return withQueue(c, &in, func(in *changeMessageVisibilityBatchInput) *string { return in.QueueUrl }, func(q *queue, now time.Time) (any, *apiError) {
		ids := make([]*string, len(in.Entries))
		for i := range in.Entries {
			ids[i] = in.Entries[i].Id
		}
		return eachEntry(ids, func(i int) *apiError {
			e := in.Entries[i]
			if e.ReceiptHandle == nil {
				return errMissing("ReceiptHandle")
			}
			return c.s.changeVisibility(q, *e.ReceiptHandle, e.VisibilityTimeout, now)
		})
	})
}

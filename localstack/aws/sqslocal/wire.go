package sqslocal

// Request and response bodies of the AWS JSON 1.0 protocol, with the member
// names the Go SDK v2 serializes. Requests are decoded strictly: a member
// not listed here is refused. Optional numbers are pointers so that an
// absent member can be told from zero.

type sendMessageFields struct {
	MessageBody  *string
	DelaySeconds *int64
}

type sendMessageInput struct {
	QueueUrl *string
	sendMessageFields
}

type sendMessageOutput struct {
	MessageId        string
	MD5OfMessageBody string
}

type sendMessageBatchEntry struct {
	Id *string
	sendMessageFields
}

type sendMessageBatchInput struct {
	QueueUrl *string
	Entries  []sendMessageBatchEntry
}

type sendMessageBatchResultEntry struct {
	Id string
	sendMessageOutput
}

type sendMessageBatchOutput struct {
	Successful []sendMessageBatchResultEntry
	Failed     []batchResultErrorEntry
}

type batchResultErrorEntry struct {
	Id          string
	Code        string
	Message     string
	SenderFault bool
}

type errorOutput struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
}

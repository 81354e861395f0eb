package sqslocal

// Request and response bodies of the AWS JSON 1.0 protocol, with the member
// names the Go SDK v2 serializes. Optional numbers are pointers so that an
// absent member can be told from zero.

type createQueueInput struct {
	QueueName  *string
	Attributes map[string]string
	Tags       map[string]string `json:"tags"`
}

type getQueueURLInput struct {
	QueueName              *string
	QueueOwnerAWSAccountId *string
}

type queueURLOutput struct {
	QueueUrl string
}

type queueInput struct {
	QueueUrl *string
}

type listQueuesInput struct {
	QueueNamePrefix string
	MaxResults      *int64
	NextToken       string
}

type listQueuesOutput struct {
	QueueUrls []string `json:",omitempty"`
	NextToken string   `json:",omitempty"`
}

type listDeadLetterSourceQueuesInput struct {
	QueueUrl   *string
	MaxResults *int64
	NextToken  string
}

type listDeadLetterSourceQueuesOutput struct {
	QueueUrls []string `json:"queueUrls"`
	NextToken string   `json:",omitempty"`
}

type getQueueAttributesInput struct {
	QueueUrl       *string
	AttributeNames []string
}

type setQueueAttributesInput struct {
	QueueUrl   *string
	Attributes map[string]string
}

type attributesOutput struct {
	Attributes map[string]string `json:",omitempty"`
}

type tagQueueInput struct {
	QueueUrl *string
	Tags     map[string]string
}

type untagQueueInput struct {
	QueueUrl *string
	TagKeys  []string
}

type listQueueTagsOutput struct {
	Tags map[string]string `json:",omitempty"`
}

// attributeValue is a message attribute or message system attribute.
type attributeValue struct {
	DataType         *string  `json:",omitempty"`
	StringValue      *string  `json:",omitempty"`
	BinaryValue      []byte   `json:",omitempty"`
	StringListValues []string `json:",omitempty"`
	BinaryListValues [][]byte `json:",omitempty"`
}

type sendMessageFields struct {
	MessageBody             *string
	DelaySeconds            *int64
	MessageAttributes       map[string]attributeValue
	MessageSystemAttributes map[string]attributeValue
	MessageDeduplicationId  *string
	MessageGroupId          *string
}

type sendMessageInput struct {
	QueueUrl *string
	sendMessageFields
}

type sendMessageOutput struct {
	MessageId                    string
	MD5OfMessageBody             string
	MD5OfMessageAttributes       string `json:",omitempty"`
	MD5OfMessageSystemAttributes string `json:",omitempty"`
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

type receiveMessageInput struct {
	QueueUrl                    *string
	AttributeNames              []string
	MessageSystemAttributeNames []string
	MessageAttributeNames       []string
	MaxNumberOfMessages         *int64
	VisibilityTimeout           *int64
	WaitTimeSeconds             *int64
	ReceiveRequestAttemptId     *string
}

type receiveMessageOutput struct {
	Messages []messageOutput `json:",omitempty"`
}

type messageOutput struct {
	MessageId              string
	ReceiptHandle          string
	MD5OfBody              string
	Body                   string
	Attributes             map[string]string         `json:",omitempty"`
	MD5OfMessageAttributes string                    `json:",omitempty"`
	MessageAttributes      map[string]attributeValue `json:",omitempty"`
}

type deleteMessageInput struct {
	QueueUrl      *string
	ReceiptHandle *string
}

type deleteMessageBatchEntry struct {
	Id            *string
	ReceiptHandle *string
}

type deleteMessageBatchInput struct {
	QueueUrl *string
	Entries  []deleteMessageBatchEntry
}

type batchResultEntry struct {
	Id string
}

type batchOutput struct {
	Successful []batchResultEntry
	Failed     []batchResultErrorEntry
}

type changeMessageVisibilityInput struct {
	QueueUrl          *string
	ReceiptHandle     *string
	VisibilityTimeout *int64
}

type changeMessageVisibilityBatchEntry struct {
	Id                *string
	ReceiptHandle     *string
	VisibilityTimeout *int64
}

type changeMessageVisibilityBatchInput struct {
	QueueUrl *string
	Entries  []changeMessageVisibilityBatchEntry
}

type errorOutput struct {
	Type    string `json:"__type"`
	Message string `json:"message"`
}

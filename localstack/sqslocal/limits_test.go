package sqslocal

import (
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const mib = 1 << 20

func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, code, apiErr.ErrorCode())
}

func TestSendMessage_UpToOneMiBIsAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := aws.String(h.createQueue(t, "big", nil))
	// An attribute counts its name, type and value.
	attrs := map[string]types.MessageAttributeValue{"k": {DataType: aws.String("String"), StringValue: aws.String("v")}}
	const attrBytes = len("k") + len("String") + len("v")

	tests := []struct {
		name  string
		body  int
		attrs map[string]types.MessageAttributeValue
	}{
		{name: "body only", body: mib},
		{name: "body and attributes", body: mib - attrBytes, attrs: attrs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Repeat("a", tt.body)
			_, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String(body), MessageAttributes: tt.attrs})
			require.NoError(t, err, "exactly 1 MiB is accepted")

			_, err = h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String(body + "a"), MessageAttributes: tt.attrs})
			requireCode(t, err, "InvalidParameterValue")
			assert.ErrorContains(t, err, "Message must be shorter than 1048576 bytes.")

			got := h.receive(t, aws.ToString(queueURL), 1, 0)
			require.Len(t, got, 1)
			assert.Equal(t, body, aws.ToString(got[0].Body), "the message comes back whole")
			_, err = h.client.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: queueURL, ReceiptHandle: got[0].ReceiptHandle})
			require.NoError(t, err)
		})
	}
}

func TestSendMessageBatch_MessagesTogetherUpToOneMiB(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "big-batch", nil)
	// Ten messages adding up to 1 MiB plus extra bytes.
	batch := func(extra int) []types.SendMessageBatchRequestEntry {
		out := make([]types.SendMessageBatchRequestEntry, maxBatchEntries)
		for i := range out {
			n := mib / maxBatchEntries
			if i == 0 {
				n += mib%maxBatchEntries + extra
			}
			out[i] = types.SendMessageBatchRequestEntry{Id: aws.String("e" + strconv.Itoa(i)), MessageBody: aws.String(strings.Repeat("a", n))}
		}
		return out
	}

	_, err := h.client.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: batch(1)})
	var tooLong *types.BatchRequestTooLong
	require.ErrorAs(t, err, &tooLong)
	assert.Equal(t, "Batch requests cannot be longer than 1048576 bytes. You have sent 1048577 bytes.", tooLong.ErrorMessage())
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, queueURL), "a refused batch sends nothing")

	out, err := h.client.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: batch(0)})
	require.NoError(t, err, "exactly 1 MiB is accepted")
	assert.Len(t, out.Successful, maxBatchEntries)
	assert.Equal(t, [3]int{maxBatchEntries, 0, 0}, h.depth(t, queueURL))
}

func TestSend_BodyTooLongToReadIsRefusedAsTooLong(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := aws.String(h.createQueue(t, "huge", nil))
	huge := strings.Repeat("a", mib)
	entries := make([]types.SendMessageBatchRequestEntry, maxBatchEntries)
	for i := range entries {
		entries[i] = types.SendMessageBatchRequestEntry{Id: aws.String("e" + strconv.Itoa(i)), MessageBody: aws.String(huge)}
	}

	_, err := h.client.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: queueURL, Entries: entries})
	var tooLong *types.BatchRequestTooLong
	require.ErrorAs(t, err, &tooLong, "ten 1 MiB messages: a body past what is read")

	// Every byte escaped as \u0001 in the JSON body.
	_, err = h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String(strings.Repeat("\x01", 3*mib/2))})
	requireCode(t, err, "InvalidParameterValue")
	assert.ErrorContains(t, err, "Message must be shorter than")
}

func TestMaximumMessageSize_DefaultsToOneMiBAndBoundsMessages(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := aws.String(h.createQueue(t, "sized", nil))
	maxSize := func() string {
		out, err := h.client.GetQueueAttributes(t.Context(), &sqs.GetQueueAttributesInput{QueueUrl: queueURL, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameMaximumMessageSize}})
		require.NoError(t, err)
		return out.Attributes["MaximumMessageSize"]
	}
	assert.Equal(t, "1048576", maxSize())

	for _, value := range []string{"1023", "1048577"} {
		_, err := h.client.SetQueueAttributes(t.Context(), &sqs.SetQueueAttributesInput{QueueUrl: queueURL, Attributes: map[string]string{"MaximumMessageSize": value}})
		requireCode(t, err, "InvalidAttributeValue")
	}
	for _, value := range []string{"1048576", "1024"} {
		_, err := h.client.SetQueueAttributes(t.Context(), &sqs.SetQueueAttributesInput{QueueUrl: queueURL, Attributes: map[string]string{"MaximumMessageSize": value}})
		require.NoError(t, err, value)
		assert.Equal(t, value, maxSize())
	}

	_, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String(strings.Repeat("a", 1024))})
	require.NoError(t, err)
	_, err = h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String(strings.Repeat("a", 1025))})
	requireCode(t, err, "InvalidParameterValue")
	assert.ErrorContains(t, err, "Message must be shorter than 1024 bytes.")
}

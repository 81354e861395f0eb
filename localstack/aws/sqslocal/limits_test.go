package sqslocal

import (
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const mib = 1 << 20

func TestSendMessage_UpToOneMiBIsAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "big", nil)
	body := strings.Repeat("a", mib)

	out, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)})
	require.NoError(t, err, "exactly 1 MiB is accepted")

	_, err = h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body + "a")})
	requireCode(t, err, "InvalidParameterValue")
	assert.ErrorContains(t, err, "Message must be shorter than 1048576 bytes.")

	assert.Equal(t, map[string]string{aws.ToString(out.MessageId): body}, h.stored(t, queueURL), "the message is kept whole")
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

package sqslocal

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testAccessKey = "AKIDLOCALTEST"

// harness is a Service behind an HTTP server and a real SDK client.
type harness struct {
	svc    *Service
	client *sqs.Client
	url    string
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	svc := New(opts)
	srv := httptest.NewServer(svc)
	t.Cleanup(srv.Close)
	t.Cleanup(svc.Close) // runs first: ends long polls so srv.Close does not wait
	client := sqs.New(sqs.Options{
		BaseEndpoint: aws.String(srv.URL),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(testAccessKey, "secret", ""),
	})
	return &harness{svc: svc, client: client, url: srv.URL}
}

func (h *harness) createQueue(t *testing.T, name string, attrs map[string]string) string {
	t.Helper()
	out, err := h.client.CreateQueue(t.Context(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	require.NoError(t, err)
	return aws.ToString(out.QueueUrl)
}

func (h *harness) send(t *testing.T, queueURL, body string) string {
	t.Helper()
	out, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)})
	require.NoError(t, err)
	return aws.ToString(out.MessageId)
}

func (h *harness) receive(t *testing.T, queueURL string, limit, wait int32) []types.Message {
	t.Helper()
	out, err := h.client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(queueURL),
		MaxNumberOfMessages:         limit,
		WaitTimeSeconds:             wait,
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	require.NoError(t, err)
	return out.Messages
}

func (h *harness) depth(t *testing.T, queueURL string) [3]int {
	t.Helper()
	visible, inFlight, delayed, err := h.svc.Depth(queueURL)
	require.NoError(t, err)
	return [3]int{visible, inFlight, delayed}
}

// clock is a settable time source for tests of delays and retention.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestMD5OfAttributes_MatchesReferenceDigests(t *testing.T) {
	t.Parallel()
	str := func(dataType, v string) attributeValue {
		return attributeValue{DataType: aws.String(dataType), StringValue: aws.String(v)}
	}
	tests := []struct {
		name  string
		attrs map[string]attributeValue
		want  string
	}{
		{
			name:  "one string (AWS documentation example)",
			attrs: map[string]attributeValue{"SellerName": str("String", "Example Store")},
			want:  "cd28f3b68aeee4b2eac9c66f2f694b58",
		},
		{
			name: "two strings sorted by name",
			attrs: map[string]attributeValue{
				"test_attribute_name_2": str("String", "test_attribute_value_2"),
				"test_attribute_name_1": str("String", "test_attribute_value_1"),
			},
			want: "d53f3b558fe951154770f25cb63dbba9",
		},
		{
			name:  "binary",
			attrs: map[string]attributeValue{"test_attribute_name": {DataType: aws.String("Binary"), BinaryValue: []byte("test_attribute_value")}},
			want:  "23f6bd27ea87aab7dfeadcc9aebee495",
		},
		{
			name:  "number",
			attrs: map[string]attributeValue{"timestamp": str("Number", "1493147359900")},
			want:  "235c5c510d26fb653d073faed50ae77c",
		},
		{name: "none", attrs: nil, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, md5OfAttributes(tt.attrs))
		})
	}
}

func TestSendReceiveDelete_RoundTripsWithChecksumsValidated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	ctx := t.Context()
	queueURL := h.createQueue(t, "round-trip", nil)
	assert.True(t, strings.HasPrefix(queueURL, h.url+"/000000000000/round-trip"), queueURL)

	sent, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(queueURL),
		MessageBody: aws.String(`{"hello":"wörld ✓"}`),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"kind":  {DataType: aws.String("String"), StringValue: aws.String("greeting")},
			"count": {DataType: aws.String("Number"), StringValue: aws.String("42")},
			"blob":  {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2, 255}},
		},
	})
	require.NoError(t, err)
	require.NotEmpty(t, aws.ToString(sent.MessageId))
	require.NotEmpty(t, aws.ToString(sent.MD5OfMessageAttributes))

	msgs := h.receive(t, queueURL, 10, 0)
	require.Len(t, msgs, 1)
	m := msgs[0]
	assert.Equal(t, aws.ToString(sent.MessageId), aws.ToString(m.MessageId))
	assert.Equal(t, `{"hello":"wörld ✓"}`, aws.ToString(m.Body))
	assert.Equal(t, md5Hex(`{"hello":"wörld ✓"}`), aws.ToString(m.MD5OfBody))
	assert.Equal(t, aws.ToString(sent.MD5OfMessageAttributes), aws.ToString(m.MD5OfMessageAttributes))
	assert.Equal(t, []byte{0, 1, 2, 255}, m.MessageAttributes["blob"].BinaryValue)
	assert.Equal(t, "42", aws.ToString(m.MessageAttributes["count"].StringValue))
	assert.Equal(t, "1", m.Attributes["ApproximateReceiveCount"])
	assert.Equal(t, testAccessKey, m.Attributes["SenderId"])
	assert.NotEmpty(t, m.Attributes["SentTimestamp"])
	assert.NotEmpty(t, m.Attributes["ApproximateFirstReceiveTimestamp"])
	assert.Equal(t, [3]int{0, 1, 0}, h.depth(t, queueURL))

	_, err = h.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle})
	require.NoError(t, err)
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, queueURL))
}

func TestReceiveMessage_ReturnsOnlyRequestedAttributes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	ctx := t.Context()
	queueURL := h.createQueue(t, "filtered", nil)
	_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:    aws.String(queueURL),
		MessageBody: aws.String("x"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"app.kind": {DataType: aws.String("String"), StringValue: aws.String("a")},
			"app.id":   {DataType: aws.String("String"), StringValue: aws.String("b")},
			"other":    {DataType: aws.String("String"), StringValue: aws.String("c")},
		},
	})
	require.NoError(t, err)

	out, err := h.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(queueURL),
		MessageAttributeNames:       []string{"app.*"},
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameApproximateReceiveCount},
	})
	require.NoError(t, err)
	require.Len(t, out.Messages, 1)
	m := out.Messages[0]
	assert.Len(t, m.MessageAttributes, 2)
	assert.Contains(t, m.MessageAttributes, "app.kind")
	assert.Equal(t, map[string]string{"ApproximateReceiveCount": "1"}, m.Attributes)
	assert.Equal(t, md5OfAttributes(map[string]attributeValue{
		"app.kind": {DataType: aws.String("String"), StringValue: aws.String("a")},
		"app.id":   {DataType: aws.String("String"), StringValue: aws.String("b")},
	}), aws.ToString(m.MD5OfMessageAttributes))
}

func TestSendMessageBatch_ReportsPerEntryFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "batch", nil)

	out, err := h.client.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{
		QueueUrl: aws.String(queueURL),
		Entries: []types.SendMessageBatchRequestEntry{
			{Id: aws.String("ok-1"), MessageBody: aws.String("one")},
			{Id: aws.String("bad-delay"), MessageBody: aws.String("two"), DelaySeconds: 901},
			{Id: aws.String("ok-2"), MessageBody: aws.String("three")},
			{Id: aws.String("bad-body"), MessageBody: aws.String("nul \x00 inside")},
		},
	})
	require.NoError(t, err)

	var ok []string
	for _, e := range out.Successful {
		ok = append(ok, aws.ToString(e.Id))
		assert.NotEmpty(t, aws.ToString(e.MessageId))
	}
	assert.ElementsMatch(t, []string{"ok-1", "ok-2"}, ok)
	failed := map[string]string{}
	for _, e := range out.Failed {
		failed[aws.ToString(e.Id)] = aws.ToString(e.Code)
		assert.True(t, e.SenderFault)
	}
	assert.Equal(t, map[string]string{"bad-delay": "InvalidParameterValue", "bad-body": "InvalidMessageContents"}, failed)
	assert.Equal(t, [3]int{2, 0, 0}, h.depth(t, queueURL))
}

func TestSendMessageBatch_RejectsMalformedBatches(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "batch-limits", nil)
	entries := func(n int, body string) []types.SendMessageBatchRequestEntry {
		out := make([]types.SendMessageBatchRequestEntry, n)
		for i := range out {
			out[i] = types.SendMessageBatchRequestEntry{Id: aws.String("e" + strconv.Itoa(i)), MessageBody: aws.String(body)}
		}
		return out
	}
	duplicate := entries(2, "x")
	duplicate[1].Id = aws.String("e0")

	tests := []struct {
		name    string
		entries []types.SendMessageBatchRequestEntry
		check   func(t *testing.T, err error)
	}{
		{"eleven entries", entries(11, "x"), func(t *testing.T, err error) {
			var target *types.TooManyEntriesInBatchRequest
			assert.ErrorAs(t, err, &target)
		}},
		{"duplicate ids", duplicate, func(t *testing.T, err error) {
			var target *types.BatchEntryIdsNotDistinct
			assert.ErrorAs(t, err, &target)
		}},
		{"no entries", []types.SendMessageBatchRequestEntry{}, func(t *testing.T, err error) {
			var target *types.EmptyBatchRequest
			assert.ErrorAs(t, err, &target)
		}},
		{"over 1 MiB in total", entries(2, strings.Repeat("a", 600*1024)), func(t *testing.T, err error) {
			var target *types.BatchRequestTooLong
			assert.ErrorAs(t, err, &target)
		}},
		{"invalid id", []types.SendMessageBatchRequestEntry{{Id: aws.String("no spaces"), MessageBody: aws.String("x")}}, func(t *testing.T, err error) {
			var target *types.InvalidBatchEntryId
			assert.ErrorAs(t, err, &target)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: tt.entries})
			require.Error(t, err)
			tt.check(t, err)
		})
	}
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, queueURL), "a rejected batch sends nothing")

	_, err := h.client.SendMessageBatch(t.Context(), &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries(10, "x")})
	require.NoError(t, err)
	assert.Equal(t, [3]int{10, 0, 0}, h.depth(t, queueURL))
}

func TestSendMessage_DelayHidesMessageUntilItPasses(t *testing.T) {
	t.Parallel()
	clk := newClock()
	h := newHarness(t, Options{Now: clk.Now})
	ctx := t.Context()
	queueURL := h.createQueue(t, "delayed", map[string]string{"DelaySeconds": "5"})

	queueDelayed := h.send(t, queueURL, "queue delay")
	out, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("message delay"), DelaySeconds: 2})
	require.NoError(t, err)
	messageDelayed := aws.ToString(out.MessageId)

	assert.Empty(t, h.receive(t, queueURL, 10, 0))
	assert.Equal(t, [3]int{0, 0, 2}, h.depth(t, queueURL))

	clk.Advance(2 * time.Second)
	msgs := h.receive(t, queueURL, 10, 0)
	require.Len(t, msgs, 1, "the per-message delay overrides the queue's")
	assert.Equal(t, messageDelayed, aws.ToString(msgs[0].MessageId))

	clk.Advance(3 * time.Second)
	msgs = h.receive(t, queueURL, 10, 0)
	require.Len(t, msgs, 1)
	assert.Equal(t, queueDelayed, aws.ToString(msgs[0].MessageId))
}

func TestReceiveMessage_LongPollWakesWhenDelayedMessageBecomesAvailable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "delayed-real-time", nil)
	_, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("later"), DelaySeconds: 1})
	require.NoError(t, err)

	start := time.Now()
	msgs := h.receive(t, queueURL, 1, 10)
	elapsed := time.Since(start)
	require.Len(t, msgs, 1)
	assert.GreaterOrEqual(t, elapsed, 800*time.Millisecond)
	assert.Less(t, elapsed, 5*time.Second)
}

func TestReceiveMessage_LongPollEndsOnWallClockEvenWithFrozenServiceClock(t *testing.T) {
	t.Parallel()
	clk := newClock()
	h := newHarness(t, Options{Now: clk.Now})
	queueURL := h.createQueue(t, "frozen", nil)
	_, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("x"), DelaySeconds: 5})
	require.NoError(t, err)

	start := time.Now()
	assert.Empty(t, h.receive(t, queueURL, 1, 1), "the delay runs on the service clock, which is frozen")
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestVisibilityTimeout_ExpiryRedeliversWithNewHandle(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	ctx := t.Context()
	queueURL := h.createQueue(t, "visibility", map[string]string{"VisibilityTimeout": "1"})
	id := h.send(t, queueURL, "redeliver me")

	first := h.receive(t, queueURL, 1, 0)
	require.Len(t, first, 1)
	assert.Empty(t, h.receive(t, queueURL, 1, 0), "an in-flight message is invisible")

	second := h.receive(t, queueURL, 1, 10)
	require.Len(t, second, 1)
	assert.Equal(t, id, aws.ToString(second[0].MessageId))
	assert.Equal(t, "2", second[0].Attributes["ApproximateReceiveCount"])
	assert.Equal(t, first[0].Attributes["ApproximateFirstReceiveTimestamp"], second[0].Attributes["ApproximateFirstReceiveTimestamp"])
	assert.NotEqual(t, aws.ToString(first[0].ReceiptHandle), aws.ToString(second[0].ReceiptHandle))

	_, err := h.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: first[0].ReceiptHandle})
	require.NoError(t, err, "a stale handle is accepted")
	assert.Equal(t, [3]int{0, 1, 0}, h.depth(t, queueURL), "but deletes nothing while another receive holds the message")

	_, err = h.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(queueURL), ReceiptHandle: first[0].ReceiptHandle, VisibilityTimeout: 0})
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr, "only the latest handle may change visibility")
	assert.Equal(t, "InvalidParameterValue", apiErr.ErrorCode())

	_, err = h.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: second[0].ReceiptHandle})
	require.NoError(t, err)
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, queueURL))
}

func TestChangeMessageVisibility_ZeroMakesMessageVisibleAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	ctx := t.Context()
	queueURL := h.createQueue(t, "change-visibility", map[string]string{"VisibilityTimeout": "300"})
	h.send(t, queueURL, "x")

	first := h.receive(t, queueURL, 1, 0)
	require.Len(t, first, 1)
	assert.Empty(t, h.receive(t, queueURL, 1, 0))

	_, err := h.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(queueURL), ReceiptHandle: first[0].ReceiptHandle, VisibilityTimeout: 0})
	require.NoError(t, err)
	again := h.receive(t, queueURL, 1, 0)
	require.Len(t, again, 1)
	assert.Equal(t, "2", again[0].Attributes["ApproximateReceiveCount"])

	_, err = h.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(queueURL), ReceiptHandle: again[0].ReceiptHandle, VisibilityTimeout: 0})
	require.NoError(t, err)
	_, err = h.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(queueURL), ReceiptHandle: again[0].ReceiptHandle, VisibilityTimeout: 10})
	var notInflight *types.MessageNotInflight
	assert.ErrorAs(t, err, &notInflight, "a visible message is not in flight")
}

func TestReceiveMessage_LongPollReturnsAsSoonAsMessageArrives(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "long-poll", nil)

	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = h.client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("wake up")})
	}()
	start := time.Now()
	msgs := h.receive(t, queueURL, 10, 20)
	elapsed := time.Since(start)
	require.Len(t, msgs, 1)
	assert.Equal(t, "wake up", aws.ToString(msgs[0].Body))
	assert.Less(t, elapsed, 5*time.Second, "the poll must not run to its 20 s limit")
}

func TestReceiveMessage_LongPollOnEmptyQueueEndsAfterWaitTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "long-poll-empty", map[string]string{"ReceiveMessageWaitTimeSeconds": "1"})

	start := time.Now()
	msgs := h.receive(t, queueURL, 1, 0) // the queue's wait time applies
	elapsed := time.Since(start)
	assert.Empty(t, msgs)
	assert.GreaterOrEqual(t, elapsed, 900*time.Millisecond)
	assert.Less(t, elapsed, 5*time.Second)
}

func TestRedrivePolicy_MovesMessageToDeadLetterQueueAfterMaxReceiveCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		maxReceiveCount string
	}{
		{"count as string", `"2"`},
		{"count as number", `2`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			ctx := t.Context()
			dlqURL := h.createQueue(t, "dlq", nil)
			dlqARN, err := h.svc.QueueARN(dlqURL)
			require.NoError(t, err)
			policy := `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":` + tt.maxReceiveCount + `}`
			// Visibility 0 makes a received message visible again at once.
			queueURL := h.createQueue(t, "source", map[string]string{"VisibilityTimeout": "0", "RedrivePolicy": policy})
			id := h.send(t, queueURL, "poison")

			for want := 1; want <= 2; want++ {
				msgs := h.receive(t, queueURL, 1, 0)
				require.Len(t, msgs, 1)
				assert.Equal(t, strconv.Itoa(want), msgs[0].Attributes["ApproximateReceiveCount"])
			}
			assert.Empty(t, h.receive(t, queueURL, 1, 0), "a third receive would exceed maxReceiveCount")
			assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, queueURL))

			moved := h.receive(t, dlqURL, 1, 0)
			require.Len(t, moved, 1)
			assert.Equal(t, id, aws.ToString(moved[0].MessageId))
			assert.Equal(t, "poison", aws.ToString(moved[0].Body))
			sourceARN, err := h.svc.QueueARN(queueURL)
			require.NoError(t, err)
			assert.Equal(t, sourceARN, moved[0].Attributes["DeadLetterQueueSourceArn"])

			attrs, err := h.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
				QueueUrl: aws.String(queueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameRedrivePolicy},
			})
			require.NoError(t, err)
			assert.JSONEq(t, `{"deadLetterTargetArn":"`+dlqARN+`","maxReceiveCount":2}`, attrs.Attributes["RedrivePolicy"])
		})
	}
}

func TestRedrivePolicy_RejectsMissingDeadLetterQueue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	_, err := h.client.CreateQueue(t.Context(), &sqs.CreateQueueInput{
		QueueName:  aws.String("orphan"),
		Attributes: map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:nope","maxReceiveCount":"3"}`},
	})
	var invalid *types.InvalidAttributeValue
	assert.ErrorAs(t, err, &invalid)
}

func TestGetQueueAttributes_ReportsSettingsAndCounts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{Region: "eu-west-1", AccountID: "123456789012"})
	ctx := t.Context()
	queueURL := h.createQueue(t, "counted", map[string]string{"VisibilityTimeout": "60", "MessageRetentionPeriod": "3600"})
	for range 3 {
		h.send(t, queueURL, "m")
	}
	_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("later"), DelaySeconds: 600})
	require.NoError(t, err)
	require.Len(t, h.receive(t, queueURL, 1, 0), 1)

	all, err := h.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	require.NoError(t, err)
	assert.Equal(t, "2", all.Attributes["ApproximateNumberOfMessages"])
	assert.Equal(t, "1", all.Attributes["ApproximateNumberOfMessagesNotVisible"])
	assert.Equal(t, "1", all.Attributes["ApproximateNumberOfMessagesDelayed"])
	assert.Equal(t, "60", all.Attributes["VisibilityTimeout"])
	assert.Equal(t, "3600", all.Attributes["MessageRetentionPeriod"])
	assert.Equal(t, "0", all.Attributes["DelaySeconds"])
	assert.Equal(t, "0", all.Attributes["ReceiveMessageWaitTimeSeconds"])
	assert.Equal(t, "arn:aws:sqs:eu-west-1:123456789012:counted", all.Attributes["QueueArn"])
	created, err := strconv.ParseInt(all.Attributes["CreatedTimestamp"], 10, 64)
	require.NoError(t, err)
	assert.InDelta(t, time.Now().Unix(), created, 60)
	assert.NotContains(t, all.Attributes, "RedrivePolicy")

	named, err := h.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout, types.QueueAttributeNameApproximateNumberOfMessages},
	})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"VisibilityTimeout": "60", "ApproximateNumberOfMessages": "2"}, named.Attributes)

	_, err = h.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(queueURL), Attributes: map[string]string{"VisibilityTimeout": "5"}})
	require.NoError(t, err)
	named, err = h.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(queueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout},
	})
	require.NoError(t, err)
	assert.Equal(t, "5", named.Attributes["VisibilityTimeout"])
}

func TestPurgeQueue_DeletesEveryMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	ctx := t.Context()
	queueURL := h.createQueue(t, "purged", nil)
	for range 5 {
		h.send(t, queueURL, "m")
	}
	_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("later"), DelaySeconds: 60})
	require.NoError(t, err)
	held := h.receive(t, queueURL, 2, 0)
	require.Len(t, held, 2)
	assert.Equal(t, [3]int{3, 2, 1}, h.depth(t, queueURL))

	_, err = h.client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(queueURL)})
	require.NoError(t, err)
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, queueURL))
	assert.Empty(t, h.receive(t, queueURL, 10, 0))
	_, err = h.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: held[0].ReceiptHandle})
	assert.NoError(t, err, "deleting a purged message is a no-op")
}

func TestMessageRetention_DropsMessagesOlderThanRetentionPeriod(t *testing.T) {
	t.Parallel()
	clk := newClock()
	h := newHarness(t, Options{Now: clk.Now})
	queueURL := h.createQueue(t, "retention", map[string]string{"MessageRetentionPeriod": "60"})
	h.send(t, queueURL, "old")
	clk.Advance(30 * time.Second)
	h.send(t, queueURL, "young")

	clk.Advance(31 * time.Second)
	assert.Equal(t, [3]int{1, 0, 0}, h.depth(t, queueURL))
	msgs := h.receive(t, queueURL, 10, 0)
	require.Len(t, msgs, 1)
	assert.Equal(t, "young", aws.ToString(msgs[0].Body))
}

func TestErrors_MissingQueueIsQueueDoesNotExist(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	missing := aws.String(h.url + "/000000000000/missing")
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"GetQueueUrl", func(ctx context.Context) error {
			_, err := h.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("missing")})
			return err
		}},
		{"SendMessage", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: missing, MessageBody: aws.String("x")})
			return err
		}},
		{"ReceiveMessage", func(ctx context.Context) error {
			_, err := h.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: missing})
			return err
		}},
		{"GetQueueAttributes", func(ctx context.Context) error {
			_, err := h.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: missing})
			return err
		}},
		{"DeleteQueue", func(ctx context.Context) error {
			_, err := h.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: missing})
			return err
		}},
		{"PurgeQueue", func(ctx context.Context) error {
			_, err := h.client.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: missing})
			return err
		}},
		{"wrong account", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(h.url + "/111111111111/present"), MessageBody: aws.String("x")})
			return err
		}},
	}
	h.createQueue(t, "present", nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			var notFound *types.QueueDoesNotExist
			require.ErrorAs(t, err, &notFound)
			assert.Equal(t, "AWS.SimpleQueueService.NonExistentQueue", notFound.ErrorCode(), "the legacy code SQS sends in x-amzn-query-error")
		})
	}

	_, err := h.svc.QueueARN(aws.ToString(missing))
	assert.ErrorIs(t, err, ErrQueueDoesNotExist)
	_, _, _, err = h.svc.Depth(aws.ToString(missing))
	assert.ErrorIs(t, err, ErrQueueDoesNotExist)
}

func TestErrors_InvalidRequestsAreRejectedWithSQSCodes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := aws.String(h.createQueue(t, "strict", nil))
	tests := []struct {
		name string
		call func(ctx context.Context) error
		code string
	}{
		{"too many messages requested", func(ctx context.Context) error {
			_, err := h.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queueURL, MaxNumberOfMessages: 11})
			return err
		}, "InvalidParameterValue"},
		{"wait time over 20 s", func(ctx context.Context) error {
			_, err := h.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queueURL, WaitTimeSeconds: 21})
			return err
		}, "InvalidParameterValue"},
		{"message over 1 MiB", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String(strings.Repeat("a", 1<<20+1))})
			return err
		}, "InvalidParameterValue"},
		{"empty body", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("")})
			return err
		}, "MissingParameter"},
		{"garbage receipt handle", func(ctx context.Context) error {
			_, err := h.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: queueURL, ReceiptHandle: aws.String("not-a-handle!")})
			return err
		}, "ReceiptHandleIsInvalid"},
		{"unknown queue attribute", func(ctx context.Context) error {
			_, err := h.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: queueURL, Attributes: map[string]string{"Colour": "blue"}})
			return err
		}, "InvalidAttributeName"},
		{"visibility timeout out of range", func(ctx context.Context) error {
			_, err := h.client.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: queueURL, Attributes: map[string]string{"VisibilityTimeout": "43201"}})
			return err
		}, "InvalidAttributeValue"},
		{"invalid queue name", func(ctx context.Context) error {
			_, err := h.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("no spaces allowed")})
			return err
		}, "InvalidParameterValue"},
		{"reserved attribute name", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("x"),
				MessageAttributes: map[string]types.MessageAttributeValue{"AWS.x": {DataType: aws.String("String"), StringValue: aws.String("v")}}})
			return err
		}, "InvalidParameterValue"},
		{"unsupported operation", func(ctx context.Context) error {
			_, err := h.client.AddPermission(ctx, &sqs.AddPermissionInput{QueueUrl: queueURL, Label: aws.String("l"), AWSAccountIds: []string{"1"}, Actions: []string{"SendMessage"}})
			return err
		}, "AWS.SimpleQueueService.UnsupportedOperation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			var apiErr smithy.APIError
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tt.code, apiErr.ErrorCode())
			assert.Equal(t, smithy.FaultClient, apiErr.ErrorFault())
		})
	}
}

func TestServeHTTP_UnknownOperationIsRejectedInJSONProtocolForm(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	tests := []struct {
		name   string
		method string
		target string
	}{
		{"unknown operation", http.MethodPost, "AmazonSQS.FlyToTheMoon"},
		{"missing target", http.MethodPost, ""},
		{"wrong method", http.MethodGet, "AmazonSQS.ListQueues"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, h.url+"/", strings.NewReader("{}"))
			require.NoError(t, err)
			req.Header.Set("X-Amz-Target", tt.target)
			req.Header.Set("Content-Type", "application/x-amz-json-1.0")
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Equal(t, "application/x-amz-json-1.0", resp.Header.Get("Content-Type"))
			assert.Contains(t, string(body), `"__type":"com.amazon.coral.service#UnknownOperationException"`)
		})
	}
}

func TestCreateQueue_IsIdempotentForEqualAttributes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{BaseURL: "http://127.0.0.1:4566"})
	ctx := t.Context()

	url, err := h.svc.CreateQueue("jobs", map[string]string{"VisibilityTimeout": "10"})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:4566/000000000000/jobs", url)

	again, err := h.svc.CreateQueue("jobs", map[string]string{"VisibilityTimeout": "10"})
	require.NoError(t, err)
	assert.Equal(t, url, again)

	out, err := h.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs"), Attributes: map[string]string{"VisibilityTimeout": "10"}})
	require.NoError(t, err)
	assert.Equal(t, url, aws.ToString(out.QueueUrl))

	_, err = h.svc.CreateQueue("jobs", map[string]string{"VisibilityTimeout": "11"})
	assert.ErrorIs(t, err, ErrQueueNameExists)
	_, err = h.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("jobs"), Attributes: map[string]string{"VisibilityTimeout": "11"}})
	var exists *types.QueueNameExists
	assert.ErrorAs(t, err, &exists)

	got, err := h.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("jobs")})
	require.NoError(t, err)
	assert.Equal(t, url, aws.ToString(got.QueueUrl))

	_, err = h.client.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	require.NoError(t, err)
	_, err = h.svc.QueueARN(url)
	assert.ErrorIs(t, err, ErrQueueDoesNotExist)
}

func TestListQueues_FiltersByPrefixAndPaginates(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	ctx := t.Context()
	for _, name := range []string{"app-c", "app-a", "other", "app-b"} {
		h.createQueue(t, name, nil)
	}
	all, err := h.client.ListQueues(ctx, &sqs.ListQueuesInput{QueueNamePrefix: aws.String("app-")})
	require.NoError(t, err)
	require.Len(t, all.QueueUrls, 3)
	assert.True(t, strings.HasSuffix(all.QueueUrls[0], "/app-a"))
	assert.Nil(t, all.NextToken)

	var pages [][]string
	p := sqs.NewListQueuesPaginator(h.client, &sqs.ListQueuesInput{MaxResults: aws.Int32(3)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		require.NoError(t, err)
		pages = append(pages, page.QueueUrls)
	}
	require.Len(t, pages, 2)
	assert.Len(t, pages[0], 3)
	assert.Len(t, pages[1], 1)
	assert.True(t, strings.HasSuffix(pages[1][0], "/other"))
}

func TestDeleteQueue_EndsLongPollWithQueueDoesNotExist(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "doomed", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := h.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), WaitTimeSeconds: 20})
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	_, err := h.client.DeleteQueue(t.Context(), &sqs.DeleteQueueInput{QueueUrl: aws.String(queueURL)})
	require.NoError(t, err)
	select {
	case err := <-errc:
		var notFound *types.QueueDoesNotExist
		assert.True(t, errors.As(err, &notFound), "got %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not end when its queue was deleted")
	}
}

func TestClose_EndsLongPolls(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "closing", nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = h.client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(queueURL), WaitTimeSeconds: 20})
	}()
	time.Sleep(200 * time.Millisecond)
	h.svc.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("long poll did not end on Close")
	}
}

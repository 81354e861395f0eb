package sqslocal

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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
	t.Cleanup(svc.Close)
	client := sqs.New(sqs.Options{
		BaseEndpoint: aws.String(srv.URL),
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(testAccessKey, "secret", ""),
	})
	return &harness{svc: svc, client: client, url: srv.URL}
}

func (h *harness) createQueue(t *testing.T, name string, attrs map[string]string) string {
	t.Helper()
	queueURL, err := h.svc.CreateQueue(name, attrs)
	require.NoError(t, err)
	return queueURL
}

func (h *harness) send(t *testing.T, queueURL, body string) string {
	t.Helper()
	out, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)})
	require.NoError(t, err)
	return aws.ToString(out.MessageId)
}

func (h *harness) depth(t *testing.T, queueURL string) [3]int {
	t.Helper()
	visible, inFlight, delayed, err := h.svc.Depth(queueURL)
	require.NoError(t, err)
	return [3]int{visible, inFlight, delayed}
}

// stored returns the bodies of the messages a queue holds, by message id.
func (h *harness) stored(t *testing.T, queueURL string) map[string]string {
	t.Helper()
	h.svc.mu.Lock()
	defer h.svc.mu.Unlock()
	q, ok := h.svc.queueByURL(queueURL)
	require.True(t, ok, queueURL)
	out := map[string]string{}
	for id, m := range q.messages {
		out[id] = m.body
	}
	return out
}

// requireCode asserts err is the SQS error code, a client fault.
func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, code, apiErr.ErrorCode())
	assert.Equal(t, smithy.FaultClient, apiErr.ErrorFault())
}

func TestSendMessage_AnswersWithIDAndChecksumTheSDKValidates(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "sent", nil)
	body := `{"hello":"wörld ✓"}`

	out, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String(body)})
	require.NoError(t, err, "the SDK checks MD5OfMessageBody")
	assert.Equal(t, md5Hex(body), aws.ToString(out.MD5OfMessageBody))
	assert.Equal(t, map[string]string{aws.ToString(out.MessageId): body}, h.stored(t, queueURL))
	assert.Equal(t, [3]int{1, 0, 0}, h.depth(t, queueURL))
}

func TestSendMessage_DelayHidesMessageUntilItPasses(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := h.createQueue(t, "delayed", nil)
	start := time.Now()
	_, err := h.client.SendMessage(t.Context(), &sqs.SendMessageInput{QueueUrl: aws.String(queueURL), MessageBody: aws.String("later"), DelaySeconds: 1})
	require.NoError(t, err)
	assert.Equal(t, [3]int{0, 0, 1}, h.depth(t, queueURL))

	eventually(t, func() bool { return h.depth(t, queueURL) == [3]int{1, 0, 0} }, "the message becomes visible")
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
}

func TestSendMessage_RefusesMembersThisEmulatorDoesNotImplement(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	queueURL := aws.String(h.createQueue(t, "plain", nil))
	tests := []struct {
		name string
		in   sqs.SendMessageInput
	}{
		{"message attributes", sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("x"),
			MessageAttributes: map[string]types.MessageAttributeValue{"kind": {DataType: aws.String("String"), StringValue: aws.String("a")}}}},
		{"system attributes", sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("x"),
			MessageSystemAttributes: map[string]types.MessageSystemAttributeValue{"AWSTraceHeader": {DataType: aws.String("String"), StringValue: aws.String("t")}}}},
		{"group id", sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("x"), MessageGroupId: aws.String("g")}},
		{"deduplication id", sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("x"), MessageDeduplicationId: aws.String("d")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.SendMessage(t.Context(), &tt.in)
			var unsupported *types.UnsupportedOperation
			require.ErrorAs(t, err, &unsupported)
		})
	}
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, aws.ToString(queueURL)), "nothing is sent half-understood")
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
			{Id: aws.String("ok-2"), MessageBody: aws.String("three"), DelaySeconds: 900},
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
	assert.Equal(t, [3]int{1, 0, 1}, h.depth(t, queueURL), "a delay of 15 minutes is allowed")
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

func TestErrors_MissingQueueIsQueueDoesNotExist(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	missing := aws.String(h.url + "/000000000000/missing")
	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"SendMessage", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: missing, MessageBody: aws.String("x")})
			return err
		}},
		{"SendMessageBatch", func(ctx context.Context) error {
			_, err := h.client.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: missing,
				Entries: []types.SendMessageBatchRequestEntry{{Id: aws.String("a"), MessageBody: aws.String("x")}}})
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
		{"message over 1 MiB", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String(strings.Repeat("a", 1<<20+1))})
			return err
		}, "InvalidParameterValue"},
		{"delay over 15 minutes", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("x"), DelaySeconds: 901})
			return err
		}, "InvalidParameterValue"},
		{"empty body", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("")})
			return err
		}, "MissingParameter"},
		{"invalid characters", func(ctx context.Context) error {
			_, err := h.client.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queueURL, MessageBody: aws.String("\uFFFF")})
			return err
		}, "InvalidMessageContents"},
		{"an operation this emulator does not serve", func(ctx context.Context) error {
			_, err := h.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: queueURL})
			return err
		}, "AWS.SimpleQueueService.UnsupportedOperation"},
		{"queues are made by the stack", func(ctx context.Context) error {
			_, err := h.client.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("mine")})
			return err
		}, "AWS.SimpleQueueService.UnsupportedOperation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireCode(t, tt.call(t.Context()), tt.code)
		})
	}
	assert.Equal(t, [3]int{0, 0, 0}, h.depth(t, aws.ToString(queueURL)))
}

func TestServeHTTP_RefusalsAreInJSONProtocolForm(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Options{})
	tests := []struct {
		name   string
		method string
		target string
		body   string
		want   string
	}{
		{"missing target", http.MethodPost, "", "{}", `"__type":"com.amazon.coral.service#UnknownOperationException"`},
		{"wrong method", http.MethodGet, "AmazonSQS.SendMessage", "{}", `"__type":"com.amazon.coral.service#UnknownOperationException"`},
		{"unserved operation", http.MethodPost, "AmazonSQS.PurgeQueue", "{}", `"__type":"com.amazonaws.sqs#UnsupportedOperation"`},
		{"not JSON", http.MethodPost, "AmazonSQS.SendMessage", "{", `"__type":"com.amazon.coral.service#SerializationException"`},
		{"data after the object", http.MethodPost, "AmazonSQS.SendMessage", `{"MessageBody":"x"} {}`, `"__type":"com.amazon.coral.service#SerializationException"`},
		{"no queue", http.MethodPost, "AmazonSQS.SendMessage", `{"MessageBody":"x"}`, `"__type":"com.amazonaws.sqs#MissingParameter"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tt.method, h.url+"/", strings.NewReader(tt.body))
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
			assert.Contains(t, string(body), tt.want)
		})
	}
}

func TestCreateQueue_ReturnsURLUnderBaseURLAndRefusesWhatItCannotHonour(t *testing.T) {
	t.Parallel()
	svc := New(Options{BaseURL: "http://127.0.0.1:4566/"})
	t.Cleanup(svc.Close)

	dlq, err := svc.CreateQueue("jobs-dlq", nil)
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:4566/000000000000/jobs-dlq", dlq)
	dlqARN, err := svc.QueueARN(dlq)
	require.NoError(t, err)
	assert.Equal(t, "arn:aws:sqs:us-east-1:000000000000:jobs-dlq", dlqARN)

	tests := []struct {
		name  string
		queue string
		attrs map[string]string
		want  error
	}{
		{"name in use", "jobs-dlq", nil, ErrQueueNameExists},
		{"invalid name", "no spaces", nil, ErrInvalidParameterValue},
		{"FIFO", "jobs.fifo", nil, ErrInvalidParameterValue},
		{"unsupported attribute", "jobs", map[string]string{"DelaySeconds": "5"}, ErrInvalidAttributeName},
		{"visibility timeout out of range", "jobs", map[string]string{"VisibilityTimeout": "43201"}, ErrInvalidAttributeValue},
		{"missing dead-letter queue", "jobs", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:nope","maxReceiveCount":3}`}, ErrInvalidAttributeValue},
		{"maxReceiveCount out of range", "jobs", map[string]string{"RedrivePolicy": `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":0}`}, ErrInvalidAttributeValue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := svc.CreateQueue(tt.queue, tt.attrs)
			assert.ErrorIs(t, err, tt.want)
		})
	}

	for _, count := range []string{`2`, `"2"`} {
		_, err := svc.CreateQueue("jobs"+strconv.Itoa(len(count)), map[string]string{
			"VisibilityTimeout": "60",
			"RedrivePolicy":     `{"deadLetterTargetArn":"` + dlqARN + `","maxReceiveCount":` + count + `}`,
		})
		assert.NoError(t, err, "maxReceiveCount as a number or a string, as SQS takes it")
	}
}

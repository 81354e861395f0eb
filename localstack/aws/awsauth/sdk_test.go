package awsauth_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/awsauth"
)

// stub stands in for the local services behind the verifier: it answers
// each SDK call with a minimal valid response and records what reached it.
type stub struct {
	mu       sync.Mutex
	bodies   []string
	uris     []string
	tokens   []string
	requests atomic.Int64
	chunked  atomic.Bool // a request came chunked
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.requests.Add(1)
	s.chunked.Store(slices.Contains(r.TransferEncoding, "chunked"))
	s.mu.Lock()
	s.bodies = append(s.bodies, string(body))
	s.uris = append(s.uris, r.RequestURI)
	s.tokens = append(s.tokens, r.Header.Get("X-Amz-Security-Token"))
	s.mu.Unlock()
	target := r.Header.Get("X-Amz-Target")
	switch {
	case strings.HasPrefix(target, "DynamoDB_20120810."):
		out := []byte(`{}`)
		w.Header().Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(out)), 10))
		_, _ = w.Write(out)
	case target == "AWSEvents.PutEvents":
		_, _ = w.Write([]byte(`{"FailedEntryCount":0,"Entries":[{"EventId":"e-1"}]}`))
	case target == "AmazonSQS.SendMessage":
		var in struct{ MessageBody string }
		_ = json.Unmarshal(body, &in)
		sum := md5.Sum([]byte(in.MessageBody)) // the SQS client checks it
		_ = json.NewEncoder(w).Encode(map[string]string{"MessageId": "m-1", "MD5OfMessageBody": hex.EncodeToString(sum[:])})
	default: // @connections POST
		w.WriteHeader(http.StatusOK)
	}
}

func (s *stub) last() (body, uri, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.bodies) - 1
	return s.bodies[n], s.uris[n], s.tokens[n]
}

// serve starts the stub behind a verifier with opts.
func serve(t *testing.T, opts awsauth.Options) (*stub, *httptest.Server, *awsauth.Verifier) {
	t.Helper()
	s := &stub{}
	v, err := awsauth.Verify(s, opts)
	require.NoError(t, err)
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	return s, srv, v
}

// client is how a test calls one service through a real SDK client.
type client struct {
	service string
	// marker is a string of the call's body the stub must see.
	marker string
	call   func(ctx context.Context, base string, creds aws.CredentialsProvider, hc aws.HTTPClient, apiOpts ...func(*middleware.Stack) error) error
}

func clients() []client {
	const region = "us-east-1"
	return []client{
		{service: "dynamodb", marker: "dynamo-marker", call: func(ctx context.Context, base string, creds aws.CredentialsProvider, hc aws.HTTPClient, apiOpts ...func(*middleware.Stack) error) error {
			c := dynamodb.New(dynamodb.Options{Region: region, BaseEndpoint: aws.String(base), Credentials: creds, HTTPClient: hc, RetryMaxAttempts: 1, APIOptions: apiOpts})
			_, err := c.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String("t"), Item: map[string]ddbtypes.AttributeValue{
				"pk": &ddbtypes.AttributeValueMemberS{Value: "dynamo-marker"}}})
			return err
		}},
		{service: "events", marker: "events-marker", call: func(ctx context.Context, base string, creds aws.CredentialsProvider, hc aws.HTTPClient, apiOpts ...func(*middleware.Stack) error) error {
			c := eventbridge.New(eventbridge.Options{Region: region, BaseEndpoint: aws.String(base), Credentials: creds, HTTPClient: hc, RetryMaxAttempts: 1, APIOptions: apiOpts})
			_, err := c.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
				Source: aws.String("test"), DetailType: aws.String("t"), Detail: aws.String(`{"m":"events-marker"}`)}}})
			return err
		}},
		{service: "sqs", marker: "sqs-marker", call: func(ctx context.Context, base string, creds aws.CredentialsProvider, hc aws.HTTPClient, apiOpts ...func(*middleware.Stack) error) error {
			c := sqs.New(sqs.Options{Region: region, BaseEndpoint: aws.String(base), Credentials: creds, HTTPClient: hc, RetryMaxAttempts: 1, APIOptions: apiOpts})
			_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(base + "/000000000000/q"), MessageBody: aws.String("sqs-marker")})
			return err
		}},
		{service: "execute-api", marker: "management-marker", call: func(ctx context.Context, base string, creds aws.CredentialsProvider, hc aws.HTTPClient, apiOpts ...func(*middleware.Stack) error) error {
			c := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{Region: region, BaseEndpoint: aws.String(base + "/prod"), Credentials: creds, HTTPClient: hc, RetryMaxAttempts: 1, APIOptions: apiOpts})
			_, err := c.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String("L1a2b="), Data: []byte("management-marker")})
			return err
		}},
	}
}

func static(key, secret, token string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(key, secret, token)
}

func devCreds() aws.CredentialsProvider {
	d := awsauth.Dev()
	return static(d.AccessKeyID, d.SecretAccessKey, "")
}

// requireAPIError asserts err is the service error code, sent with status.
func requireAPIError(t *testing.T, err error, code string, status int) smithy.APIError {
	t.Helper()
	var apiErr smithy.APIError
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, code, apiErr.ErrorCode(), "%v", err)
	var respErr *awshttp.ResponseError
	require.ErrorAs(t, err, &respErr)
	assert.Equal(t, status, respErr.HTTPStatusCode(), "%v", err)
	return apiErr
}

func TestVerify_SDKClientsWithDevCredentialsReachTheService(t *testing.T) {
	for _, c := range clients() {
		t.Run(c.service, func(t *testing.T) {
			s, srv, v := serve(t, awsauth.Options{})
			require.NoError(t, c.call(t.Context(), srv.URL, devCreds(), nil))
			assert.EqualValues(t, 1, s.requests.Load())
			body, _, _ := s.last()
			assert.Contains(t, body, c.marker, "the body is passed on after hashing")
			assert.Equal(t, awsauth.Counts{Verified: 1}, v.Counts())
		})
	}
}

// refusals are the error codes and status each service answers
// authentication failures with, as its SDK client decodes them.
var refusals = map[string]struct {
	status                            int
	badSignature, unknownKey, missing string
}{
	"dynamodb":    {http.StatusBadRequest, "InvalidSignatureException", "UnrecognizedClientException", "MissingAuthenticationTokenException"},
	"events":      {http.StatusBadRequest, "InvalidSignatureException", "UnrecognizedClientException", "MissingAuthenticationTokenException"},
	"sqs":         {http.StatusForbidden, "SignatureDoesNotMatch", "InvalidClientTokenId", "MissingAuthenticationToken"},
	"execute-api": {http.StatusForbidden, "InvalidSignatureException", "UnrecognizedClientException", "MissingAuthenticationTokenException"},
}

func TestVerify_AuthenticationFailuresGetTheServiceError(t *testing.T) {
	dev := awsauth.Dev()
	tests := []struct {
		name  string
		creds aws.CredentialsProvider
		code  func(service string) string
	}{
		{"wrong secret", static(dev.AccessKeyID, "not-the-secret", ""), func(s string) string { return refusals[s].badSignature }},
		{"unknown key", static("AKIDUNKNOWN", dev.SecretAccessKey, ""), func(s string) string { return refusals[s].unknownKey }},
		{"unsigned", aws.AnonymousCredentials{}, func(s string) string { return refusals[s].missing }},
	}
	for _, tt := range tests {
		for _, c := range clients() {
			t.Run(tt.name+"/"+c.service, func(t *testing.T) {
				s, srv, v := serve(t, awsauth.Options{})
				err := c.call(t.Context(), srv.URL, tt.creds, nil)
				requireAPIError(t, err, tt.code(c.service), refusals[c.service].status)
				assert.Zero(t, s.requests.Load(), "the service is not reached")
				assert.Equal(t, awsauth.Counts{Refused: 1}, v.Counts())
			})
		}
	}
}

func TestVerify_RequestTimeOutsideTheServiceWindowIsRefused(t *testing.T) {
	windows := map[string]time.Duration{"dynamodb": 15 * time.Minute, "sqs": 15 * time.Minute, "events": 5 * time.Minute, "execute-api": 5 * time.Minute}
	tests := []struct {
		name    string
		offset  func(window time.Duration) time.Duration // server clock minus client clock
		message string                                   // "" when the request passes
	}{
		{"stale", func(w time.Duration) time.Duration { return w + time.Minute }, "Signature expired: "},
		{"future", func(w time.Duration) time.Duration { return -w - time.Minute }, "Signature not yet current: "},
		{"late but inside", func(w time.Duration) time.Duration { return w - time.Minute }, ""},
		{"early but inside", func(w time.Duration) time.Duration { return -w + time.Minute }, ""},
	}
	for _, tt := range tests {
		for _, c := range clients() {
			t.Run(tt.name+"/"+c.service, func(t *testing.T) {
				offset := tt.offset(windows[c.service])
				s, srv, _ := serve(t, awsauth.Options{Now: func() time.Time { return time.Now().Add(offset) }})
				err := c.call(t.Context(), srv.URL, devCreds(), nil)
				if tt.message == "" {
					require.NoError(t, err)
					assert.EqualValues(t, 1, s.requests.Load())
					return
				}
				apiErr := requireAPIError(t, err, refusals[c.service].badSignature, refusals[c.service].status)
				assert.Contains(t, apiErr.ErrorMessage(), tt.message)
				assert.Contains(t, apiErr.ErrorMessage(), strconv.Itoa(int(windows[c.service]/time.Minute))+" min.)")
			})
		}
	}
}

func TestVerify_MaxSkewReplacesTheServiceWindows(t *testing.T) {
	s, srv, _ := serve(t, awsauth.Options{MaxSkew: time.Minute, Now: func() time.Time { return time.Now().Add(2 * time.Minute) }})
	err := clients()[0].call(t.Context(), srv.URL, devCreds(), nil)
	apiErr := requireAPIError(t, err, "InvalidSignatureException", http.StatusBadRequest)
	assert.Contains(t, apiErr.ErrorMessage(), " - 1 min.)", "the message names the window")
	assert.Zero(t, s.requests.Load())
}

// tamper replaces the body of a request after the SDK signed it, keeping
// its length.
func tamper(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("tamper", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		req := in.Request.(*smithyhttp.Request)
		body, err := io.ReadAll(req.GetStream())
		if err != nil {
			return middleware.FinalizeOutput{}, middleware.Metadata{}, err
		}
		body = bytes.Replace(body, []byte("marker"), []byte("MARKER"), 1)
		req, err = req.SetStream(bytes.NewReader(body))
		if err != nil {
			return middleware.FinalizeOutput{}, middleware.Metadata{}, err
		}
		in.Request = req
		return next.HandleFinalize(ctx, in)
	}), middleware.After)
}

func TestVerify_BodyTamperedAfterSigningIsRefused(t *testing.T) {
	for _, c := range clients() {
		t.Run(c.service, func(t *testing.T) {
			s, srv, _ := serve(t, awsauth.Options{})
			err := c.call(t.Context(), srv.URL, devCreds(), nil, tamper)
			requireAPIError(t, err, refusals[c.service].badSignature, refusals[c.service].status)
			assert.Zero(t, s.requests.Load())
		})
	}
}

func TestVerify_SessionTokens(t *testing.T) {
	tests := []struct {
		name   string
		key    awsauth.Credentials
		strict bool
		sent   string // the client's session token
		pass   bool
	}{
		{"key with token, same token", awsauth.Credentials{AccessKeyID: "k", SecretAccessKey: "s", SessionToken: "tok"}, false, "tok", true},
		{"key with token, other token", awsauth.Credentials{AccessKeyID: "k", SecretAccessKey: "s", SessionToken: "tok"}, false, "other", false},
		{"key with token, none sent", awsauth.Credentials{AccessKeyID: "k", SecretAccessKey: "s", SessionToken: "tok"}, false, "", false},
		{"key without token, token sent", awsauth.Credentials{AccessKeyID: "k", SecretAccessKey: "s"}, false, "lambda-token", true},
		{"key without token, token sent, strict", awsauth.Credentials{AccessKeyID: "k", SecretAccessKey: "s"}, true, "lambda-token", false},
		{"key without token, none sent, strict", awsauth.Credentials{AccessKeyID: "k", SecretAccessKey: "s"}, true, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv, _ := serve(t, awsauth.Options{Credentials: []awsauth.Credentials{tt.key}, StrictSessionToken: tt.strict})
			err := clients()[0].call(t.Context(), srv.URL, static(tt.key.AccessKeyID, tt.key.SecretAccessKey, tt.sent), nil)
			if !tt.pass {
				requireAPIError(t, err, "UnrecognizedClientException", http.StatusBadRequest)
				assert.Zero(t, s.requests.Load())
				return
			}
			require.NoError(t, err)
			_, _, token := s.last()
			assert.Equal(t, tt.sent, token)
		})
	}
}

func TestVerify_AnyOfSeveralKeysPasses(t *testing.T) {
	keys := []awsauth.Credentials{{AccessKeyID: "a", SecretAccessKey: "sa"}, {AccessKeyID: "b", SecretAccessKey: "sb"}}
	s, srv, _ := serve(t, awsauth.Options{Credentials: keys})
	for _, k := range keys {
		require.NoError(t, clients()[1].call(t.Context(), srv.URL, static(k.AccessKeyID, k.SecretAccessKey, ""), nil))
	}
	requireAPIError(t, clients()[1].call(t.Context(), srv.URL, static("a", "sb", ""), nil), "InvalidSignatureException", http.StatusBadRequest)
	assert.EqualValues(t, 2, s.requests.Load())
}

func TestVerify_ConnectionIDIsEscapedInThePathAndVerifies(t *testing.T) {
	s, srv, _ := serve(t, awsauth.Options{})
	require.NoError(t, clients()[3].call(t.Context(), srv.URL, devCreds(), nil))
	_, uri, _ := s.last()
	assert.Equal(t, "/prod/@connections/L1a2b%3D", uri, "the SDK escapes '=' in the connection id, and signs the path double-escaped")
}

package awsauth_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/awsauth"
)

// raw is a request signed with the SDK's signer outside any SDK client.
type raw struct {
	method, path string // path as sent, escaped
	target       string // X-Amz-Target, "" for none
	service      string // credential scope
	body         []byte
	creds        aws.Credentials
	at           time.Time // signing time; zero means now
	// prepare changes the request before it is signed.
	prepare func(*http.Request)
}

func (q raw) request(t *testing.T, base string) *http.Request {
	t.Helper()
	u, err := url.Parse(base + q.path)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(t.Context(), q.method, u.String(), bytes.NewReader(q.body))
	require.NoError(t, err)
	if q.target != "" {
		req.Header.Set("X-Amz-Target", q.target)
		req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	}
	if q.prepare != nil {
		q.prepare(req)
	}
	if q.creds.AccessKeyID == "" {
		d := awsauth.Dev()
		q.creds = aws.Credentials{AccessKeyID: d.AccessKeyID, SecretAccessKey: d.SecretAccessKey}
	}
	if q.at.IsZero() {
		q.at = time.Now()
	}
	sum := sha256.Sum256(q.body)
	require.NoError(t, v4.NewSigner().SignHTTP(t.Context(), q.creds, req, hex.EncodeToString(sum[:]), q.service, "eu-west-1", q.at))
	return req
}

// errorBody is a refusal as it comes over the wire.
type errorBody struct {
	status     int
	header     http.Header
	typ, msg   string
	rawMessage []byte
}

func do(t *testing.T, c *http.Client, req *http.Request) errorBody {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var body struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	if len(b) > 0 {
		require.NoError(t, json.Unmarshal(b, &body), "%s", b)
	}
	return errorBody{status: resp.StatusCode, header: resp.Header, typ: body.Type, msg: body.Message, rawMessage: b}
}

func ddbPut(body string) raw {
	return raw{method: http.MethodPost, path: "/", target: "DynamoDB_20120810.PutItem", service: "dynamodb", body: []byte(body)}
}

func post(id string) raw {
	return raw{method: http.MethodPost, path: "/prod/@connections/" + id, service: "execute-api", body: []byte("hello")}
}

func TestVerify_RawRequests(t *testing.T) {
	tamperBody := func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader(`{"TableName":"u"}`)) }
	tests := []struct {
		name    string
		req     raw
		after   func(*http.Request) // changes the signed request
		status  int                 // 200 when it passes
		typ     string              // __type or X-Amzn-ErrorType
		message string              // part of the message
	}{
		{name: "signed", req: ddbPut(`{"TableName":"t"}`), status: 200},
		{name: "GET without a body", req: raw{method: http.MethodGet, path: "/prod/@connections/abc", service: "execute-api"}, status: 200},
		{name: "query string", req: raw{method: http.MethodGet, path: "/prod/@connections/abc?b=2&a=1%2F", service: "execute-api"}, status: 200},
		{name: "connection id escaped as the SDK client does", req: post("L1a2b%3D"), status: 200},
		{name: "connection id unescaped as url.PathEscape leaves it", req: post("L1a2b="), status: 200},
		{name: "tampered body", req: ddbPut(`{"TableName":"t"}`), after: tamperBody,
			status: 400, typ: "com.amazon.coral.service#InvalidSignatureException", message: "does not match"},
		{name: "tampered body under a signed X-Amz-Content-Sha256", req: func() raw {
			q := ddbPut(`{"TableName":"t"}`)
			q.prepare = func(r *http.Request) {
				sum := sha256.Sum256(q.body)
				r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			}
			return q
		}(), after: tamperBody, status: 400, typ: "com.amazon.coral.service#InvalidSignatureException", message: "does not match"},
		{name: "replayed to another connection", req: post("abc"), after: func(r *http.Request) { r.URL.Path = "/prod/@connections/abd" },
			status: 403, typ: "InvalidSignatureException", message: "The Canonical String for this request should have been\n'POST\n/prod/%40connections/abd\n"},
		{name: "escaping changed after signing", req: post("L1a2b="), after: func(r *http.Request) { r.URL.RawPath = "/prod/@connections/L1a2b%3D" },
			status: 403, typ: "InvalidSignatureException", message: "does not match"},
		{name: "signed header changed", req: ddbPut(`{}`), after: func(r *http.Request) { r.Header.Set("X-Amz-Target", "DynamoDB_20120810.DeleteItem") },
			status: 400, typ: "com.amazon.coral.service#InvalidSignatureException"},
		{name: "unsigned header added", req: ddbPut(`{}`), after: func(r *http.Request) { r.Header.Set("X-Extra", "1") }, status: 200},
		{name: "host changed", req: ddbPut(`{}`), after: func(r *http.Request) { r.Host = "dynamodb.eu-west-1.amazonaws.com" },
			status: 400, typ: "com.amazon.coral.service#InvalidSignatureException"},
		{name: "scoped to another service", req: func() raw { q := ddbPut(`{}`); q.service = "sqs"; return q }(),
			status: 400, typ: "com.amazon.coral.service#InvalidSignatureException", message: "Credential should be scoped to correct service: 'dynamodb'."},
		{name: "no authorization", req: ddbPut(`{}`), after: func(r *http.Request) { r.Header.Del("Authorization") },
			status: 400, typ: "com.amazon.coral.service#MissingAuthenticationTokenException", message: "Request is missing Authentication Token"},
		{name: "no authorization on @connections", req: post("abc"), after: func(r *http.Request) { r.Header.Del("Authorization") },
			status: 403, typ: "MissingAuthenticationTokenException", message: "Missing Authentication Token"},
		{name: "presigned", req: raw{method: http.MethodGet, path: "/prod/@connections/abc?X-Amz-Signature=00&X-Amz-Credential=test", service: "execute-api"},
			after: func(r *http.Request) { r.Header.Del("Authorization") }, status: 403, typ: "IncompleteSignatureException", message: "presigned"},
		{name: "not SigV4", req: ddbPut(`{}`), after: func(r *http.Request) { r.Header.Set("Authorization", "Bearer abc") },
			status: 400, typ: "com.amazon.coral.service#IncompleteSignatureException"},
		{name: "no signature", req: ddbPut(`{}`), after: func(r *http.Request) {
			r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20240101/eu-west-1/dynamodb/aws4_request, SignedHeaders=host")
		}, status: 400, typ: "com.amazon.coral.service#IncompleteSignatureException", message: "Authorization header requires 'Signature' parameter."},
		{name: "no X-Amz-Date", req: ddbPut(`{}`), after: func(r *http.Request) { r.Header.Del("X-Amz-Date") },
			status: 400, typ: "com.amazon.coral.service#IncompleteSignatureException", message: "'X-Amz-Date'"},
		{name: "sqs", req: raw{method: http.MethodPost, path: "/", target: "AmazonSQS.ListQueues", service: "sqs", body: []byte(`{}`),
			creds: aws.Credentials{AccessKeyID: "test", SecretAccessKey: "wrong"}},
			status: 403, typ: "com.amazon.coral.service#InvalidSignatureException", message: "does not match"},
		{name: "eventbridge stale", req: raw{method: http.MethodPost, path: "/", target: "AWSEvents.PutEvents", service: "events", body: []byte(`{}`),
			at: time.Now().Add(-6 * time.Minute)}, status: 400, typ: "com.amazon.coral.service#InvalidSignatureException", message: " - 5 min.)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv, _ := serve(t, awsauth.Options{})
			req := tt.req.request(t, srv.URL)
			if tt.after != nil {
				tt.after(req)
			}
			got := do(t, srv.Client(), req)
			assert.Equal(t, tt.status, got.status, "%s", got.rawMessage)
			if tt.status == http.StatusOK {
				require.EqualValues(t, 1, s.requests.Load())
				body, _, _ := s.last()
				assert.Equal(t, string(tt.req.body), body)
				return
			}
			assert.Zero(t, s.requests.Load())
			typ := got.typ
			if typ == "" {
				typ = got.header.Get("X-Amzn-ErrorType")
			}
			assert.Equal(t, tt.typ, typ)
			assert.Contains(t, got.msg, tt.message)
			assert.NotEmpty(t, got.header.Get("X-Amzn-RequestId"))
		})
	}
}

func TestVerify_DynamoDBErrorsCarryTheirCRC32(t *testing.T) {
	_, srv, _ := serve(t, awsauth.Options{})
	req := ddbPut(`{}`).request(t, srv.URL)
	req.Header.Del("Authorization")
	got := do(t, srv.Client(), req)
	require.Equal(t, http.StatusBadRequest, got.status)
	assert.Equal(t, strconv.FormatUint(uint64(crc32.ChecksumIEEE(got.rawMessage)), 10), got.header.Get("X-Amz-Crc32"))
	assert.Equal(t, "application/x-amz-json-1.0", got.header.Get("Content-Type"))
}

func TestVerify_SQSErrorsCarryTheQueryCode(t *testing.T) {
	_, srv, _ := serve(t, awsauth.Options{})
	req := raw{method: http.MethodPost, path: "/", target: "AmazonSQS.ListQueues", service: "sqs", body: []byte(`{}`),
		creds: aws.Credentials{AccessKeyID: "nobody", SecretAccessKey: "x"}}.request(t, srv.URL)
	got := do(t, srv.Client(), req)
	assert.Equal(t, http.StatusForbidden, got.status)
	assert.Equal(t, "InvalidClientTokenId;Sender", got.header.Get("X-Amzn-Query-Error"))
	assert.Equal(t, "The security token included in the request is invalid.", got.msg)
}

func TestVerify_ChunkedBodyWithoutSignedContentLengthVerifies(t *testing.T) {
	s, srv, _ := serve(t, awsauth.Options{})
	q := ddbPut(`{"TableName":"chunked"}`)
	q.prepare = func(r *http.Request) {
		// Unknown length: the client sends the body chunked, and the
		// signer leaves content-length out.
		r.ContentLength = -1
		r.Body = io.NopCloser(iotest.OneByteReader(bytes.NewReader(q.body)))
	}
	req := q.request(t, srv.URL)
	require.NotContains(t, req.Header.Get("Authorization"), "content-length")
	got := do(t, srv.Client(), req)
	require.Equal(t, http.StatusOK, got.status, "%s", got.rawMessage)
	assert.True(t, s.chunked.Load(), "the request came chunked")
	body, _, _ := s.last()
	assert.Equal(t, string(q.body), body)
}

func TestVerify_KeepAliveConnectionServesPassedAndRefusedRequests(t *testing.T) {
	s, srv, _ := serve(t, awsauth.Options{})
	// One connection at most: a request that finds it closed dials anew.
	c := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	t.Cleanup(c.CloseIdleConnections)
	steps := []struct {
		req    raw
		status int
	}{
		{ddbPut(`{"TableName":"first"}`), http.StatusOK},
		{func() raw {
			q := ddbPut(`{}`)
			q.creds = aws.Credentials{AccessKeyID: "test", SecretAccessKey: "wrong"}
			return q
		}(), http.StatusBadRequest},
		{func() raw {
			q := ddbPut(`{}`)
			q.creds = aws.Credentials{AccessKeyID: "nobody", SecretAccessKey: "x"}
			return q
		}(), http.StatusBadRequest},
		{ddbPut(`{"TableName":"last"}`), http.StatusOK},
	}
	for i, step := range steps {
		var reused bool
		req := step.req.request(t, srv.URL)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		}))
		got := do(t, c, req)
		assert.Equal(t, step.status, got.status, "step %d: %s", i, got.rawMessage)
		assert.Equal(t, i > 0, reused, "step %d over the first connection", i)
	}
	assert.EqualValues(t, 2, s.requests.Load())
	body, _, _ := s.last()
	assert.Equal(t, `{"TableName":"last"}`, body)
}

func TestVerify_ExemptAndDisabledPassUnchecked(t *testing.T) {
	admin := func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/_wsgate/") }
	tests := []struct {
		name   string
		opts   awsauth.Options
		path   string
		status int
	}{
		{"exempt path", awsauth.Options{Exempt: admin}, "/_wsgate/health", http.StatusOK},
		{"other path", awsauth.Options{Exempt: admin}, "/prod/@connections/abc", http.StatusForbidden},
		{"disabled", awsauth.Options{Disabled: true}, "/prod/@connections/abc", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv, v := serve(t, tt.opts)
			resp, err := srv.Client().Get(srv.URL + tt.path)
			require.NoError(t, err)
			_ = resp.Body.Close()
			assert.Equal(t, tt.status, resp.StatusCode)
			if tt.status == http.StatusOK {
				assert.EqualValues(t, 1, s.requests.Load())
				assert.Equal(t, awsauth.Counts{Exempt: 1}, v.Counts())
			}
		})
	}
}

func TestVerify_BodyOverTheLimitIsRefused(t *testing.T) {
	s, srv, _ := serve(t, awsauth.Options{MaxBodyBytes: 8})
	got := do(t, srv.Client(), ddbPut(`{"TableName":"t"}`).request(t, srv.URL))
	assert.Equal(t, http.StatusRequestEntityTooLarge, got.status)
	assert.Equal(t, "com.amazon.coral.service#RequestEntityTooLargeException", got.typ)
	assert.Zero(t, s.requests.Load())
	got = do(t, srv.Client(), ddbPut(`{}`).request(t, srv.URL))
	assert.Equal(t, http.StatusOK, got.status, "a body at the limit passes")
}

func TestVerify_MismatchMessageHidesTheSessionToken(t *testing.T) {
	_, srv, _ := serve(t, awsauth.Options{})
	q := post("abc")
	q.creds = aws.Credentials{AccessKeyID: "test", SecretAccessKey: "wrong", SessionToken: "secret-session-token"}
	got := do(t, srv.Client(), q.request(t, srv.URL))
	require.Equal(t, http.StatusForbidden, got.status)
	assert.Contains(t, got.msg, "x-amz-security-token:<redacted>\n")
	assert.NotContains(t, got.msg, "secret-session-token")
}

func TestVerify_RejectsBadCredentials(t *testing.T) {
	tests := []struct {
		name  string
		creds []awsauth.Credentials
	}{
		{"no secret", []awsauth.Credentials{{AccessKeyID: "a"}}},
		{"no key", []awsauth.Credentials{{SecretAccessKey: "a"}}},
		{"same key twice", []awsauth.Credentials{{AccessKeyID: "a", SecretAccessKey: "1"}, {AccessKeyID: "a", SecretAccessKey: "2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := awsauth.Verify(http.NotFoundHandler(), awsauth.Options{Credentials: tt.creds})
			assert.Error(t, err)
		})
	}
}

func TestVerify_RefusalsAreLoggedWithoutSecrets(t *testing.T) {
	var logs bytes.Buffer
	_, srv, _ := serve(t, awsauth.Options{Log: slog.New(slog.NewJSONHandler(&logs, nil))})
	q := ddbPut(`{"TableName":"t"}`)
	q.creds = aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", SessionToken: "secret-session-token"}
	q.prepare = func(r *http.Request) {
		sum := sha256.Sum256(q.body)
		r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
	}
	req := q.request(t, srv.URL)
	req.Body = io.NopCloser(strings.NewReader(`{"TableName":"u"}`))
	got := do(t, srv.Client(), req)
	require.Equal(t, http.StatusBadRequest, got.status)

	var line map[string]any
	require.NoError(t, json.Unmarshal(logs.Bytes(), &line), "%s", logs.String())
	assert.Equal(t, "X-Amz-Content-Sha256 does not match the body", line["reason"])
	assert.Equal(t, "InvalidSignatureException", line["error"])
	assert.Equal(t, "dynamodb", line["service"])
	assert.Equal(t, "test", line["access_key_id"])
	assert.NotContains(t, logs.String(), "secret-session-token")
	assert.NotContains(t, logs.String(), "Signature=")
}

func TestVerify_PathIsTakenAsSent(t *testing.T) {
	tests := []struct {
		name        string
		requestLine func(host string) string
	}{
		{"origin form", func(string) string { return "/prod/@connections/a{b}" }},
		{"absolute form", func(host string) string { return "http://" + host + "/prod/@connections/a{b}" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv, _ := serve(t, awsauth.Options{})
			host := strings.TrimPrefix(srv.URL, "http://")
			// A client that sends '{' unescaped signs it as sent; Go's own
			// client would have escaped it, so the request is written by hand.
			req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, strings.NewReader("hello"))
			require.NoError(t, err)
			req.URL.Opaque = "//" + host + "/prod/@connections/a{b}"
			sum := sha256.Sum256([]byte("hello"))
			d := awsauth.Dev()
			require.NoError(t, v4.NewSigner().SignHTTP(t.Context(), aws.Credentials{AccessKeyID: d.AccessKeyID, SecretAccessKey: d.SecretAccessKey},
				req, hex.EncodeToString(sum[:]), "execute-api", "us-east-1", time.Now()))

			conn, err := net.Dial("tcp", host)
			require.NoError(t, err)
			defer conn.Close()
			_, err = io.WriteString(conn, "POST "+tt.requestLine(host)+" HTTP/1.1\r\nHost: "+req.Host+"\r\nContent-Length: 5\r\n")
			require.NoError(t, err)
			require.NoError(t, req.Header.Write(conn))
			_, err = io.WriteString(conn, "\r\nhello")
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			require.NoError(t, err)
			msg, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", msg)
			assert.EqualValues(t, 1, s.requests.Load())
		})
	}
}

// BenchmarkVerify is the cost the verifier adds to a signed request with a
// small body, without the network.
func BenchmarkVerify(b *testing.B) {
	v, err := awsauth.Verify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }), awsauth.Options{})
	require.NoError(b, err)
	body := []byte(`{"TableName":"t","Item":{"pk":{"S":"connection#L1a2b="}}}`)
	req, err := http.NewRequest(http.MethodPost, "http://localhost:4566/", nil)
	require.NoError(b, err)
	req.Header.Set("X-Amz-Target", "DynamoDB_20120810.PutItem")
	req.ContentLength = int64(len(body))
	sum := sha256.Sum256(body)
	d := awsauth.Dev()
	require.NoError(b, v4.NewSigner().SignHTTP(b.Context(), aws.Credentials{AccessKeyID: d.AccessKeyID, SecretAccessKey: d.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), "dynamodb", "us-east-1", time.Now()))
	req.RequestURI = "/"
	for b.Loop() {
		req.Body = io.NopCloser(bytes.NewReader(body))
		w := httptest.NewRecorder()
		v.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

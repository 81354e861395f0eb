package awsauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseAuthorization(t *testing.T) {
	const sig = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
	tests := []struct {
		name   string
		header string
		want   authorization
		err    string
	}{
		{name: "SDK form", header: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + sig,
			want: authorization{accessKeyID: "AKID", date: "20240101", region: "us-east-1", service: "dynamodb", signedHeaders: []string{"host", "x-amz-date"}, signature: sig}},
		{name: "no spaces", header: "AWS4-HMAC-SHA256 Credential=AKID/20240101/eu-west-1/execute-api/aws4_request,SignedHeaders=host,Signature=" + sig,
			want: authorization{accessKeyID: "AKID", date: "20240101", region: "eu-west-1", service: "execute-api", signedHeaders: []string{"host"}, signature: sig}},
		{name: "other scheme", header: "Bearer abc", err: "verifies AWS4-HMAC-SHA256 only"},
		{name: "SigV4a", header: "AWS4-ECDSA-P256-SHA256 Credential=AKID/20240101/s3/aws4_request", err: "verifies AWS4-HMAC-SHA256 only"},
		{name: "no signature", header: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sqs/aws4_request, SignedHeaders=host",
			err: "Authorization header requires 'Signature' parameter."},
		{name: "nothing", header: "AWS4-HMAC-SHA256 ", err: "key=value"},
		{name: "all missing", header: "AWS4-HMAC-SHA256 X=1",
			err: "Authorization header requires 'Credential' parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires 'Signature' parameter."},
		{name: "short credential", header: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/aws4_request, SignedHeaders=host, Signature=" + sig, err: "is not of the form"},
		{name: "wrong terminator", header: "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sqs/aws5_request, SignedHeaders=host, Signature=" + sig, err: "is not of the form"},
		{name: "bad date", header: "AWS4-HMAC-SHA256 Credential=AKID/2024-01-01/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=" + sig, err: "YYYYMMDD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseAuthorization(tt.header)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseAuthorization(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=00")
	f.Add("AWS4-HMAC-SHA256 Credential=/////, SignedHeaders=, Signature==")
	f.Add("AWS4-HMAC-SHA256 ,,,")
	f.Fuzz(func(t *testing.T, h string) {
		a, err := parseAuthorization(h)
		if err != nil {
			return
		}
		if a.accessKeyID == "" || a.region == "" || a.service == "" || a.signature == "" || len(a.signedHeaders) == 0 {
			t.Fatalf("accepted %q with an empty part: %+v", h, a)
		}
		if strings.Contains(a.accessKeyID, "/") {
			t.Fatalf("access key %q holds a slash", a.accessKeyID)
		}
	})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name, target, scope, path string
		want                      service
	}{
		{"dynamodb target", "DynamoDB_20120810.PutItem", "sqs", "/", serviceDynamoDB},
		{"events target", "AWSEvents.PutEvents", "", "/", serviceEvents},
		{"sqs target", "AmazonSQS.SendMessage", "", "/", serviceSQS},
		{"unknown target", "Kinesis_20131202.PutRecord", "kinesis", "/", serviceUnknown},
		{"execute-api scope", "", "execute-api", "/prod/@connections/a", serviceManagement},
		{"dynamodb scope", "", "dynamodb", "/", serviceDynamoDB},
		{"unsigned @connections", "", "", "/prod/@connections/a%3D", serviceManagement},
		{"signed for another service", "", "s3", "/prod/@connections/a", serviceUnknown},
		{"nothing", "", "", "/", serviceUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tt.path, nil)
			if tt.target != "" {
				r.Header.Set("X-Amz-Target", tt.target)
			}
			assert.Equal(t, tt.want, classify(r, tt.scope))
		})
	}
}

func TestSkewRefusal_MessagesAsAWSWordsThem(t *testing.T) {
	now := time.Date(2024, 8, 5, 6, 34, 17, 0, time.UTC)
	tests := []struct {
		name   string
		t      time.Time
		window time.Duration
		want   string
	}{
		{"expired", time.Date(2024, 8, 5, 5, 55, 12, 0, time.UTC), 15 * time.Minute,
			"Signature expired: 20240805T055512Z is now earlier than 20240805T061917Z (20240805T063417Z - 15 min.)"},
		{"not yet current", now.Add(6 * time.Minute), 5 * time.Minute,
			"Signature not yet current: 20240805T064017Z is still later than 20240805T063917Z (20240805T063417Z + 5 min.)"},
		{"odd window", now.Add(-2 * time.Minute), 90 * time.Second,
			"Signature expired: 20240805T063217Z is now earlier than 20240805T063247Z (20240805T063417Z - 1m30s)"},
		{"inside", now.Add(-4 * time.Minute), 5 * time.Minute, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref := skewRefusal(tt.t, now, tt.window)
			if tt.want == "" {
				assert.Nil(t, ref)
				return
			}
			require.NotNil(t, ref)
			assert.Equal(t, tt.want, ref.message)
			assert.Equal(t, badSignature, ref.kind)
		})
	}
}

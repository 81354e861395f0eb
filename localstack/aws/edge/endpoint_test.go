package edge_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/awsauth"
	"github.com/wsgate/wsgate/localstack/aws/edge"
)

// endpoint serves edge.Endpoint as the local stack does, on 127.0.0.1,
// counting the requests that reach each service.
type endpoint struct {
	addr               string
	events, ddb, admin atomic.Int64
}

func startEndpoint(t *testing.T) *endpoint {
	t.Helper()
	e := &endpoint{}
	count := func(n *atomic.Int64) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			n.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{}`)
		})
	}
	srv := httptest.NewUnstartedServer(nil)
	e.addr = srv.Listener.Addr().String()
	h, err := edge.Endpoint(&edge.Router{Events: count(&e.events), DynamoDB: count(&e.ddb), Admin: count(&e.admin)},
		[]string{"127.0.0.1:0", e.addr}, awsauth.Options{})
	require.NoError(t, err)
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return e
}

// raw sends one HTTP/1.1 request, as written, on a new connection.
func (e *endpoint) raw(t *testing.T, request string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// revoke is a PutEvents body a backend sends to revoke a principal.
const revoke = `{"Entries":[{"EventBusName":"wsgate-local","Source":"attacker","DetailType":"wsgate.revoke","Detail":"{\"principal\":\"user:victim\",\"until\":\"2099-01-01T00:00:00Z\"}"}]}`

// unsigned is a request without Authorization, as a page's fetch sends it.
func unsigned(path, host, origin, target, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\n", path, host)
	if origin != "" {
		fmt.Fprintf(&b, "Origin: %s\r\n", origin)
	}
	fmt.Fprintf(&b, "X-Amz-Target: %s\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		target, len(body), body)
	return b.String()
}

// signed is a request signed with the public dev keys for Host host, as a
// page on a rebinding domain can make it.
func signed(t *testing.T, path, host, service, target, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+host+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-Amz-Target", target)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("Connection", "close")
	sum := sha256.Sum256([]byte(body))
	dev := awsauth.Dev()
	require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: dev.AccessKeyID, SecretAccessKey: dev.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), service, "us-east-1", time.Now()))
	var b strings.Builder
	require.NoError(t, req.Write(&b))
	return b.String()
}

func TestEndpoint_EveryAWSCallIsSignedWhateverItsPath(t *testing.T) {
	e := startEndpoint(t)
	port := e.addr[strings.LastIndexByte(e.addr, ':')+1:]
	evil := "evil.example:" + port
	cases := []struct {
		name    string
		request string
		status  int
		reached *atomic.Int64
	}{
		{"the issue's attack: unsigned PutEvents (wsgate.revoke) on a dev path, foreign Host and Origin",
			unsigned("/_wsgate/x", evil, "http://evil.example", "AWSEvents.PutEvents", revoke), 403, nil},
		{"unsigned PutEvents on a dev path from this machine",
			unsigned("/_wsgate/x", e.addr, "", "AWSEvents.PutEvents", revoke), 400, nil},
		{"unsigned Scan on a dev path from this machine",
			unsigned("/_wsgate/health", "localhost:"+port, "", "DynamoDB_20120810.Scan", `{"TableName":"wsgate-local"}`), 400, nil},
		{"DNS rebinding: PutEvents signed with the public dev keys for the page's Host",
			signed(t, "/", evil, "events", "AWSEvents.PutEvents", revoke), 403, nil},
		{"DNS rebinding: a signed Scan",
			signed(t, "/", evil, "dynamodb", "DynamoDB_20120810.Scan", `{"TableName":"wsgate-local"}`), 403, nil},
		{"DNS rebinding: a dev endpoint",
			"GET /_wsgate/health HTTP/1.1\r\nHost: " + evil + "\r\nConnection: close\r\n\r\n", 403, nil},
		{"a program's signed PutEvents", signed(t, "/", e.addr, "events", "AWSEvents.PutEvents", revoke), 200, &e.events},
		{"a program's signed Scan by name", signed(t, "/", "localhost:"+port, "dynamodb", "DynamoDB_20120810.Scan", `{}`), 200, &e.ddb},
		{"a signed PutEvents on a dev path is still PutEvents",
			signed(t, "/_wsgate/x", e.addr, "events", "AWSEvents.PutEvents", revoke), 200, &e.events},
		{"a dev endpoint, unsigned, from this machine",
			"GET /_wsgate/health HTTP/1.1\r\nHost: " + e.addr + "\r\nConnection: close\r\n\r\n", 200, &e.admin},
		{"a dev endpoint, Host [::1]",
			"GET /_wsgate/health HTTP/1.1\r\nHost: [::1]:" + port + "\r\nConnection: close\r\n\r\n", 200, &e.admin},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			total := func() int64 { return e.events.Load() + e.ddb.Load() + e.admin.Load() }
			before, mine := total(), int64(0)
			if c.reached != nil {
				mine = c.reached.Load()
			}
			status, body := e.raw(t, c.request)
			assert.Equal(t, c.status, status, body)
			if c.reached == nil {
				assert.Equal(t, before, total(), "no service saw the request")
				return
			}
			assert.Equal(t, before+1, total())
			assert.Equal(t, mine+1, c.reached.Load(), "the request reached its service")
		})
	}
}

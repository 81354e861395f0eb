package stack_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/auth"
)

// rawHTTP sends one request, as written, to addr and returns its status.
func rawHTTP(t *testing.T, addr, request string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, request)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// The AWS port is what a page on a DNS-rebinding domain reaches as
// 127.0.0.1: an unsigned PutEvents on a dev endpoint's path, or one signed
// with the public dev keys for the page's own Host, must not revoke anyone.
func TestSecurity_AWSPortRefusesUnsignedCallsOnDevPathsAndForeignHosts(t *testing.T) {
	s := stacktest.Start(t)
	victim := stacktest.MustDial(t, s.WebSocketURL, map[string]string{"token": token(t, s, auth.Grant{Sub: "victim"})})
	addr := strings.TrimPrefix(s.AWSEndpoint, "http://")
	evil := "evil.example" + addr[strings.LastIndexByte(addr, ':'):]
	detail := `{\"principal\":\"user:victim\"}`
	revoke := fmt.Sprintf(`{"Entries":[{"EventBusName":%q,"Source":"attacker","DetailType":"wsgate.revoke","Detail":"%s"}]}`, s.BusName, detail)
	unsigned := func(host, origin string) string {
		return fmt.Sprintf("POST /_wsgate/x HTTP/1.1\r\nHost: %s\r\nOrigin: %s\r\nX-Amz-Target: AWSEvents.PutEvents\r\n"+
			"Content-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", host, origin, len(revoke), revoke)
	}
	signedFor := func(host string) string {
		req, err := http.NewRequest(http.MethodPost, "http://"+host+"/", strings.NewReader(revoke))
		require.NoError(t, err)
		req.Header.Set("X-Amz-Target", "AWSEvents.PutEvents")
		req.Header.Set("Content-Type", "application/x-amz-json-1.1")
		req.Header.Set("Connection", "close")
		sum := sha256.Sum256([]byte(revoke))
		creds, err := s.Credentials().Retrieve(context.Background())
		require.NoError(t, err)
		require.NoError(t, v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "events", "us-east-1", time.Now()))
		var b strings.Builder
		require.NoError(t, req.Write(&b))
		return b.String()
	}
	accepted := s.Bus.Stats().Accepted.Load()

	status, body := rawHTTP(t, addr, unsigned(evil, "http://evil.example"))
	assert.Equal(t, http.StatusForbidden, status, "the issue's attack: unsigned, dev path, foreign Host and Origin: %s", body)
	status, body = rawHTTP(t, addr, unsigned(addr, "http://evil.example"))
	assert.Equal(t, http.StatusBadRequest, status, "unsigned on a dev path: %s", body)
	assert.Contains(t, body, "MissingAuthenticationTokenException")
	status, body = rawHTTP(t, addr, signedFor(evil))
	assert.Equal(t, http.StatusForbidden, status, "signed with the dev keys for a rebinding Host: %s", body)
	assert.Equal(t, accepted, s.Bus.Stats().Accepted.Load(), "the bus took no event")

	victim.SendJSON(map[string]any{"type": "ping", "id": 1})
	victim.Expect("pong", 10*time.Second)
	status, body = rawHTTP(t, addr, signedFor(addr))
	assert.Equal(t, http.StatusOK, status, "a program on this machine signing its call: %s", body)
}

package stack_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// freeAddr returns a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// requireFree checks that nothing holds addr: it can be listened on again.
func requireFree(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	require.NoError(t, err, "%s is still held", addr)
	require.NoError(t, ln.Close())
}

// startOptions are a stack's options on fixed free ports, as stacktest.Start
// would set them.
func startOptions(t *testing.T) stack.Options {
	t.Helper()
	ep, err := url.Parse(storetest.Endpoint(t))
	require.NoError(t, err)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return stack.Options{
		WebSocketAddr: freeAddr(t), AWSAddr: freeAddr(t), DynamoDBAddr: ep.Host,
		FunctionsDir: os.Getenv(stacktest.EnvFunctions), Table: "wsgate-start-" + hex.EncodeToString(b[:]),
	}
}

func TestStart_FailedStepReleasesWhatEarlierStepsOpened(t *testing.T) {
	tests := []struct {
		name     string
		awsTaken bool                                 // setup holds the AWS port
		setup    func(t *testing.T, o *stack.Options) // makes one step fail
		check    func(t *testing.T, err error)
	}{
		{
			name: "AWS port taken", awsTaken: true,
			setup: func(t *testing.T, o *stack.Options) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				t.Cleanup(func() { _ = ln.Close() })
				o.AWSAddr = ln.Addr().String()
			},
			check: func(t *testing.T, err error) { assert.ErrorContains(t, err, "listen for AWS APIs") },
		},
		{
			name:  "table name DynamoDB refuses",
			setup: func(t *testing.T, o *stack.Options) { o.Table = "no spaces allowed" },
			check: func(t *testing.T, err error) { assert.ErrorContains(t, err, "create table") },
		},
		{
			// Something that is not DynamoDB (here an HTTP server that
			// never answers) at the DynamoDB address: a clear error at
			// once, not a first request that waits for ever.
			name: "DynamoDB address held by another server",
			setup: func(t *testing.T, o *stack.Options) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				stop := make(chan struct{})
				srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-stop:
					case <-r.Context().Done():
					}
				})}
				go func() { _ = srv.Serve(ln) }()
				t.Cleanup(func() { close(stop); _ = srv.Close() })
				o.DynamoDBAddr = ln.Addr().String()
			},
			check: func(t *testing.T, err error) {
				assert.ErrorContains(t, err, "does not answer as DynamoDB")
			},
		},
		{
			name:  "FunctionsDir does not exist",
			setup: func(t *testing.T, o *stack.Options) { o.FunctionsDir = filepath.Join(t.TempDir(), "nowhere") },
			check: func(t *testing.T, err error) {
				assert.ErrorIs(t, err, fs.ErrNotExist)
				assert.ErrorContains(t, err, "build the functions for this machine first")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := startOptions(t)
			tt.setup(t, &o)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := stack.Start(ctx, o)
			if s != nil {
				s.Close()
			}
			require.Error(t, err)
			assert.Nil(t, s)
			tt.check(t, err)
			requireFree(t, o.WebSocketAddr)
			if !tt.awsTaken {
				requireFree(t, o.AWSAddr)
			}
		})
	}
}

func TestStart_CloseReleasesBothPortsAfterARestart(t *testing.T) {
	o := startOptions(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := stack.Start(ctx, o)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	assert.Equal(t, "ws://"+o.WebSocketAddr+"/", s.WebSocketURL)
	assert.Equal(t, "http://"+o.AWSAddr, s.AWSEndpoint)

	// The restarted WebSocket server is the one Close shuts down.
	require.NoError(t, s.RestartWebSocket(0))
	resp, err := http.Get("http://" + o.WebSocketAddr + "/")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode, "the gateway answers again")
	s.Close()
	requireFree(t, o.WebSocketAddr)
	requireFree(t, o.AWSAddr)
}

package dynamolocal

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// held is a listener of another kind at a 127.0.0.1 port: an HTTP server
// that never answers, as a long-polling server would not.
func held(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	stop := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { close(stop); _ = srv.Close() })
	return l.Addr().String()
}

func jar(t *testing.T) string {
	t.Helper()
	j, err := FindJar(".")
	require.NoError(t, err)
	return j
}

// A port someone else listens on is not taken for DynamoDB Local: Start
// reports it, at once, where a caller would have sent its first request
// there and waited for ever (a storm test's stack did, for 4 minutes).
func TestStart_AGivenAddressHeldByAnotherServerIsAnError(t *testing.T) {
	addr := held(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	s, err := Start(ctx, jar(t), Options{Addr: addr, QuickStart: true})
	if s != nil {
		s.Stop()
	}
	require.Error(t, err)
	assert.ErrorIs(t, err, errLostPort)
	assert.Contains(t, err.Error(), addr)
	assert.False(t, Answers(context.Background(), "http://"+addr))
}

// A port Start picked can be given to another process's listener while
// the JVM starts; Start then picks another, and the server it returns is
// its own DynamoDB Local.
func TestStart_APickedPortLostMeanwhileIsPickedAgain(t *testing.T) {
	taken := held(t)
	var picks []string
	freeAddr = func() (string, error) {
		if len(picks) == 0 {
			picks = append(picks, taken)
			return taken, nil
		}
		a, err := FreeAddr()
		picks = append(picks, a)
		return a, err
	}
	t.Cleanup(func() { freeAddr = FreeAddr })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Second)
	defer cancel()
	s, err := Start(ctx, jar(t), Options{QuickStart: true})
	require.NoError(t, err)
	defer s.Stop()
	require.Len(t, picks, 2, "the taken port, then another")
	assert.Equal(t, "http://"+picks[1], s.Endpoint)
	assert.True(t, Answers(ctx, s.Endpoint))
}

// Package connectionstest is an in-process server speaking API Gateway's
// @connections management API (POST, GET, DELETE /{stage}/@connections/{id})
// with scripted answers, for tests that drive the real SDK client.
package connectionstest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
)

// Server records what was posted to each connection.
type Server struct {
	srv   *httptest.Server
	stage string

	mu       sync.Mutex
	received map[string][][]byte
	scripts  map[string][]int
	gone     map[string]bool
	fail     map[string]int
	deleted  []string
	calls    int
	log      []Call
	latency  time.Duration
}

// New starts a server for stage; it stops when the test ends.
func New(t testing.TB, stage string) *Server {
	s := &Server{stage: stage, received: map[string][][]byte{}, scripts: map[string][]int{}, gone: map[string]bool{}, fail: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.srv.Close)
	return s
}

// Endpoint is the management API endpoint, with the stage.
func (s *Server) Endpoint() string { return s.srv.URL + "/" + s.stage }

// Client is a real SDK client on this server, without SDK retries.
func (s *Server) Client() *apigatewaymanagementapi.Client {
	return apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region:           "us-east-1",
		Credentials:      credentials.NewStaticCredentialsProvider("test", "test", ""),
		BaseEndpoint:     aws.String(s.Endpoint()),
		RetryMaxAttempts: 1,
	})
}

// Script queues HTTP statuses a connection answers before it answers 200.
func (s *Server) Script(id string, statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[id] = append(s.scripts[id], statuses...)
}

// Gone makes connections answer 410 for good.
func (s *Server) Gone(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		s.gone[id] = true
	}
}

// AlwaysFail makes a connection answer status for good.
func (s *Server) AlwaysFail(id string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[id] = status
}

// Latency delays every answer.
func (s *Server) Latency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// Received returns the frames delivered to a connection.
func (s *Server) Received(id string) [][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]byte(nil), s.received[id]...)
}

// All returns every connection's delivered frames.
func (s *Server) All() map[string][][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string][][]byte, len(s.received))
	for k, v := range s.received {
		out[k] = append([][]byte(nil), v...)
	}
	return out
}

// Deleted lists connections closed with DeleteConnection.
func (s *Server) Deleted() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.deleted...)
}

// Call is one request the server answered.
type Call struct {
	Method, ID string
	Status     int
}

// Log returns every request in the order answered.
func (s *Server) Log() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.log...)
}

// Calls counts requests.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// errorType is the X-Amzn-ErrorType API Gateway gives an answer of status.
func errorType(status int) string {
	switch status {
	case http.StatusGone:
		return "GoneException"
	case http.StatusTooManyRequests:
		return "LimitExceededException"
	case http.StatusForbidden:
		return "ForbiddenException"
	case http.StatusRequestEntityTooLarge:
		return "PayloadTooLargeException"
	}
	return ""
}

// handle answers one @connections request.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	prefix := "/" + s.stage + "/@connections/"
	if !strings.HasPrefix(r.URL.EscapedPath(), prefix) {
		http.NotFound(w, r)
		return
	}
	id, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), prefix))
	if err != nil || id == "" {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	status, latency := s.answer(r.Method, id, body)
	if latency > 0 {
		time.Sleep(latency)
	}
	if status != http.StatusOK {
		if t := errorType(status); t != "" {
			w.Header().Set("X-Amzn-ErrorType", t)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": fmt.Sprintf("scripted %d", status)})
		return
	}
	if r.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(map[string]any{"connectedAt": time.Now().UTC().Format(time.RFC3339), "lastActiveAt": time.Now().UTC().Format(time.RFC3339), "identity": map[string]string{"sourceIp": "127.0.0.1", "userAgent": "test"}})
		return
	}
	w.WriteHeader(http.StatusOK)
}

// answer decides the status of a request to connection id, as scripted,
// records it, and applies a successful POST or DELETE.
func (s *Server) answer(method, id string, body []byte) (status int, latency time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	status = http.StatusOK
	switch {
	case s.gone[id]:
		status = http.StatusGone
	case s.fail[id] != 0:
		status = s.fail[id]
	case len(s.scripts[id]) > 0:
		status = s.scripts[id][0]
		s.scripts[id] = s.scripts[id][1:]
	}
	s.log = append(s.log, Call{Method: method, ID: id, Status: status})
	if status == http.StatusOK {
		switch method {
		case http.MethodPost:
			s.received[id] = append(s.received[id], body)
		case http.MethodDelete:
			s.deleted = append(s.deleted, id)
			s.gone[id] = true
		}
	}
	return status, s.latency
}

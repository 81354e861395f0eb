package client

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/protocol"
)

// The commands the client writes, field by field, as the gateway reads them.
func TestClient_WritesTheProtocolsRequests(t *testing.T) {
	s := newServer(t)
	start(t, Options{URL: s.url, Topics: []string{"a.>"}, Filters: map[string][]any{"severity": {"critical", 2}}, PingEvery: 20 * time.Millisecond})
	conn := s.next()
	assert.Equal(t, map[string]any{"type": "subscribe", "id": "sub:a.>", "topic": "a.>", "filters": map[string]any{"severity": []any{"critical", float64(2)}}}, conn.expect(protocol.TypeSubscribe))
	assert.Equal(t, map[string]any{"type": "ping"}, conn.expect(protocol.TypePing))
}

// A resume the gateway can no longer do ends in a Gap whose Err is the
// gateway's answer.
func TestClient_GapCarriesTheProtocolError(t *testing.T) {
	s := newServer(t)
	_, rec, _ := start(t, Options{URL: s.url, Topics: []string{"a.b"}, GapWait: 20 * time.Millisecond})
	conn := s.next()
	conn.expect(protocol.TypeSubscribe)
	conn.event("a.b", 1)
	conn.event("a.b", 3)
	r := conn.expect(protocol.TypeResume)
	assert.Equal(t, map[string]any{"type": "resume", "id": "resume:a.b", "topic": "a.b", "since": float64(1)}, r)
	conn.send(protocol.Errorf([]byte(`"resume:a.b"`), protocol.CodeHistoryExpired, "gone"))
	rec.waitSeqs(t, "a.b", 1, 3)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Len(t, rec.gaps, 1)
	var pe *protocol.Error
	require.True(t, errors.As(rec.gaps[0].Err, &pe), "%v", rec.gaps[0].Err)
	assert.Equal(t, protocol.CodeHistoryExpired, pe.Code)
	assert.Equal(t, "client: history_expired: gone", rec.gaps[0].Err.Error())
}

func TestNew_RejectsFiltersThatDoNotMarshal(t *testing.T) {
	_, err := New(Options{URL: "ws://x", OnEvent: func(Event) {}, Filters: map[string][]any{"x": {math.NaN()}}})
	assert.ErrorContains(t, err, "Filters")
}

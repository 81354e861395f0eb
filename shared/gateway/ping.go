package gateway

import (
	"time"

	"github.com/wsgate/wsgate/shared/protocol"
)

// ping answers pong with the frame's arrival time.
func (s *session) ping(c protocol.Ping) {
	s.reply(protocol.Pong{Type: protocol.TypePong, ID: c.ID, Time: s.arrived.UTC().Format(time.RFC3339Nano), Timestamp: c.Timestamp})
}

package gateway

import (
	"time"

	"github.com/wsgate/wsgate/shared/protocol"
)

// ping answers pong with the frame's arrival time.
func (inv *invocation) ping(c protocol.Ping) {
	inv.reply(protocol.Pong{Type: protocol.TypePong, ID: c.ID, Time: inv.arrived.UTC().Format(time.RFC3339Nano), Timestamp: c.Timestamp})
}

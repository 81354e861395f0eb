package publish

import "time"

// Connection lifecycle events: the broadcast function reads the table's
// stream and puts one of these on the stack's bus, source ClientSource
// ("wsgate"), for every connection opened (at the handshake, or by an auth
// message after a token-less one) and every connection closed, so that any
// backend can react with an ordinary rule. They come at least once (a
// retried batch repeats them; ID tells repeats apart) and, across
// connections, in no particular order.
const (
	ConnectionOpened = "wsgate.connection.opened"
	ConnectionClosed = "wsgate.connection.closed"
)

// Close reasons.
const (
	// CloseDisconnected: the connection's records were deleted, by
	// $disconnect or by a post that found it gone.
	CloseDisconnected = "disconnected"
	// CloseExpired: its records expired (TTL) because $disconnect never
	// came; the close happened up to WSGATE_CONNECTION_TTL earlier.
	CloseExpired = "expired"
)

// ConnectionEvent is a lifecycle event's detail.
type ConnectionEvent struct {
	// ID identifies the change (the stream record's id).
	ID           string   `json:"id"`
	ConnectionID string   `json:"connection_id"`
	PType        string   `json:"ptype"`
	Sub          string   `json:"sub"`
	Orgs         []string `json:"orgs,omitempty"`
	// Scope is the topic of a scoped (?topic=) connection.
	Scope       string    `json:"scope,omitempty"`
	ConnectedAt time.Time `json:"connected_at"`
	// Auth says how it authenticated: "handshake" or "message".
	Auth string `json:"auth,omitempty"`
	// ClosedAt, DurationMS and Reason are set on a close.
	ClosedAt   *time.Time `json:"closed_at,omitempty"`
	DurationMS int64      `json:"duration_ms,omitempty"`
	Reason     string     `json:"reason,omitempty"`
}

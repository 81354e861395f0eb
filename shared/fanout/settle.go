package fanout

import "time"

// ConnectWindow is how long after its $connect a connection may answer
// 410 while API Gateway finishes registering it: AWS documents the lag
// without bounding it, and it is well under a second in practice. Within
// the window a 410 means "not yet", never "gone".
const ConnectWindow = 5 * time.Second

// SettleDelay is the wait before posting again to a settling connection;
// maxSettles bounds those retries whatever the clock says.
const (
	SettleDelay = 250 * time.Millisecond
	maxSettles  = int(ConnectWindow / SettleDelay)
)

// Settling reports whether a connection that connected at connectedAt may
// still be registering at now.
func Settling(connectedAt, now time.Time) bool {
	return !connectedAt.IsZero() && now.Sub(connectedAt) < ConnectWindow
}

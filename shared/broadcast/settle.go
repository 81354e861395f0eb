package broadcast

import (
	"context"
	"time"

	"github.com/wsgate/wsgate/shared/fanout"
	"github.com/wsgate/wsgate/shared/store"
)

// ConnectionReader reads a connection's record (consistently).
type ConnectionReader interface {
	GetConnection(ctx context.Context, id string) (store.Connection, error)
}

// Settling answers fanout.Options.Settling from the connection's record: a
// connection that answered 410 within fanout.ConnectWindow of its $connect
// is still being registered by API Gateway and must not be removed. It
// costs one consistent read per 410, and 410s are rare (a missed
// $disconnect, or a post racing a new connection). A connection without a
// record, or a read that fails, counts as gone: removing it is idempotent,
// and a live client whose record is lost reconnects on its next command.
func Settling(st ConnectionReader, now func() time.Time) func(context.Context, string) bool {
	if now == nil {
		now = time.Now
	}
	return func(ctx context.Context, id string) bool {
		c, err := st.GetConnection(ctx, id)
		return err == nil && fanout.Settling(c.ConnectedAt, now())
	}
}

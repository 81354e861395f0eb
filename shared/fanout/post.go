package fanout

import (
	"context"
	"errors"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgate/wsgate/shared/backoff"
)

// postAttempts bounds the posts of one frame by Post: a 429 or 5xx is
// retried with Backoff, as the fan-out does.
const postAttempts = 5

// Target is one connection Post sends to: its id, and when it connected
// (a 410 soon after may only mean it is still registering).
type Target struct {
	ConnectionID string
	ConnectedAt  time.Time
}

// Post sends one frame to one connection, retrying what may succeed later:
// throttling and server errors a few times, and a 410 from a connection
// that may still be registering (see ConnectWindow). It returns the last
// error, which Classify explains.
func Post(ctx context.Context, p Poster, to Target, frame []byte, now func() time.Time) error {
	id, connectedAt := to.ConnectionID, to.ConnectedAt
	var err error
	settles := 0
	for attempt := 1; attempt <= postAttempts; {
		_, err = p.PostToConnection(ctx, &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: frame})
		wait := Backoff(attempt)
		switch c := Classify(err); {
		case c == nil:
			return nil
		case errors.Is(c, ErrGone) && settles < maxSettles && Settling(connectedAt, now()):
			wait = SettleDelay // not an attempt: the window bounds these
			settles++
		case errors.Is(c, ErrGone), errors.Is(c, ErrRejected):
			return err
		default:
			attempt++
		}
		if attempt > postAttempts {
			break
		}
		if backoff.Sleep(ctx, wait) != nil {
			return err
		}
	}
	return err
}

// Package observe holds what a handler logs to, writes its metrics to and
// reads the time from, with the one set of defaults every constructor uses.
package observe

import (
	"io"
	"log/slog"
	"time"
)

// Kit is a handler's log, EMF metrics sink and clock.
type Kit struct {
	Log     *slog.Logger
	Metrics io.Writer
	Now     func() time.Time
}

// OrDefaults fills what was not given: a log and metrics that discard, and
// the wall clock.
func (k Kit) OrDefaults() Kit {
	if k.Log == nil {
		k.Log = slog.New(slog.DiscardHandler)
	}
	if k.Metrics == nil {
		k.Metrics = io.Discard
	}
	if k.Now == nil {
		k.Now = time.Now
	}
	return k
}

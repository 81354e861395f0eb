package frame

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/filter"
	"github.com/wsgate/wsgate/shared/publish"
)

// The frames a published event goes out as are the wire: byte for byte,
// whatever the Go types behind them. Each case is an EventBridge detail,
// its sequence number, and the frame in each form.
func TestEncoder_PublishedFrameBytesAreUnchanged(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 45, 123_000_000, time.UTC)
	keepT := []filter.Set{{"metrics": {"t"}}}
	cases := map[string]struct {
		detail  string
		filters []filter.Set
		raw     string
		env     string
	}{
		"json payload": {
			detail: `{"topic":"telemetry.1","payload":{"telemetry":{"t":1,"h":2},"at":"x<y"},"attributes":{"metrics":["t","h"]}}`,
			raw:    `{"telemetry":{"t":1,"h":2},"at":"x<y"}`,
			env:    `{"type":"event","topic":"telemetry.1","seq":42,"id":"ev-1","time":"2026-03-01T12:30:45.123Z","data":{"telemetry":{"t":1,"h":2},"at":"x<y"}}`,
		},
		"json payload trimmed by a projection": {
			detail:  `{"topic":"telemetry.1","payload":{"telemetry":{"t":1,"h":2}},"attributes":{"metrics":["t","h"]},"project":{"metrics":"telemetry"}}`,
			filters: keepT,
			raw:     `{"telemetry":{"t":1}}`,
			env:     `{"type":"event","topic":"telemetry.1","seq":42,"id":"ev-1","time":"2026-03-01T12:30:45.123Z","data":{"telemetry":{"t":1}}}`,
		},
		"binary payload": {
			detail: `{"topic":"dev.7","payload_base64":"CgNhYmM="}`,
			raw:    "\n\x03abc",
			env:    `{"type":"event","topic":"dev.7","seq":42,"id":"ev-1","time":"2026-03-01T12:30:45.123Z","data_base64":"CgNhYmM="}`,
		},
		"a principal's event": {
			detail: `{"topic":"chat.r1","payload":{"text":"hi"},"from":"user:alice","audience":{"orgs":["acme"]}}`,
			raw:    `{"type":"event","topic":"chat.r1","seq":42,"id":"ev-1","time":"2026-03-01T12:30:45.123Z","data":{"text":"hi"},"from":"user:alice"}`,
			env:    `{"type":"event","topic":"chat.r1","seq":42,"id":"ev-1","time":"2026-03-01T12:30:45.123Z","data":{"text":"hi"},"from":"user:alice"}`,
		},
	}
	to := Recipient{Identity: auth.Identity{Sub: "bob", Orgs: []string{"acme"}}}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			ev, err := publish.Parse("ev-1", at.Truncate(time.Second), []byte(c.detail), false)
			require.NoError(t, err)
			ev.Time = at
			enc := NewEncoder(Item{Event: ev.Event, Seq: 42})
			to.Filters = c.filters
			if to.Filters == nil {
				to.Filters = []filter.Set{nil}
			}
			raw, ok, err := enc.For(to)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, c.raw, string(raw))
			to.Envelope = true
			env, ok, err := enc.For(to)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, c.env, string(env))
			to.Envelope = false
		})
	}
}

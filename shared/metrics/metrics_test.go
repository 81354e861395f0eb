package metrics

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWrite_EmbeddedMetricFormat(t *testing.T) {
	s := New(map[string]string{"Stage": "local", "Function": "broadcast"})
	s.now = func() time.Time { return time.UnixMilli(1700000000000) }
	s.Add("Delivered", 3, Count)
	s.Add("Delivered", 2, Count)
	s.Duration("FanoutDuration", 1500*time.Microsecond)
	s.Property("event_id", "e1")
	var b bytes.Buffer
	require.NoError(t, s.Write(&b))
	var line map[string]any
	require.NoError(t, json.Unmarshal(b.Bytes(), &line))
	assert.Equal(t, 5.0, line["Delivered"])
	assert.Equal(t, 1.5, line["FanoutDuration"])
	assert.Equal(t, "e1", line["event_id"])
	assert.Equal(t, "local", line["Stage"])
	aws := line["_aws"].(map[string]any)
	assert.Equal(t, 1700000000000.0, aws["Timestamp"])
	cw := aws["CloudWatchMetrics"].([]any)[0].(map[string]any)
	assert.Equal(t, "wsgate", cw["Namespace"])
	assert.Equal(t, []any{[]any{"Function", "Stage"}}, cw["Dimensions"])
	assert.Len(t, cw["Metrics"], 2)
	assert.Equal(t, byte('\n'), b.Bytes()[b.Len()-1], "one line")

	var empty bytes.Buffer
	require.NoError(t, New(nil).Write(&empty))
	assert.Zero(t, empty.Len())
}

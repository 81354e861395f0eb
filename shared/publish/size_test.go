package publish_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/publish/publishtest"
)

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// state returns n bytes of state in frames under a frame's limit.
func state(n int) string {
	var fs []string
	for n > 0 {
		k := min(n, 100*1024)
		fs = append(fs, `"`+strings.Repeat("s", k-2)+`"`)
		n -= k
	}
	return `[` + strings.Join(fs, ",") + `]`
}

// orgs returns an audience of orgs entries of name repeated, n bytes in all.
func orgs(name string, n int) string {
	var entries []string
	for size := 0; size < n; size += 256 + 3 {
		entries = append(entries, `"`+strings.Repeat(name, 256/len(name))+`"`)
	}
	return `{"orgs":[` + strings.Join(entries, ",") + `]}`
}

func TestParse_TakesTheLargestEventTheGatewayCanStore(t *testing.T) {
	b := marshal(t, publishtest.DetailOfSize("big.one", publish.MaxDetailBytes))
	require.Len(t, b, publish.MaxDetailBytes)
	ev, err := publish.Parse("e", time.Now(), b, false)
	require.NoError(t, err)
	assert.True(t, ev.History)
	assert.True(t, ev.ReplaceState)
}

// Every event the gateway would have to half-apply is refused whole: a
// detail over the cap (one item when sharded), a state that with its
// audience would pass one item, and parts that grow when stored.
func TestParse_RefusesWhatWouldNotFitItsItem(t *testing.T) {
	cases := []struct{ name, detail, reason string }{
		{"detail one byte over the cap",
			string(marshal(t, publishtest.DetailOfSize("big.one", publish.MaxDetailBytes+1))),
			fmt.Sprintf("the gateway takes at most %d", publish.MaxDetailBytes)},
		{"state at its limit with an audience that would push its item past 400 KB",
			`{"topic":"a","state":` + state(publish.MaxStateBytes) + `,"audience":` + orgs("o", 60*1024) + `}`,
			"the gateway takes at most"},
		{"state under the cap whose audience grows stored (\"<\" is \\u003c)",
			`{"topic":"a","state":` + state(250*1024) + `,"audience":` + orgs("<", 60*1024) + `}`,
			"detail.state and its audience take"},
		{"history entry whose number attributes grow stored (1 is \"1\")",
			`{"topic":"a","payload":1,"attributes":` + numberAttributes(300*1024) + `}`,
			"stored for resume"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := publish.Parse("e", time.Now(), []byte(c.detail), false)
			require.ErrorIs(t, err, publish.ErrTooLarge)
			assert.Contains(t, err.Error(), c.reason)
		})
	}
}

// numberAttributes is an attributes object of about n bytes, each key
// with one number, which the store keeps as a list of one string.
func numberAttributes(n int) string {
	var kv []string
	for i, size := 0, 0; size < n; i++ {
		e := fmt.Sprintf(`"k%d":%d`, i, i)
		kv = append(kv, e)
		size += len(e) + 1
	}
	return `{` + strings.Join(kv, ",") + `}`
}

type recordingBus struct {
	calls [][]types.PutEventsRequestEntry
}

func (b *recordingBus) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	b.calls = append(b.calls, in.Entries)
	out := &eventbridge.PutEventsOutput{}
	for i := range in.Entries {
		out.Entries = append(out.Entries, types.PutEventsResultEntry{EventId: aws.String(fmt.Sprintf("id-%d-%d", len(b.calls), i))})
	}
	return out, nil
}

// The helper sends what the gateway takes, a larger-than-256 KB entry
// alone in its call, and refuses what it would refuse, sending nothing.
func TestPublish_SendsAnEventUpToTheCapAndRefusesOneOver(t *testing.T) {
	bus := &recordingBus{}
	p := publish.Publisher{Client: bus, Bus: "b"}
	small := publish.Detail{Topic: "a", Payload: json.RawMessage(`1`)}
	ids, err := p.Publish(context.Background(), small, publishtest.DetailOfSize("big.one", publish.MaxDetailBytes), small)
	require.NoError(t, err)
	assert.Len(t, ids, 3)
	require.Len(t, bus.calls, 3, "the large entry goes alone")
	assert.Len(t, aws.ToString(bus.calls[1][0].Detail), publish.MaxDetailBytes)

	bus.calls = nil
	_, err = p.Publish(context.Background(), small, publishtest.DetailOfSize("big.one", publish.MaxDetailBytes+1))
	require.ErrorIs(t, err, publish.ErrTooLarge)
	assert.Contains(t, err.Error(), fmt.Sprintf("publish #1: invalid event: too large: detail is %d bytes; the gateway takes at most %d", publish.MaxDetailBytes+1, publish.MaxDetailBytes))
	assert.Empty(t, bus.calls, "nothing sent")
}

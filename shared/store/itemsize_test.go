package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/publish"
	"github.com/wsgate/wsgate/shared/publish/publishtest"
	"github.com/wsgate/wsgate/shared/topic"
)

// itemBytes is an item's size as DynamoDB documents it: each attribute's
// name and value; a number 1 byte per two significant digits plus 1; a
// list or map 3 bytes plus 1 per element. DynamoDB Local counts the same,
// or a few bytes less for numbers.
func itemBytes(it map[string]types.AttributeValue) int {
	n := 0
	for name, v := range it {
		n += len(name) + valueBytes(v)
	}
	return n
}

func valueBytes(v types.AttributeValue) int {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return len(x.Value)
	case *types.AttributeValueMemberB:
		return len(x.Value)
	case *types.AttributeValueMemberN:
		digits := strings.Trim(strings.NewReplacer("-", "", ".", "").Replace(x.Value), "0")
		return (len(digits)+1)/2 + 1
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range x.Value {
			n += valueBytes(e) + 1
		}
		return n
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range x.Value {
			n += len(k) + valueBytes(e) + 1
		}
		return n
	}
	return 1 // BOOL, NULL
}

// The local stack's DynamoDB refuses an item over 400 KB as AWS does,
// counting attribute names, so a test on it sees what AWS would answer.
func TestItemLimit_DynamoDBLocalRefusesAnItemOver400KBAsAWSDoes(t *testing.T) {
	f := newFixture(t)
	put := func(n int) error {
		it := map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "big"}, "sk": &types.AttributeValueMemberS{Value: "one"},
			"d": &types.AttributeValueMemberB{},
		}
		it["d"] = &types.AttributeValueMemberB{Value: make([]byte, n-itemBytes(it))}
		require.Equal(t, n, itemBytes(it))
		_, err := f.db.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(f.table), Item: it})
		return err
	}
	require.NoError(t, put(publish.MaxItemBytes), "400 KB exactly, names included")
	err := put(publish.MaxItemBytes + 1)
	var api smithy.APIError
	require.True(t, errors.As(err, &api), "refused: %v", err)
	assert.Equal(t, "ValidationException", api.ErrorCode())
	assert.Equal(t, "Item size has exceeded the maximum allowed size", api.ErrorMessage())
}

// longest is a topic of the longest length a topic may have: it is in the
// key of the state item and of every history entry.
var longest = func() string {
	segs := []string{"big"}
	for len(segs) < topic.MaxSegments {
		segs = append(segs, strings.Repeat("a", 45))
	}
	s := strings.Join(segs, ".")
	return s + strings.Repeat("a", topic.MaxLength-len(s))
}()

// longID is an event id far longer than EventBridge's (36 characters).
var longID = strings.Repeat("e", 128)

// largest returns the largest detail of a shape the gateway accepts: the
// shape's filler grows until publish.Parse refuses it.
func largest(t *testing.T, shape func(fill int) string) publish.Event {
	t.Helper()
	lo, hi := 0, publish.MaxItemBytes
	parse := func(fill int) (publish.Event, error) {
		return publish.Parse(longID, time.Now(), []byte(shape(fill)), true)
	}
	_, err := parse(lo)
	require.NoError(t, err, "the shape with no filler is accepted")
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, err := parse(mid); err == nil {
			lo = mid
		} else {
			require.ErrorIs(t, err, publish.ErrTooLarge)
			hi = mid - 1
		}
	}
	ev, err := parse(lo)
	require.NoError(t, err)
	return ev
}

// growingAudience is an audience of n characters "<", which the store
// keeps six times as long (\u003c).
func growingAudience(n int) string {
	var orgs []string
	for ; n > 0; n -= 256 {
		orgs = append(orgs, strings.Repeat("<", min(n, 256)))
	}
	if len(orgs) == 0 {
		orgs = []string{"o"}
	}
	b, _ := json.Marshal(orgs)
	return `{"orgs":` + string(b) + `}`
}

func (f *fixture) item(t *testing.T, pk, sk string) map[string]types.AttributeValue {
	t.Helper()
	out, err := f.db.GetItem(context.Background(), &dynamodb.GetItemInput{
		TableName: aws.String(f.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}},
	})
	require.NoError(t, err)
	require.NotNil(t, out.Item, "%s %s stored", pk, sk)
	return out.Item
}

// Whatever the gateway accepts, each item it writes of an event (the
// detail its shards read, the topic's state, the history entry) fits
// DynamoDB's 400 KB, with the longest topic and id and with the parts the
// store re-encodes grown as far as the cap lets them.
func TestItems_TheLargestEventsTheGatewayAcceptsFitTheirItems(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sizes := map[string]int{}

	detail, err := json.Marshal(publishtest.DetailOfSize(longest, publish.MaxDetailBytes))
	require.NoError(t, err)
	require.NoError(t, f.s.PutDetail(ctx, longID, detail))
	sizes["detail"] = itemBytes(f.item(t, "E#"+longID, "#DETAIL"))

	frame := `"` + strings.Repeat("f", publish.MaxStateBytes/publish.MaxStateFrames-2) + `"`
	state := `[` + strings.TrimSuffix(strings.Repeat(frame+",", publish.MaxStateFrames), ",") + `]`
	ev := largest(t, func(fill int) string {
		return `{"topic":"` + longest + `","state":` + state + `,"audience":` + growingAudience(fill) + `}`
	})
	require.NoError(t, f.s.ReplaceState(ctx, ev, 1))
	sizes["state"] = itemBytes(f.item(t, "T#"+longest, "#STATE"))

	attrs := map[string]int{}
	for i := range 8000 {
		attrs[fmt.Sprint("k", i)] = i
	}
	ab, _ := json.Marshal(attrs)
	payload := `"` + strings.Repeat("p", publish.MaxFrameBytes-2000) + `"`
	from := "user:" + strings.Repeat("u", publish.MaxFromBytes-5)
	ev = largest(t, func(fill int) string {
		return `{"topic":"` + longest + `","payload":` + payload + `,"attributes":` + string(ab) +
			`,"project":{"k1":"x"},"from":"` + from + `","audience":` + growingAudience(fill) + `,"history":true}`
	})
	rec, err := f.s.BeginEvent(ctx, ev, "me", time.Minute, time.Hour)
	require.NoError(t, err)
	sizes["history"] = itemBytes(f.item(t, "H#"+longest, fmt.Sprintf("%020d", rec.Seq)))

	names := make([]string, 0, len(sizes))
	for k := range sizes {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		t.Logf("%s item: %d bytes, %d under DynamoDB's limit", k, sizes[k], publish.MaxItemBytes-sizes[k])
		assert.LessOrEqual(t, sizes[k], publish.MaxItemBytes-8*1024, "%s item keeps a margin", k)
	}
}

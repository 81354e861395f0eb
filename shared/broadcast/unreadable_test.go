package broadcast_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/shared/gateway/gatewaytest"
	"github.com/wsgate/wsgate/shared/store"
	"github.com/wsgate/wsgate/shared/store/storetest"
)

// A subscriber whose stored filter does not decode gets nothing (an
// unreadable filter must not read as "no filter"), is logged and counted,
// and the event still reaches everyone else.
func TestBroadcast_UnreadableFilterSkipsThatSubscriberOnly(t *testing.T) {
	h := gatewaytest.New(t)
	for _, id := range []string{"good", "bad"} {
		h.MustConnect(id, h.Token(reader), nil)
		h.Send(id, `{"type":"subscribe","topic":"alerts.*","filters":{"severity":["critical"]}}`)
	}
	_, err := storetest.Client(t).UpdateItem(context.Background(), &dynamodb.UpdateItemInput{
		TableName: aws.String(h.Store.Table()),
		Key: map[string]types.AttributeValue{
			"pk": &types.AttributeValueMemberS{Value: "P#alerts.*"}, "sk": &types.AttributeValueMemberS{Value: store.EntrySK("bad")},
		},
		UpdateExpression:          aws.String("SET f = :f"),
		ConditionExpression:       aws.String("attribute_exists(f)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":f": &types.AttributeValueMemberS{Value: `{"severity":[`}},
	})
	require.NoError(t, err)

	require.NoError(t, h.Publish("e1", `{"topic":"alerts.1","payload":{"n":1},"attributes":{"severity":"info"}}`))
	require.NoError(t, h.Publish("e2", `{"topic":"alerts.1","payload":{"n":2},"attributes":{"severity":"critical"}}`),
		"the event does not fail for one unreadable subscriber")
	assert.Equal(t, []string{`{"n":2}`}, h.Received("good"))
	assert.Empty(t, h.Received("bad"), "not widened to everything")
	assert.Equal(t, 1.0, h.Metrics.Last("SubscribersUnreadable"))
}

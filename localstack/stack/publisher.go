package stack

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/wsgate/wsgate/shared/events"
)

// Publisher sends events to this stack's bus through its PutEvents
// endpoint, as a backend would (the local endpoint takes any signature).
func (s *Stack) Publisher(source string) events.Publisher {
	client := eventbridge.New(eventbridge.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.AWSEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
	return events.Publisher{Client: client, Bus: s.BusName, Source: source}
}

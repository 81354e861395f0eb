package stack

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"

	"github.com/wsgate/wsgate/localstack/aws/awsauth"
	"github.com/wsgate/wsgate/shared/publish"
)

// DevCredentials are what every request to a stack's AWS endpoint is signed
// with: the endpoint verifies each signature as AWS does (awsauth), and the
// functions get them in their environment. LocalStack uses the same.
func DevCredentials() aws.CredentialsProvider {
	c := awsauth.Dev()
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")
}

// Credentials are the credentials this stack's AWS endpoint accepts.
func (s *Stack) Credentials() aws.CredentialsProvider { return DevCredentials() }

// Publisher sends events to this stack's bus through its PutEvents
// endpoint, as a backend would.
func (s *Stack) Publisher(source string) publish.Publisher {
	client := eventbridge.New(eventbridge.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(s.AWSEndpoint), Credentials: s.Credentials(),
	})
	return publish.Publisher{Client: client, Bus: s.BusName, Source: source}
}

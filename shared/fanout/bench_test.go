package fanout_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"

	"github.com/wsgate/wsgate/shared/fanout"
)

func BenchmarkPostToConnection(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer srv.Close()
	c := apigatewaymanagementapi.New(apigatewaymanagementapi.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL + "/local"), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("a", "b", ""), HTTPClient: fanout.NewHTTPClient(64),
	})
	id := "abcdefghijklmno="
	data := []byte(`{"type":"event","topic":"bench.all","seq":1,"data":{"i":1}}`)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: data}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkLeanPostToConnection(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer srv.Close()
	p, err := fanout.NewLeanPoster(srv.URL+"/local", aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}, fanout.NewHTTPClient(64))
	if err != nil {
		b.Fatal(err)
	}
	id := "abcdefghijklmno="
	data := []byte(`{"type":"event","topic":"bench.all","seq":1,"data":{"i":1}}`)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := p.PostToConnection(context.Background(), &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: &id, Data: data}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

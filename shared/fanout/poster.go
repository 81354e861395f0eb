package fanout

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// Poster is the part of the @connections client fan-out needs.
type Poster interface {
	PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error)
}

// Connections is the @connections API a route or task needs to answer one
// connection and close it.
type Connections interface {
	Poster
	DeleteConnection(ctx context.Context, in *apigatewaymanagementapi.DeleteConnectionInput, optFns ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.DeleteConnectionOutput, error)
}

// LeanPoster posts to the @connections API with the SDK's SigV4 signer and
// credentials but without the SDK client's middleware stack, which costs
// about 100 µs of CPU per call: at thousands of posts per invocation that
// is most of the fan-out's Lambda time (measured by
// BenchmarkPostToConnection). Errors come back as the SDK's typed errors,
// so Classify treats both posters alike. Use the SDK client for anything
// but the hot path.
type LeanPoster struct {
	base   string // endpoint with the stage, no trailing slash
	client *http.Client
	creds  aws.CredentialsProvider
	region string
	signer *v4.Signer
}

// NewLeanPoster posts to endpoint (https://{api}.execute-api.{region}.amazonaws.com/{stage}).
func NewLeanPoster(endpoint string, cfg aws.Config, client *http.Client) (*LeanPoster, error) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("fanout: management endpoint %q is not a URL", endpoint)
	}
	if cfg.Credentials == nil {
		return nil, fmt.Errorf("fanout: no AWS credentials to sign with")
	}
	return &LeanPoster{
		base: strings.TrimSuffix(endpoint, "/"), client: client,
		creds: aws.NewCredentialsCache(cfg.Credentials), region: cfg.Region, signer: v4.NewSigner(),
	}, nil
}

// PostToConnection sends data to one connection.
func (p *LeanPoster) PostToConnection(ctx context.Context, in *apigatewaymanagementapi.PostToConnectionInput, _ ...func(*apigatewaymanagementapi.Options)) (*apigatewaymanagementapi.PostToConnectionOutput, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/@connections/"+url.PathEscape(aws.ToString(in.ConnectionId)), bytes.NewReader(in.Data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	sum := sha256.Sum256(in.Data)
	creds, err := p.creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("fanout: credentials: %w", err)
	}
	if err := p.signer.SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "execute-api", p.region, time.Now()); err != nil {
		return nil, fmt.Errorf("fanout: sign: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusOK {
		return &apigatewaymanagementapi.PostToConnectionOutput{}, nil
	}
	var msg struct {
		Message *string `json:"message"`
	}
	_ = json.Unmarshal(body, &msg)
	switch resp.StatusCode {
	case http.StatusGone:
		return nil, &types.GoneException{Message: msg.Message}
	case http.StatusTooManyRequests:
		return nil, &types.LimitExceededException{Message: msg.Message}
	case http.StatusRequestEntityTooLarge:
		return nil, &types.PayloadTooLargeException{Message: msg.Message}
	case http.StatusForbidden:
		return nil, &types.ForbiddenException{Message: msg.Message}
	}
	return nil, &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: resp},
		Err:      fmt.Errorf("%s: %s", resp.Header.Get("X-Amzn-ErrorType"), aws.ToString(msg.Message)),
	}
}

// NewHTTPClient returns the kept-alive HTTP client fan-out should give the
// @connections SDK client: enough idle connections per host for every
// worker, so calls reuse TLS sessions instead of dialing.
func NewHTTPClient(workers int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = workers * 2
	tr.MaxIdleConnsPerHost = workers * 2
	tr.MaxConnsPerHost = 0
	tr.IdleConnTimeout = 90 * time.Second
	tr.DialContext = (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

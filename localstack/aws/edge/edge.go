// Package edge is the local AWS endpoint (LocalStack's "edge port"): one
// HTTP listener that routes each request to the service it is for, by the
// X-Amz-Target header of JSON-protocol APIs or by path, so SDKs configured
// with AWS_ENDPOINT_URL and `aws --endpoint-url` work unchanged.
package edge

import (
	"encoding/json"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
)

// Router dispatches AWS API requests.
type Router struct {
	// DynamoDB receives DynamoDB_20120810.* requests (ddbproxy in front of
	// DynamoDB Local).
	DynamoDB http.Handler
	// Events receives AWSEvents.* requests.
	Events http.Handler
	// SQS receives AmazonSQS.* requests.
	SQS http.Handler
	// Management serves the @connections API when IsManagement says so.
	Management   http.Handler
	IsManagement func(*http.Request) bool
	// Admin serves /_wsgate/... (health, faults, dev tokens).
	Admin http.Handler
	// Lambda serves Lambda's Invoke API (/2015-03-31/functions/...).
	Lambda http.Handler
}

// LambdaInvokePath begins the path of Lambda's Invoke API.
const LambdaInvokePath = "/2015-03-31/functions/"

// proxyConns bounds the connections to one backend; a request beyond it
// waits for one to be free.
const proxyConns = 1024

// Proxy returns a reverse proxy to a backend such as DynamoDB Local.
func Proxy(backend string) (http.Handler, error) { return newProxy(backend) }

const crc32Header = "X-Amz-Crc32"

func newProxy(backend string) (*httputil.ReverseProxy, error) {
	u, err := url.Parse(backend)
	if err != nil {
		return nil, err
	}
	p := httputil.NewSingleHostReverseProxy(u)
	// Keep every connection to the backend for reuse under load: the
	// default keeps two per host and 100 in all, so thousands of requests
	// in flight churn through new connections, and connect() slows to a
	// crawl as the ephemeral ports fill with TIME_WAIT.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0 // no overall cap
	tr.MaxIdleConnsPerHost = proxyConns
	tr.MaxConnsPerHost = proxyConns
	p.Transport = tr
	p.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		serviceError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "backend unavailable: "+err.Error())
	}
	return p, nil
}

// destination is where a Router sends a request.
type destination int

const (
	toNone destination = iota
	toDynamoDB
	toEvents
	toSQS
	toManagement
	toAdmin
	toLambda
	toUnknownTarget
)

// route picks the handler for r: the X-Amz-Target of a JSON-protocol API
// first, then the path.
func (rt *Router) route(r *http.Request) destination {
	target := r.Header.Get("X-Amz-Target")
	switch {
	case strings.HasPrefix(target, "DynamoDB_20120810.") && rt.DynamoDB != nil:
		return toDynamoDB
	case strings.HasPrefix(target, "AWSEvents.") && rt.Events != nil:
		return toEvents
	case strings.HasPrefix(target, "AmazonSQS.") && rt.SQS != nil:
		return toSQS
	case rt.IsManagement != nil && rt.IsManagement(r):
		return toManagement
	case strings.HasPrefix(r.URL.Path, "/_wsgate/") && rt.Admin != nil:
		return toAdmin
	case strings.HasPrefix(r.URL.Path, LambdaInvokePath) && target == "" && rt.Lambda != nil:
		return toLambda
	case target != "":
		return toUnknownTarget
	}
	return toNone
}

// ServesAdmin reports whether r goes to the Admin handler: a /_wsgate/
// path that no AWS API claims by its X-Amz-Target.
func (rt *Router) ServesAdmin(r *http.Request) bool { return rt.route(r) == toAdmin }

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch rt.route(r) {
	case toDynamoDB:
		rt.DynamoDB.ServeHTTP(w, r)
	case toEvents:
		rt.Events.ServeHTTP(w, r)
	case toSQS:
		rt.SQS.ServeHTTP(w, r)
	case toManagement:
		rt.Management.ServeHTTP(w, r)
	case toAdmin:
		rt.Admin.ServeHTTP(w, r)
	case toLambda:
		rt.Lambda.ServeHTTP(w, r)
	case toUnknownTarget:
		serviceError(w, http.StatusBadRequest, "UnknownOperationException",
			"the local gateway serves DynamoDB, EventBridge PutEvents, SQS (JSON protocol), Lambda Invoke and @connections, not "+r.Header.Get("X-Amz-Target"))
	default:
		serviceError(w, http.StatusNotFound, "NotFoundException",
			"no local service at "+r.URL.Path+"; see /_wsgate/health")
	}
}

func serviceError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(map[string]string{"__type": code, "message": msg})
	w.Header().Set(crc32Header, strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Throttle answers a share of the requests it passes on with DynamoDB's
// throttling error (HTTP 400 ProvisionedThroughputExceededException), as a
// table over its capacity does; the SDKs retry it with backoff. Rate 0
// passes everything.
type Throttle struct {
	next http.Handler
	rate atomic.Uint64 // math.Float64bits
	// Throttled counts the requests answered with the error.
	Throttled atomic.Int64
}

// NewThrottle wraps next.
func NewThrottle(next http.Handler) *Throttle { return &Throttle{next: next} }

// SetRate sets the share of requests throttled, 0 to 1.
func (t *Throttle) SetRate(r float64) { t.rate.Store(math.Float64bits(min(max(r, 0), 1))) }

// Rate is the share of requests throttled.
func (t *Throttle) Rate() float64 { return math.Float64frombits(t.rate.Load()) }

func (t *Throttle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rate := t.Rate(); rate > 0 && rand.Float64() < rate {
		t.Throttled.Add(1)
		serviceError(w, http.StatusBadRequest, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
			"The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API.")
		return
	}
	t.next.ServeHTTP(w, r)
}

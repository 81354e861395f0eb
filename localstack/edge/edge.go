// Package edge is the local AWS endpoint (LocalStack's "edge port"): one
// HTTP listener that routes each request to the service it is for, by the
// X-Amz-Target header of JSON-protocol APIs or by path, so SDKs configured
// with AWS_ENDPOINT_URL and `aws --endpoint-url` work unchanged.
package edge

import (
	"encoding/json"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
)

// Router dispatches AWS API requests.
type Router struct {
	// DynamoDB receives DynamoDB_20120810.* requests.
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
}

// Proxy returns a reverse proxy to a backend such as DynamoDB Local.
func Proxy(backend string) (http.Handler, error) {
	u, err := url.Parse(backend)
	if err != nil {
		return nil, err
	}
	p := httputil.NewSingleHostReverseProxy(u)
	// Keep connections to the backend for reuse under load (the default
	// keeps two and churns through a file descriptor per request).
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 512
	tr.MaxConnsPerHost = 1024
	p.Transport = tr
	p.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		serviceError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "backend unavailable: "+err.Error())
	}
	return p, nil
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	switch {
	case strings.HasPrefix(target, "DynamoDB_20120810.") && rt.DynamoDB != nil:
		rt.DynamoDB.ServeHTTP(w, r)
	case strings.HasPrefix(target, "AWSEvents.") && rt.Events != nil:
		rt.Events.ServeHTTP(w, r)
	case strings.HasPrefix(target, "AmazonSQS.") && rt.SQS != nil:
		rt.SQS.ServeHTTP(w, r)
	case rt.IsManagement != nil && rt.IsManagement(r):
		rt.Management.ServeHTTP(w, r)
	case strings.HasPrefix(r.URL.Path, "/_wsgate/") && rt.Admin != nil:
		rt.Admin.ServeHTTP(w, r)
	case target != "":
		serviceError(w, http.StatusBadRequest, "UnknownOperationException",
			"the local gateway serves DynamoDB, EventBridge PutEvents, SQS (JSON protocol) and @connections, not "+target)
	default:
		serviceError(w, http.StatusNotFound, "NotFoundException",
			"no local service at "+r.URL.Path+"; see /_wsgate/health")
	}
}

func serviceError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

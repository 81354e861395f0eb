package gateway

import (
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/wsgate/wsgate/shared/auth"
	"github.com/wsgate/wsgate/shared/config"
)

// maxLoggedOrigin bounds the client-sent Origin copied into a log line.
const maxLoggedOrigin = 200

// originRefusal says why a handshake's Origin refuses it ("" to go on), and
// the Origin as sent, for the log.
//
// Browsers attach cookies to a WebSocket handshake whatever page opens it,
// and no CORS rule stops that page reading the socket: a cookie token is
// only as good as the check that the page is one of ours (cross-site
// WebSocket hijacking). So a cookie token needs an allowed Origin, and an
// empty list allows none. With a list, every handshake that carries an
// Origin (every browser's) must match it, whatever the token; programs
// send no Origin and are not concerned.
func (g *Gateway) originRefusal(req events.APIGatewayWebsocketProxyRequest, source auth.Source) (reason, origin string) {
	values := headerValues(req, "Origin")
	origin = strings.Join(values, ",")
	if len(origin) > maxLoggedOrigin {
		origin = origin[:maxLoggedOrigin] + "..."
	}
	allowed := len(values) > 0
	for _, v := range values {
		allowed = allowed && config.AllowsOrigin(g.cfg.AllowedOrigins, v)
	}
	switch {
	case allowed:
		return "", origin
	case source == auth.SourceCookie && len(g.cfg.AllowedOrigins) == 0:
		return "a cookie token needs " + config.EnvAllowedOrigins + " to name the pages that may use it", origin
	case source == auth.SourceCookie && len(values) == 0:
		return "a cookie token needs an Origin header naming an allowed page", origin
	case len(values) > 0 && len(g.cfg.AllowedOrigins) > 0:
		return "origin not allowed", origin
	}
	return "", origin
}

// headerValues returns every value of a request header, its name matched
// case-insensitively (API Gateway passes names as the client sent them):
// the multi-value map's when it has the header, else the single-value map's.
func headerValues(req events.APIGatewayWebsocketProxyRequest, name string) []string {
	var out []string
	for k, vs := range req.MultiValueHeaders {
		if strings.EqualFold(k, name) {
			out = append(out, vs...)
		}
	}
	if len(out) > 0 {
		return out
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			out = append(out, v)
		}
	}
	return out
}

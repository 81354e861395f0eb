package auth

import (
	"net/http"
	"strings"
)

// Source says where a token was found.
type Source string

// Token sources, in the order Extract tries them.
const (
	SourceNone          Source = ""
	SourceHeader        Source = "authorization"
	SourceSubprotocol   Source = "subprotocol"
	SourceQuery         Source = "query"
	SourceCookie        Source = "cookie"
	subprotocolPrefix          = "bearer."
	maxSubprotocolCount        = 16
)

// Handshake is the part of a WebSocket upgrade request tokens are read from.
// Header names are matched case-insensitively, as API Gateway passes them
// through in whatever case the client sent.
type Handshake struct {
	Headers      map[string]string
	MultiHeaders map[string][]string
	Query        map[string]string
}

// Extracted is the token found in a handshake and the subprotocol the
// response must echo (empty when the client offered none).
type Extracted struct {
	Token       string
	Source      Source
	Subprotocol string
}

// Extract finds the bearer token, first found wins: Authorization header,
// Sec-WebSocket-Protocol entry "bearer.<token>", query "token" or "Token",
// then the cookie named cookieName (when not empty).
//
// Whenever the client offers subprotocols, one must be echoed or browsers
// drop the connection: the first offered entry that is not a bearer entry,
// else the bearer entry itself.
func Extract(h Handshake, cookieName string) Extracted {
	var out Extracted
	protocols := h.values("Sec-WebSocket-Protocol")
	var bearerEntry string
	for _, p := range protocols {
		if strings.HasPrefix(p, subprotocolPrefix) {
			if bearerEntry == "" {
				bearerEntry = p
			}
		} else if out.Subprotocol == "" {
			out.Subprotocol = p
		}
	}
	if out.Subprotocol == "" {
		out.Subprotocol = bearerEntry
	}

	for _, v := range h.values("Authorization") {
		scheme, tok, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) != "" {
			out.Token, out.Source = strings.TrimSpace(tok), SourceHeader
			return out
		}
	}
	if bearerEntry != "" && len(bearerEntry) > len(subprotocolPrefix) {
		out.Token, out.Source = bearerEntry[len(subprotocolPrefix):], SourceSubprotocol
		return out
	}
	for _, k := range []string{"token", "Token"} {
		if v := h.Query[k]; v != "" {
			out.Token, out.Source = v, SourceQuery
			return out
		}
	}
	if cookieName != "" {
		for _, line := range h.values("Cookie") {
			cookies, err := http.ParseCookie(line)
			if err != nil {
				continue
			}
			for _, c := range cookies {
				if c.Name == cookieName && c.Value != "" {
					out.Token, out.Source = c.Value, SourceCookie
					return out
				}
			}
		}
	}
	return out
}

// values returns every value of a header, splitting comma lists for
// Sec-WebSocket-Protocol and joining the single- and multi-value maps API
// Gateway provides.
func (h Handshake) values(name string) []string {
	var raw []string
	for k, vs := range h.MultiHeaders {
		if strings.EqualFold(k, name) {
			raw = append(raw, vs...)
		}
	}
	if len(raw) == 0 {
		for k, v := range h.Headers {
			if strings.EqualFold(k, name) {
				raw = append(raw, v)
			}
		}
	}
	if !strings.EqualFold(name, "Sec-WebSocket-Protocol") {
		return raw
	}
	var out []string
	for _, v := range raw {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" && len(out) < maxSubprotocolCount {
				out = append(out, p)
			}
		}
	}
	return out
}

package ddbproxy

import (
	"bytes"
	"encoding/json"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
)

// proxyConns bounds the connections to DynamoDB Local (as edge.newProxy
// does); a request beyond it waits for one to be free.
const proxyConns = 1024

const crc32Header = "X-Amz-Crc32"

func newTransport() *http.Transport {
	// Keep every connection to the backend for reuse under load: the
	// default keeps two per host and 100 in all, so thousands of requests
	// in flight churn through new connections, and connect() slows to a
	// crawl as the ephemeral ports fill with TIME_WAIT.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 0 // no overall cap
	tr.MaxIdleConnsPerHost = proxyConns
	tr.MaxConnsPerHost = proxyConns
	// Never ask for gzip on the client's behalf: bodies the proxy rewrites
	// must arrive plain, and the rest are passed on as they come.
	tr.DisableCompression = true
	return tr
}

// hopHeaders are meaningful for one connection only and not forwarded.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// roundTrip sends r to DynamoDB Local with body (nil: r's own body,
// streamed).
func (p *Proxy) roundTrip(r *http.Request, body []byte) (*http.Response, error) {
	u := *p.target
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	var rd io.Reader = r.Body
	size := r.ContentLength
	if body != nil {
		rd, size = bytes.NewReader(body), int64(len(body))
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("Content-Length") // the transport writes ContentLength
	out.ContentLength = size
	if body != nil {
		out.Header.Set("Accept-Encoding", "identity") // a body to read, maybe rewrite
	}
	return p.rt.RoundTrip(out)
}

// pass streams r to DynamoDB Local and the answer back, unread.
func (p *Proxy) pass(w http.ResponseWriter, r *http.Request) { p.forward(w, r, nil) }

// forward sends body (nil: r's own) to DynamoDB Local and the answer back.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	resp, err := p.roundTrip(r, body)
	if err != nil {
		backendDown(w, err)
		return
	}
	relay(w, resp)
}

// relay passes resp on, streamed unless it lacks its checksum: DynamoDB
// Local leaves it off its errors.
func relay(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	if resp.Header.Get(crc32Header) == "" {
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			backendDown(w, err)
			return
		}
		writeResponse(w, resp, b)
		return
	}
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// exchange sends body to DynamoDB Local and reads the whole answer.
func (p *Proxy) exchange(r *http.Request, body []byte) (*http.Response, []byte, error) {
	resp, err := p.roundTrip(r, body)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if resp.ContentLength > 0 && resp.ContentLength <= maxRequest {
		buf.Grow(int(resp.ContentLength) + bytes.MinRead) // read in one array, not doubling into it
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return nil, nil, err
	}
	return resp, buf.Bytes(), nil
}

// writeResponse answers with resp's status and headers and body, which may
// have been rewritten: Content-Length and the checksum are set for it.
func writeResponse(w http.ResponseWriter, resp *http.Response, body []byte) {
	h := w.Header()
	copyHeader(h, resp.Header)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set(crc32Header, strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append(dst[k][:0:0], vs...)
	}
	for _, k := range hopHeaders {
		dst.Del(k)
	}
}

func backendDown(w http.ResponseWriter, err error) {
	serviceError(w, http.StatusServiceUnavailable, "ServiceUnavailable", "backend unavailable: "+err.Error())
}

// serviceError answers as DynamoDB does: HTTP status, JSON body with the
// error's type, checksum header.
func serviceError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}{code, msg})
	writeError(w, status, code, body)
}

func writeError(w http.ResponseWriter, status int, code string, body []byte) {
	h := w.Header()
	h.Set(crc32Header, strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	h.Set("Content-Type", "application/x-amz-json-1.0")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

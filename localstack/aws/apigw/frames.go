package apigw

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// frameSniffer watches the raw bytes a client sends and parses WebSocket
// frame headers as they pass, so the gateway can enforce API Gateway's
// per-frame limit (the WebSocket library only sees whole messages) and see
// every frame, control frames included, as activity.
type frameSniffer struct {
	net.Conn
	r        io.Reader
	maxFrame int64

	mu        sync.Mutex
	hdr       []byte // partial header
	skip      int64  // payload bytes left in the current frame
	tooBig    bool
	lastFrame time.Time
}

func (f *frameSniffer) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 {
		f.observe(p[:n])
	}
	return n, err
}

func (f *frameSniffer) observe(b []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(b) > 0 {
		if f.skip > 0 {
			k := min(int64(len(b)), f.skip)
			f.skip -= k
			b = b[k:]
			continue
		}
		f.hdr = append(f.hdr, b[0])
		b = b[1:]
		need := headerLen(f.hdr)
		if need < 0 || len(f.hdr) < need {
			continue
		}
		opcode := f.hdr[0] & 0x0f
		length := payloadLen(f.hdr)
		if opcode < 0x8 && length > f.maxFrame {
			f.tooBig = true
		}
		f.lastFrame = time.Now()
		f.skip = length
		f.hdr = f.hdr[:0]
	}
}

// headerLen is the full header length once enough of it is known, else -1.
func headerLen(h []byte) int {
	if len(h) < 2 {
		return -1
	}
	n := 2
	switch h[1] & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if h[1]&0x80 != 0 {
		n += 4 // mask key
	}
	return n
}

func payloadLen(h []byte) int64 {
	switch l := h[1] & 0x7f; l {
	case 126:
		return int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		return int64(binary.BigEndian.Uint64(h[2:10]) & (1<<63 - 1))
	default:
		return int64(l)
	}
}

// state reports whether a frame over the limit was seen and when the last
// frame arrived.
func (f *frameSniffer) state() (tooBig bool, last time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tooBig, f.lastFrame
}

// sniffingWriter hands the WebSocket library a hijacked connection whose
// reads pass through a frameSniffer.
type sniffingWriter struct {
	http.ResponseWriter
	maxFrame int64
	sniffer  *frameSniffer
}

func (w *sniffingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := w.ResponseWriter.(http.Hijacker).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Bytes already buffered by the HTTP server come first.
	buffered, _ := brw.Reader.Peek(brw.Reader.Buffered())
	w.sniffer = &frameSniffer{
		Conn:      conn,
		r:         io.MultiReader(bytes.NewReader(append([]byte(nil), buffered...)), conn),
		maxFrame:  w.maxFrame,
		lastFrame: time.Now(),
	}
	return w.sniffer, bufio.NewReadWriter(bufio.NewReader(w.sniffer), brw.Writer), nil
}

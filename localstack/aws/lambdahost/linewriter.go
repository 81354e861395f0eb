package lambdahost

import "bytes"

// maxLineBytes is the longest line passed on whole; longer ones are passed
// on in pieces of this size.
const maxLineBytes = 1 << 20

// lineWriter splits what a process writes into lines and hands each one,
// without its newline, to emit. Each line is a fresh slice emit may keep.
// Writes come from one goroutine (os/exec's copier), flush after it ends.
type lineWriter struct {
	emit func(line []byte)
	max  int
	buf  []byte
}

func newLineWriter(emit func(line []byte)) *lineWriter {
	return &lineWriter{emit: emit, max: maxLineBytes}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.buf = append(w.buf, p...)
			for len(w.buf) > w.max {
				w.emit(bytes.Clone(w.buf[:w.max]))
				w.buf = append(w.buf[:0], w.buf[w.max:]...)
			}
			break
		}
		line := p[:i]
		if len(w.buf) > 0 {
			line = append(w.buf, line...)
			w.buf = w.buf[:0]
		}
		for len(line) > w.max {
			w.emit(bytes.Clone(line[:w.max]))
			line = line[w.max:]
		}
		w.emit(bytes.Clone(line))
		p = p[i+1:]
	}
	return n, nil
}

// flush passes on a last line that had no newline.
func (w *lineWriter) flush() {
	if w == nil || len(w.buf) == 0 {
		return
	}
	w.emit(bytes.Clone(w.buf))
	w.buf = nil
}

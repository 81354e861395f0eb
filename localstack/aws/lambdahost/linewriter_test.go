package lambdahost

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLineWriter_SplitsWritesIntoLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		max    int
		writes []string
		want   []string
	}{
		{name: "one line per write", max: 100, writes: []string{"a\n", "b\n"}, want: []string{"a", "b"}},
		{name: "several lines in a write", max: 100, writes: []string{"a\nb\nc\n"}, want: []string{"a", "b", "c"}},
		{name: "a line across writes", max: 100, writes: []string{"he", "ll", "o\nwor", "ld\n"}, want: []string{"hello", "world"}},
		{name: "empty lines are kept", max: 100, writes: []string{"\n\na\n"}, want: []string{"", "", "a"}},
		{name: "last line without newline is flushed", max: 100, writes: []string{"a\nb"}, want: []string{"a", "b"}},
		{name: "carriage returns are the process's business", max: 100, writes: []string{"a\r\n"}, want: []string{"a\r"}},
		{name: "a line of exactly max stays whole", max: 4, writes: []string{"abcd\n"}, want: []string{"abcd"}},
		{name: "a line of exactly max across writes stays whole", max: 4, writes: []string{"ab", "cd", "\n"}, want: []string{"abcd"}},
		{name: "longer lines are cut at max", max: 4, writes: []string{"abcdefghij\n"}, want: []string{"abcd", "efgh", "ij"}},
		{name: "longer buffered lines are cut at max", max: 4, writes: []string{"abc", "defgh", "ij\n"}, want: []string{"abcd", "efgh", "ij"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			w := newLineWriter(func(line []byte) { got = append(got, string(line)) })
			w.max = tt.max
			for _, s := range tt.writes {
				n, err := w.Write([]byte(s))
				assert.NoError(t, err)
				assert.Equal(t, len(s), n)
			}
			w.flush()
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestLineWriter_LinesDoNotShareMemory(t *testing.T) {
	t.Parallel()
	var got [][]byte
	w := newLineWriter(func(line []byte) { got = append(got, line) })

	_, _ = w.Write([]byte("first"))
	_, _ = w.Write([]byte("\nsecond\n"))
	_, _ = w.Write([]byte("third\n"))

	assert.Equal(t, [][]byte{[]byte("first"), []byte("second"), []byte("third")}, got)
}

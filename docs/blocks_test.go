package docs

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A block is one fenced code block of a page.
type block struct {
	Line int    // of the opening fence, 1-based
	Lang string // the fence's info string: sh, go, json, ...
	Text string // the content, its fence's indentation removed, no final newline
	Note note   // the HTML comment on the line before the fence
}

// Runnable reports whether the block is a shell block the test runs.
func (b block) Runnable() bool {
	switch b.Lang {
	case "sh", "bash", "shell":
		return b.Note.Kind != noteSkip && b.Note.Kind != noteFile
	}
	return false
}

type noteKind int

const (
	noteNone       noteKind = iota
	noteSkip                // <!-- not run: reason -->
	noteBackground          // <!-- run: background, ready "A", expect "B" -->
	noteFile                // <!-- file: path -->
)

type note struct {
	Kind          noteKind
	Raw           string
	Reason        string // noteSkip
	Ready, Expect string // noteBackground
	File          string // noteFile
}

var (
	fenceRe      = regexp.MustCompile("^(\\s*)```+\\s*([A-Za-z0-9_+-]*)\\s*$")
	commentRe    = regexp.MustCompile(`^\s*<!--\s*(.*?)\s*-->\s*$`)
	backgroundRe = regexp.MustCompile(`^run:\s*background,\s*ready\s+("(?:[^"\\]|\\.)*"),\s*expect\s+("(?:[^"\\]|\\.)*")$`)
)

// parseBlocks finds the fenced blocks of a Markdown page and their notes.
func parseBlocks(src string) ([]block, error) {
	lines := strings.Split(src, "\n")
	var out []block
	for i := 0; i < len(lines); i++ {
		m := fenceRe.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		indent := m[1]
		b := block{Line: i + 1, Lang: m[2]}
		if i > 0 {
			if c := commentRe.FindStringSubmatch(lines[i-1]); c != nil {
				n, err := parseNote(c[1])
				if err != nil {
					return nil, fmt.Errorf("line %d: %w", i, err)
				}
				b.Note = n
			}
		}
		var body []string
		j := i + 1
		for ; j < len(lines) && !fenceRe.MatchString(lines[j]); j++ {
			body = append(body, strings.TrimPrefix(lines[j], indent))
		}
		if j == len(lines) {
			return nil, fmt.Errorf("line %d: the block never closes", b.Line)
		}
		b.Text = strings.Join(body, "\n")
		out = append(out, b)
		i = j
	}
	return out, nil
}

func parseNote(s string) (note, error) {
	n := note{Raw: s}
	switch {
	case strings.HasPrefix(s, "not run:"):
		n.Kind, n.Reason = noteSkip, strings.TrimSpace(strings.TrimPrefix(s, "not run:"))
		if n.Reason == "" {
			return n, errors.New("<!-- not run: --> needs a reason")
		}
	case strings.HasPrefix(s, "file:"):
		n.Kind, n.File = noteFile, strings.TrimSpace(strings.TrimPrefix(s, "file:"))
	case strings.HasPrefix(s, "run:"):
		m := backgroundRe.FindStringSubmatch(s)
		if m == nil {
			return n, fmt.Errorf(`bad note %q: want <!-- run: background, ready "A", expect "B" -->`, s)
		}
		n.Kind = noteBackground
		var err error
		if n.Ready, err = strconv.Unquote(m[1]); err == nil {
			n.Expect, err = strconv.Unquote(m[2])
		}
		if err != nil {
			return n, fmt.Errorf("bad note %q: %w", s, err)
		}
	}
	// Any other comment is prose, not a note.
	return n, nil
}

// pageScript is one bash script that runs a page's shell blocks in order,
// the documented ports replaced by the test stack's; "" when it has none.
// A background block runs all but its last command in the script's shell
// (so its exports carry on, as in a terminal), and its last in the
// background: the next block waits for its output to show Ready, and the
// page ends by waiting for Expect.
func pageScript(page string, blocks []block, ports map[string]string) string {
	var sb strings.Builder
	var bgs []string
	sb.WriteString("set -eo pipefail\nW=$(mktemp -d)\ntrap 'rc=$?; kill $(jobs -p) 2>/dev/null || true; rm -rf \"$W\"; exit $rc' EXIT\n")
	sb.WriteString(`waitfor() { # file pid text what
  for _ in $(seq 1 300); do grep -qF -- "$3" "$1" && return 0; kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  grep -qF -- "$3" "$1" && return 0
  echo "!! $4 never printed \"$3\"; it printed:"; cat "$1"; return 1
}
`)
	n := 0
	for _, b := range blocks {
		if !b.Runnable() {
			continue
		}
		n++
		text := b.Text
		for from, to := range ports {
			text = strings.ReplaceAll(text, from, to)
		}
		where := fmt.Sprintf("%s:%d", page, b.Line)
		fmt.Fprintf(&sb, "echo '==> %s'\n", where)
		if b.Note.Kind != noteBackground {
			sb.WriteString(text + "\n")
			continue
		}
		head, last := splitLast(text)
		if head != "" {
			sb.WriteString(head + "\n")
		}
		out := fmt.Sprintf("$W/bg%d", n)
		fmt.Fprintf(&sb, "( %s ) >%s 2>&1 &\nbg%d=$!\n", last, out, n)
		fmt.Fprintf(&sb, "waitfor %s $bg%d %s %s\n", out, n, shellQuote(b.Note.Ready), shellQuote(where))
		bgs = append(bgs, fmt.Sprintf("waitfor %s $bg%d %s %s\necho '--- %s printed:'; cat %s\n", out, n, shellQuote(b.Note.Expect), shellQuote(where), where, out))
	}
	if n == 0 {
		return ""
	}
	for _, b := range bgs {
		sb.WriteString(b)
	}
	return sb.String()
}

// splitLast splits a block into all its commands but the last, and the last
// (a line ending in a backslash continues on the next).
func splitLast(text string) (head, last string) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	start := len(lines) - 1
	for start > 0 && strings.HasSuffix(lines[start-1], "\\") {
		start--
	}
	return strings.Join(lines[:start], "\n"), strings.Join(lines[start:], "\n")
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

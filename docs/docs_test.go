// Package docs tests the README and the pages under docs/: every shell block
// runs against a local stack, every Go or JavaScript block is a verbatim
// part of a file a test compiles or runs, and every relative link and anchor
// resolves. The conventions are in the README, "How the docs are tested".
package docs

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stacktest"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// root is the repository root, seen from this package.
const root = ".."

// pages are the files whose blocks and links are checked: the README and
// every docs/*.md.
func pages(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	return append([]string{filepath.Join(root, "README.md")}, files...)
}

// Every block's annotation is well-formed, and every Go or JavaScript block
// either names the file it is part of (and is) or says why it is not run.
func TestDocs_BlocksAreRunOrIncludedOrSayWhyNot(t *testing.T) {
	for _, p := range pages(t) {
		src, err := os.ReadFile(p)
		require.NoError(t, err)
		blocks, err := parseBlocks(string(src))
		require.NoError(t, err, p)
		for _, b := range blocks {
			where := fmt.Sprintf("%s:%d", rel(p), b.Line)
			if b.Note.Kind == noteFile {
				file, err := os.ReadFile(filepath.Join(root, b.Note.File))
				if assert.NoError(t, err, "%s: the file the block is part of", where) {
					assert.Contains(t, string(file), b.Text, "%s: the block is not a verbatim part of %s: paste the file's text", where, b.Note.File)
				}
				continue
			}
			switch {
			case b.Runnable() && b.Note.Kind == noteBackground:
			case b.Runnable(), b.Note.Kind == noteSkip:
			case b.Lang == "go" || b.Lang == "js" || b.Lang == "javascript" || b.Lang == "ts":
				t.Errorf("%s: a %s block must name the file it comes from (<!-- file: path -->) or say why it is not run (<!-- not run: reason -->)", where, b.Lang)
			case b.Note.Kind != noteNone:
				t.Errorf("%s: a %q block is never run: its annotation %q means nothing here", where, b.Lang, b.Note.Raw)
			}
		}
	}
}

// Every relative link and #anchor in the README and docs/ resolves.
func TestDocs_LinksResolve(t *testing.T) {
	for _, p := range pages(t) {
		src, err := os.ReadFile(p)
		require.NoError(t, err)
		for _, l := range links(string(src)) {
			if msg := checkLink(p, l.Target); msg != "" {
				t.Errorf("%s:%d: link %q: %s", rel(p), l.Line, l.Target, msg)
			}
		}
	}
}

// Every shell block of the README and docs/ runs, as written, against a
// local stack, page by page.
func TestDocs_CommandsRun(t *testing.T) {
	bash, err := exec.LookPath("bash")
	require.NoError(t, err)
	dir := checkout(t)
	s := stacktest.Start(t)
	ports := map[string]string{
		"127.0.0.1:4510": hostOf(t, s.WebSocketURL),
		"127.0.0.1:4566": hostOf(t, s.AWSEndpoint),
		"127.0.0.1:8000": hostOf(t, s.DynamoDBEndpoint),
	}
	env := []string{
		"WSGATE_URL=" + s.WebSocketURL,
		"AWS_ENDPOINT_URL=" + s.AWSEndpoint,
		"WSGATE_JWT_SECRET=" + s.Secret,
	}
	for _, p := range pages(t) {
		src, err := os.ReadFile(p)
		require.NoError(t, err)
		blocks, err := parseBlocks(string(src))
		require.NoError(t, err)
		script := pageScript(rel(p), blocks, ports)
		if script == "" {
			continue
		}
		t.Run(rel(p), func(t *testing.T) {
			out, err := runScript(bash, dir, script, env)
			if err != nil {
				t.Fatalf("a block of %s failed (%v); its output:\n%s", rel(p), err, out)
			}
			t.Logf("%s", out)
		})
	}
}

// checkout is a folder that looks like the repository root after
// `make local-bin`: every top-level entry linked, and its own bin/wsgate.
func checkout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	abs, err := filepath.Abs(root)
	require.NoError(t, err)
	for _, e := range entries {
		if e.Name() == "bin" {
			continue
		}
		require.NoError(t, os.Symlink(filepath.Join(abs, e.Name()), filepath.Join(dir, e.Name())))
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "bin", "wsgate"), "./localstack/devtools/cmd/wsgate")
	cmd.Dir = abs
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build bin/wsgate: %s", out)
	return dir
}

func runScript(bash, dir, script string, env []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bash, "-c", script)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(), env...)
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// cleanEnv is this process's environment without the settings a block could
// pick up by accident from the developer's shell.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WSGATE_") || strings.HasPrefix(kv, "AWS_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func hostOf(t *testing.T, endpoint string) string {
	t.Helper()
	if !strings.Contains(endpoint, "://") {
		return endpoint
	}
	u, err := url.Parse(endpoint)
	require.NoError(t, err)
	return u.Host
}

func rel(p string) string { return strings.TrimPrefix(filepath.ToSlash(p), "../") }

var linkRe = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)\)`)

type link struct {
	Line   int
	Target string
}

// links are the Markdown links outside code blocks and inline code.
func links(src string) []link {
	var out []link
	inFence := false
	for i, line := range strings.Split(src, "\n") {
		if fenceRe.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range linkRe.FindAllStringSubmatch(stripInlineCode(line), -1) {
			out = append(out, link{Line: i + 1, Target: m[1]})
		}
	}
	return out
}

var inlineCodeRe = regexp.MustCompile("`+[^`]*`+")

func stripInlineCode(line string) string { return inlineCodeRe.ReplaceAllString(line, "") }

// checkLink says what is wrong with a link from page, or "".
func checkLink(page, target string) string {
	if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
		return ""
	}
	path, anchor, _ := strings.Cut(target, "#")
	file := page
	if path != "" {
		file = filepath.Join(filepath.Dir(page), path)
		if _, err := os.Stat(file); err != nil {
			return "no such file"
		}
	}
	if anchor == "" {
		return ""
	}
	if !strings.HasSuffix(file, ".md") {
		return "an anchor into a file that is not Markdown"
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	for _, a := range anchors(string(src)) {
		if a == anchor {
			return ""
		}
	}
	return "no heading makes anchor #" + anchor + " in " + rel(file)
}

var headingRe = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)

// anchors are the ids GitHub gives a page's headings: lower case, only
// letters, digits, spaces, '-' and '_' kept, spaces turned into '-', and a
// repeated id suffixed -1, -2, ...
func anchors(src string) []string {
	seen := map[string]int{}
	var out []string
	inFence := false
	for _, line := range strings.Split(src, "\n") {
		if fenceRe.MatchString(line) {
			inFence = !inFence
			continue
		}
		m := headingRe.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		id := slug(m[1])
		if n := seen[id]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", id, n))
		} else {
			out = append(out, id)
		}
		seen[id]++
	}
	return out
}

func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
			b.WriteRune(r)
		}
	}
	return b.String()
}

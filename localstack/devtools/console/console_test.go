package console_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wsgate/wsgate/localstack/aws/stack"
	"github.com/wsgate/wsgate/localstack/aws/stacktest"
	"github.com/wsgate/wsgate/localstack/devtools/console"
)

func TestMain(m *testing.M) { stacktest.Main(m) }

// consoleURL is the page's address on the stack's WebSocket port.
func consoleURL(s *stack.Stack) string {
	return "http" + strings.TrimPrefix(s.WebSocketURL, "ws") + "console"
}

func TestConsole_ServesThePageAndRefusesBadTestEvents(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.Console = console.ForStack })
	for _, path := range []string{"/", "/wsgate-client.mjs", "/console.js", "/console.css"} {
		resp, err := http.Get(consoleURL(s) + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
	resp, err := http.Get(consoleURL(s) + "/api/token?sub=alice&topics=demo.>")
	require.NoError(t, err)
	var tok struct{ Token, Sub string }
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&tok))
	resp.Body.Close()
	assert.Equal(t, "alice", tok.Sub)
	assert.Len(t, strings.Split(tok.Token, "."), 3)

	for body, want := range map[string]int{
		`{"topic":"demo.x","payload":{"a":1}}`: http.StatusOK,
		`{"topic":"bad topic","payload":{}}`:   http.StatusBadRequest,
		`{"payload":{}}`:                       http.StatusBadRequest,
		`not json`:                             http.StatusBadRequest,
	} {
		resp, err := http.Post(consoleURL(s)+"/api/publish", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		var out map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		assert.Equal(t, want, resp.StatusCode, "%s: %v", body, out)
		if want != http.StatusOK {
			assert.NotEmpty(t, out["error"], "a refusal says why")
		}
	}
}

// An event the broadcast function refused is listed with its id and reason.
func TestConsole_ListsRefusedEvents(t *testing.T) {
	s := stacktest.Start(t, func(o *stack.Options) { o.Console = console.ForStack })
	bus := eventbridge.New(eventbridge.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.AWSEndpoint), Credentials: s.Credentials()})
	out, err := bus.PutEvents(context.Background(), &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		EventBusName: aws.String(s.BusName), Source: aws.String("t"), DetailType: aws.String("t"),
		Detail: aws.String(`{"topic":"demo.x","payload":1,"audiance":{"orgs":["x"]}}`),
	}}})
	require.NoError(t, err)
	require.Zero(t, out.FailedEntryCount)
	id := aws.ToString(out.Entries[0].EventId)
	var list []stack.Refusal
	require.Eventually(t, func() bool {
		resp, err := http.Get(consoleURL(s) + "/api/refused")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		list = nil
		return json.NewDecoder(resp.Body).Decode(&list) == nil && len(list) > 0
	}, 20*time.Second, 50*time.Millisecond)
	assert.Equal(t, id, list[0].EventID)
	assert.Contains(t, list[0].Reason, "audiance")
}

// TestConsole_InHeadlessChromium drives the page in a real browser: connect
// with a dev token, subscribe, receive an event published through PutEvents
// (the time it took is printed), survive a dropped connection by resuming without a gap.
// The screenshot lands in $WSGATE_ARTIFACTS (default test-artifacts/).
func TestConsole_InHeadlessChromium(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	node, err := exec.LookPath("node")
	_, statErr := os.Stat(chromium)
	_, pwErr := os.Stat("../../../node_modules/playwright-core")
	if err != nil || statErr != nil || pwErr != nil {
		msg := "needs node, Chromium (apt-get install chromium; or set CHROMIUM) and node_modules/playwright-core (make deps)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	artifacts := os.Getenv("WSGATE_ARTIFACTS")
	if artifacts == "" {
		artifacts = "../../../test-artifacts"
	}
	require.NoError(t, os.MkdirAll(artifacts, 0o755))
	shot, err := filepath.Abs(filepath.Join(artifacts, "console.png"))
	require.NoError(t, err)

	s := stacktest.Start(t, func(o *stack.Options) { o.Console = console.ForStack })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "browser_test.mjs")
	cmd.Env = append(os.Environ(),
		"CONSOLE_URL="+consoleURL(s), "AWS_ENDPOINT="+s.AWSEndpoint,
		"SCREENSHOT="+shot, "CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	t.Logf("browser: %s", out)
	require.NoError(t, err, "the browser checks failed")
	t.Logf("screenshot: %s", shot)
}

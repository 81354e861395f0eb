package main

import (
	"archive/zip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
	"github.com/stretchr/testify/require"
)

// The tests synthesize offline: no AWS credentials, no `make build`. They
// use placeholder function zips in a temporary folder (context binDir),
// the feature flags of cdk.json (so the template is the one `cdk synth`
// writes) and a temporary CDK_OUTDIR.

var scratch string // temporary folder of the test binary

func TestMain(m *testing.M) {
	var err error
	if scratch, err = os.MkdirTemp("", "wsgate-infra-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	jsii.Close()
	os.RemoveAll(scratch)
	os.Exit(code)
}

// placeholderZips writes connect.zip ... broadcast.zip, each holding a
// tiny "bootstrap", and returns their folder.
var placeholderZips = sync.OnceValues(func() (string, error) {
	dir := filepath.Join(scratch, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, fn := range Functions {
		f, err := os.Create(filepath.Join(dir, fn+".zip"))
		if err != nil {
			return "", err
		}
		zw := zip.NewWriter(f)
		w, err := zw.Create("bootstrap")
		if err == nil {
			_, err = w.Write([]byte("#!/bin/sh\necho placeholder for " + fn + "\n"))
		}
		if err == nil {
			err = zw.Close()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", err
		}
	}
	return dir, nil
})

// cdkJSONContext is the context of cdk.json (the feature flags).
func cdkJSONContext(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("cdk.json")
	require.NoError(t, err)
	var c struct {
		Context map[string]any `json:"context"`
	}
	require.NoError(t, json.Unmarshal(b, &c))
	return c.Context
}

// synthesized is one synthesized stack.
type synthesized struct {
	stack awscdk.Stack
	stage string
	tmpl  map[string]any
}

var (
	synthMu    sync.Mutex
	synthCache = map[string]*synthesized{}
)

// synth builds the app with cdk.json's context plus ctx (string values, as
// `-c key=value` gives them) and returns the synthesized stack. Results
// are shared between tests by context.
func synth(t *testing.T, ctx map[string]string) *synthesized {
	t.Helper()
	keyParts := make([]string, 0, len(ctx))
	for k, v := range ctx {
		keyParts = append(keyParts, k+"="+v)
	}
	sort.Strings(keyParts)
	key := strings.Join(keyParts, "&")

	synthMu.Lock()
	defer synthMu.Unlock()
	if s, ok := synthCache[key]; ok {
		return s
	}
	bin, err := placeholderZips()
	require.NoError(t, err)
	all := cdkJSONContext(t)
	all["binDir"] = bin
	for k, v := range ctx {
		all[k] = v
	}
	out, err := os.MkdirTemp(scratch, "cdk.out-")
	require.NoError(t, err)
	app := awscdk.NewApp(&awscdk.AppProps{Context: &all, Outdir: jsii.String(out)})
	stack, err := build(app)
	require.NoError(t, err)
	tmpl := assertions.Template_FromStack(stack, nil).ToJSON()
	s := &synthesized{stack: stack, stage: strings.TrimPrefix(*stack.StackName(), "wsgate-"), tmpl: *tmpl}
	synthCache[key] = s
	return s
}

// The contexts the tests use.
var (
	defaults = map[string]string{}
	prod     = map[string]string{"stage": "prod"}
	// configured sets every setting, as strings from the command line.
	configured = map[string]string{
		"stage":                      "staging",
		"throttleRate":               "50",
		"throttleBurst":              "20",
		"logRetentionDays":           "90",
		"alarmEmail":                 "ops@example.com",
		"domainName":                 "ws.example.com",
		"certificateArn":             "arn:aws:acm:eu-west-1:111122223333:certificate/0b1c2d3e-aaaa-bbbb-cccc-111122223333",
		"jwtSecretArn":               "arn:aws:secretsmanager:eu-west-1:111122223333:secret:wsgate/jwt-signing",
		"jwtSecretKeyArn":            "arn:aws:kms:eu-west-1:111122223333:key/5e6f7a8b-aaaa-bbbb-cccc-111122223333",
		"jwtIssuer":                  "https://auth.example.com/",
		"jwtAudience":                "wsgate",
		"tokenCookie":                "session",
		"allowedOrigins":             "https://app.example.com, https://*.example.com",
		"anonymousTopics":            "topology.*, public.>",
		"stateRequiredTopics":        "firmware.operation.*",
		"authMessage":                "false",
		"authDeadline":               "20s",
		"maxMessageBytes":            "1024",
		"messagesPerSecond":          "50",
		"maxConnectionsPerPrincipal": "10",
		"maxSubscriptions":           "20",
		"maxBatch":                   "25",
		"profiles":                   `{"valtronics":{"max_message_bytes":1024}}`,
		"historyRetention":           "48h",
		"historyDefault":             "true",
		"ticketLifetime":             "30s",
		"connectionTtl":              "3h",
		"fanoutWorkers":              "128",
		"fanoutPageSize":             "500",
		"bucketSplitAt":              "400",
		"postRate":                   "1000",
		"logLevel":                   "debug",
		"queueMaxConcurrency":        "20",
		"disconnectMaxConcurrency":   "25",
		"messageReservedConcurrency": "40",
		"frameStoreCalls":            "150",
		"maxReplayBytes":             "524288",
		"maxReplayBytesPerMinute":    "4194304",
		"apiGatewayCloudWatchRole":   "false",
	}
	es256 = map[string]string{
		"stage":        "es",
		"jwtAlg":       "ES256",
		"jwtPublicKey": "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
	}
	partialSecret = map[string]string{
		"stage":        "partial",
		"jwtSecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:wsgate/jwt",
	}
	allContexts = []map[string]string{defaults, prod, configured, es256, partialSecret}
)

// Template walking.

func (s *synthesized) resources(typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range s.tmpl["Resources"].(map[string]any) {
		r := r.(map[string]any)
		if r["Type"] == typ {
			out[id] = r
		}
	}
	return out
}

func props(r map[string]any) map[string]any {
	p, _ := r["Properties"].(map[string]any)
	return p
}

// one returns the only resource of a type.
func (s *synthesized) one(t *testing.T, typ string) (string, map[string]any) {
	t.Helper()
	rs := s.resources(typ)
	require.Len(t, rs, 1, "resources of type %s", typ)
	for id, r := range rs {
		return id, r
	}
	return "", nil
}

// mappingFrom is the event source mapping reading from arn.
func (s *synthesized) mappingFrom(t *testing.T, arn any) map[string]any {
	t.Helper()
	for _, m := range s.resources("AWS::Lambda::EventSourceMapping") {
		if reflect.DeepEqual(props(m)["EventSourceArn"], arn) {
			return m
		}
	}
	t.Fatalf("no event source mapping from %v", arn)
	return nil
}

// function returns the logical id and properties of a function by name.
func (s *synthesized) function(t *testing.T, name string) (string, map[string]any) {
	t.Helper()
	want := "wsgate-" + s.stage + "-" + name
	for id, r := range s.resources("AWS::Lambda::Function") {
		if props(r)["FunctionName"] == want {
			return id, props(r)
		}
	}
	require.Failf(t, "function not found", "%s", want)
	return "", nil
}

func (s *synthesized) env(t *testing.T, name string) map[string]any {
	t.Helper()
	_, p := s.function(t, name)
	return p["Environment"].(map[string]any)["Variables"].(map[string]any)
}

func ref(id string) map[string]any          { return map[string]any{"Ref": id} }
func getAtt(id, attr string) map[string]any { return map[string]any{"Fn::GetAtt": []any{id, attr}} }

// statement is one IAM statement, normalized.
type statement struct {
	Effect    string
	Actions   []string
	Resources []any
	Principal any
	Condition any
}

func normalize(raw any) statement {
	m := raw.(map[string]any)
	st := statement{Effect: fmt.Sprint(m["Effect"]), Principal: m["Principal"], Condition: m["Condition"]}
	switch a := m["Action"].(type) {
	case string:
		st.Actions = []string{a}
	case []any:
		for _, x := range a {
			st.Actions = append(st.Actions, x.(string))
		}
	}
	switch r := m["Resource"].(type) {
	case []any:
		st.Resources = r
	case nil:
	default:
		st.Resources = []any{r}
	}
	return st
}

func statements(doc any) []statement {
	var out []statement
	for _, raw := range doc.(map[string]any)["Statement"].([]any) {
		out = append(out, normalize(raw))
	}
	return out
}

// identityStatements are every statement of every identity policy: the
// AWS::IAM::Policy resources, managed policies and roles' inline policies,
// by the role logical ids they attach to.
func (s *synthesized) identityStatements() map[string][]statement {
	out := map[string][]statement{}
	for id, r := range s.resources("AWS::IAM::Policy") {
		p := props(r)
		sts := statements(p["PolicyDocument"])
		roles, _ := p["Roles"].([]any)
		if len(roles) == 0 {
			out["policy:"+id] = append(out["policy:"+id], sts...)
		}
		for _, role := range roles {
			rid := role.(map[string]any)["Ref"].(string)
			out[rid] = append(out[rid], sts...)
		}
	}
	for id, r := range s.resources("AWS::IAM::ManagedPolicy") {
		out["managed:"+id] = append(out["managed:"+id], statements(props(r)["PolicyDocument"])...)
	}
	for id, r := range s.resources("AWS::IAM::Role") {
		pols, _ := props(r)["Policies"].([]any)
		for _, pol := range pols {
			out[id] = append(out[id], statements(pol.(map[string]any)["PolicyDocument"])...)
		}
	}
	return out
}

// roleOf returns the logical id of a function's role.
func (s *synthesized) roleOf(t *testing.T, name string) string {
	t.Helper()
	_, p := s.function(t, name)
	return p["Role"].(map[string]any)["Fn::GetAtt"].([]any)[0].(string)
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

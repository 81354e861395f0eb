// Command echo is the Lambda function the lambdahost tests run: what it does
// on each invocation is chosen by the request. Build it with
// -tags lambda.norpc.
//
// ECHO_INIT chooses how initialisation goes: "exit" exits with status 7,
// "init-error" posts to /runtime/init/error and hangs, "slow" sleeps
// ECHO_INIT_MS first.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type request struct {
	Action string `json:"action"` // echo, env, sleep, block, barrier, error, panic, exit, log, bogus-response
	MS     int    `json:"ms,omitempty"`
	N      int    `json:"n,omitempty"`
	Value  string `json:"value,omitempty"`
}

type response struct {
	Value       string            `json:"value,omitempty"`
	RequestID   string            `json:"request_id,omitempty"`
	DeadlineMS  int64             `json:"deadline_ms,omitempty"`
	FunctionARN string            `json:"function_arn,omitempty"`
	TraceID     string            `json:"trace_id,omitempty"`
	PID         int               `json:"pid"`
	Env         map[string]string `json:"env,omitempty"`
	Cwd         string            `json:"cwd,omitempty"`
	StartNS     int64             `json:"start_ns,omitempty"`
	EndNS       int64             `json:"end_ns,omitempty"`
	Status      int               `json:"status,omitempty"`
}

// HandlerError is the error the "error" action returns.
type HandlerError struct{ msg string }

func (e *HandlerError) Error() string { return e.msg }

func main() {
	switch os.Getenv("ECHO_INIT") {
	case "exit":
		fmt.Fprintln(os.Stderr, "init: giving up")
		os.Exit(7)
	case "init-error":
		postInitError()
		select {}
	case "slow":
		ms, _ := strconv.Atoi(os.Getenv("ECHO_INIT_MS"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	lambda.Start(handle)
}

func handle(ctx context.Context, req request) (response, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	start := time.Now()
	line, _ := json.Marshal(map[string]any{"msg": "invoke", "action": req.Action, "request_id": lc.AwsRequestID, "pid": os.Getpid()})
	fmt.Println(string(line))

	resp := response{PID: os.Getpid(), RequestID: lc.AwsRequestID, StartNS: start.UnixNano()}
	switch req.Action {
	case "echo":
		deadline, _ := ctx.Deadline()
		resp.Value = req.Value
		resp.DeadlineMS = deadline.UnixMilli()
		resp.FunctionARN = lc.InvokedFunctionArn
		resp.TraceID, _ = ctx.Value("x-amzn-trace-id").(string)
	case "env":
		resp.Env = map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			resp.Env[k] = v
		}
		resp.Cwd, _ = os.Getwd()
	case "sleep":
		time.Sleep(time.Duration(req.MS) * time.Millisecond)
	case "block":
		// Wait, deaf to the deadline, until the test creates the file.
		for {
			if _, err := os.Stat(req.Value); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	case "barrier":
		// Arrive, then wait until N invocations have arrived.
		if err := os.WriteFile(filepath.Join(req.Value, lc.AwsRequestID), nil, 0o600); err != nil {
			return resp, err
		}
		for {
			entries, err := os.ReadDir(req.Value)
			if err != nil {
				return resp, err
			}
			if len(entries) >= req.N {
				break
			}
			if ctx.Err() != nil {
				return resp, fmt.Errorf("barrier: %d of %d arrived", len(entries), req.N)
			}
			time.Sleep(5 * time.Millisecond)
		}
	case "error":
		return resp, &HandlerError{msg: req.Value}
	case "panic":
		panic(req.Value)
	case "exit":
		fmt.Fprintln(os.Stderr, "exiting with", req.N)
		os.Exit(req.N)
	case "log":
		fmt.Println(strings.Repeat("x", req.N))
		log.Print("to stderr: " + req.Value)
	case "bogus-response":
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/invocation/not-a-request-id/response"
		r, err := http.Post(url, "application/json", strings.NewReader(`{}`))
		if err != nil {
			return resp, err
		}
		_ = r.Body.Close()
		resp.Status = r.StatusCode
	default:
		return resp, fmt.Errorf("unknown action %q", req.Action)
	}
	resp.EndNS = time.Now().UnixNano()
	return resp, nil
}

func postInitError() {
	url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
	body := []byte(`{"errorType":"Init.BadConfig","errorMessage":"WSGATE_TABLE is not set","stackTrace":[]}`)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	req.Header.Set("Lambda-Runtime-Function-Error-Type", "Init.BadConfig")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	_ = r.Body.Close()
	fmt.Println("init error posted:", r.StatusCode)
}

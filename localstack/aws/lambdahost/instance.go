package lambdahost

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// waitDelay bounds how long a reaped process's output is drained when
// something outside its process group still holds its stdout or stderr.
const waitDelay = 2 * time.Second

type instanceState int

const (
	stateStarting instanceState = iota // process started, no /next yet
	stateIdle                          // waiting in /next for an invocation
	stateBusy                          // holds an invocation
	stateDead                          // killed or exited; never used again
)

// instance is one process of a function with its own Runtime API listener.
// Fields after the channels are guarded by Host.mu.
type instance struct {
	fn        *function
	logStream string
	cmd       *exec.Cmd
	server    *http.Server
	listener  net.Listener
	started   time.Time
	stdout    *lineWriter
	stderr    *lineWriter

	dispatch chan *invocation // holds at most the one invocation the instance is busy with
	ready    chan struct{}    // closed at the first /next
	gone     chan struct{}    // closed when the instance turns dead
	stopped  chan struct{}    // closed once the process is reaped and accounted for

	version   int // the function's version it was started with
	state     instanceState
	wasReady  bool        // it has asked for work at least once
	reserved  bool        // the Invoke that started it is waiting to use it
	inv       *invocation // the invocation it holds, until the runtime asks for the next
	exited    bool        // the process has exited: never signal its group again
	initError *FunctionError
	initTimer *time.Timer
	initSlow  bool   // killed because it did not reach /next in time
	status    string // how the process ended, e.g. "exit status 2"
}

// launch starts a new process of f with its own Runtime API listener; a
// process that cannot start is a *FunctionError. trackLocked starts serving.
func (h *Host) launch(f *function) (*instance, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("lambdahost: %s: runtime API listener: %w", f.cfg.Name, err)
	}
	inst := &instance{
		fn:        f,
		logStream: time.Now().UTC().Format("2006/01/02") + "/[$LATEST]" + randomHex(16),
		listener:  ln,
		dispatch:  make(chan *invocation, 1),
		ready:     make(chan struct{}),
		gone:      make(chan struct{}),
		stopped:   make(chan struct{}),
		state:     stateStarting,
	}
	inst.server = &http.Server{
		Handler:           h.runtimeAPI(inst),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}

	cmd := exec.Command(f.cfg.Path)
	cmd.Dir = filepath.Dir(f.cfg.Path)
	h.mu.Lock()
	inst.version = f.version
	cmd.Env = h.environment(f, ln.Addr().String(), inst.logStream)
	h.mu.Unlock()
	cmd.SysProcAttr = processAttr()
	cmd.WaitDelay = waitDelay
	if log := h.opts.Log; log != nil {
		name := f.cfg.Name
		emit := func(line []byte) { log(name, line) }
		inst.stdout, inst.stderr = newLineWriter(emit), newLineWriter(emit)
		cmd.Stdout, cmd.Stderr = inst.stdout, inst.stderr
	}
	inst.cmd = cmd
	inst.started = time.Now()
	if err := cmd.Start(); err != nil {
		_ = ln.Close()
		return nil, &FunctionError{Type: ErrorTypeEntrypoint, Message: err.Error()}
	}
	return inst, nil
}

// environment is the process environment of an instance: what Lambda sets,
// then Function.Env on top. Nothing else of the host's leaks in but PATH.
// The caller holds h.mu.
func (h *Host) environment(f *function, api, logStream string) []string {
	root := filepath.Dir(f.cfg.Path)
	env := map[string]string{
		"AWS_LAMBDA_RUNTIME_API":          api,
		"AWS_LAMBDA_FUNCTION_NAME":        f.cfg.Name,
		"AWS_LAMBDA_FUNCTION_VERSION":     "$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": strconv.Itoa(f.cfg.MemoryMB),
		"AWS_REGION":                      h.opts.Region,
		"AWS_DEFAULT_REGION":              h.opts.Region,
		"AWS_LAMBDA_LOG_GROUP_NAME":       "/aws/lambda/" + f.cfg.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME":      logStream,
		"AWS_LAMBDA_INITIALIZATION_TYPE":  "on-demand",
		"_HANDLER":                        "bootstrap",
		"LAMBDA_TASK_ROOT":                root,
		"LAMBDA_RUNTIME_DIR":              root,
		"TZ":                              ":UTC",
		"PATH":                            os.Getenv("PATH"),
		"AWS_ACCESS_KEY_ID":               "local",
		"AWS_SECRET_ACCESS_KEY":           "local",
		"AWS_SESSION_TOKEN":               "local",
	}
	for k, v := range f.env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

// trackLocked registers a launched instance and starts its goroutines. The
// caller holds h.mu and has already counted two goroutines in h.wg.
func (h *Host) trackLocked(inst *instance, reserved bool) {
	f := inst.fn
	f.instances[inst] = struct{}{}
	f.stats.ColdStarts++
	inst.reserved = reserved
	inst.initTimer = time.AfterFunc(f.initLimit, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if inst.state == stateStarting {
			inst.initSlow = true
			h.killLocked(inst)
		}
	})
	go func() {
		defer h.wg.Done()
		_ = inst.server.Serve(inst.listener)
	}()
	go func() {
		defer h.wg.Done()
		h.watch(inst)
	}()
	if h.closed {
		h.killLocked(inst)
	}
}

// watch waits for the process to end, however it ends, and retires the
// instance: the invocation it held fails with Runtime.ExitError.
func (h *Host) watch(inst *instance) {
	pid := inst.cmd.Process.Pid
	if err := waitExit(pid); err == nil {
		h.mu.Lock()
		inst.exited = true
		h.markDeadLocked(inst)
		h.mu.Unlock()
		// Anything the function left running in its group goes too. The
		// unreaped leader keeps the group id from being reused meanwhile.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	waitErr := inst.cmd.Wait()
	_ = inst.server.Close()
	inst.stdout.flush()
	inst.stderr.flush()

	status := "unknown status"
	if ps := inst.cmd.ProcessState; ps != nil {
		status = ps.String()
	} else if waitErr != nil {
		status = waitErr.Error()
	}

	f := inst.fn
	h.mu.Lock()
	inst.exited = true
	inst.status = status
	inst.initTimer.Stop()
	h.markDeadLocked(inst)
	if inv := inst.inv; inv != nil {
		inv.timer.Stop()
		switch {
		case inv.failure != nil:
			h.answerLocked(inv, nil, inv.failure)
		case h.closed:
			h.answerLocked(inv, nil, ErrClosed)
		default:
			h.answerLocked(inv, nil, inv.exited(status))
		}
		inst.inv = nil
		h.finishLocked(inv)
	}
	delete(f.instances, inst)
	f.live--
	h.offerSlotLocked(f)
	h.mu.Unlock()
	close(inst.stopped)
}

// markDeadLocked takes inst out of service for good.
func (h *Host) markDeadLocked(inst *instance) {
	if inst.state == stateDead {
		return
	}
	inst.state = stateDead
	inst.fn.removeIdleLocked(inst)
	close(inst.gone)
}

// killLocked takes inst out of service and kills its process group.
func (h *Host) killLocked(inst *instance) {
	h.markDeadLocked(inst)
	if !inst.exited {
		_ = syscall.Kill(-inst.cmd.Process.Pid, syscall.SIGKILL)
	}
}

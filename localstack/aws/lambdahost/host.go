package lambdahost

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// DefaultRegion is the region reported to functions when Options.Region is empty.
const DefaultRegion = "us-east-1"

var (
	// ErrUnknownFunction: Invoke of a name that was never registered.
	ErrUnknownFunction = errors.New("lambdahost: unknown function")
	// ErrClosed: the host is closed, or was closed while the call waited.
	ErrClosed = errors.New("lambdahost: host closed")
)

// Options configure a Host.
type Options struct {
	Region string // default "us-east-1"
	// Log receives each line the processes print on stdout and stderr,
	// without its newline; nil discards them. It is called from many
	// goroutines at once and may keep line.
	Log func(function string, line []byte)
	// AccountConcurrency is the account's concurrency limit, shared by the
	// functions without reserved concurrency (less every reservation):
	// over it an invocation is throttled. 0 means no limit; the local
	// stack sets DefaultAccountConcurrency.
	AccountConcurrency int
}

// Host runs registered functions in child processes. It is safe for
// concurrent use.
type Host struct {
	opts Options

	mu        sync.Mutex // guards everything below and the state of functions, instances and invocations
	functions map[string]*function
	closed    bool

	reservedTotal      int // the functions' reserved concurrency, added up
	unreservedInFlight int // concurrent invocations of functions without a reservation

	done    chan struct{}  // closed by Close
	stopped chan struct{}  // closed when Close has finished
	wg      sync.WaitGroup // the goroutines of every instance
}

// New returns a Host that has started nothing yet.
func New(opts Options) *Host {
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	return &Host{
		opts:      opts,
		functions: make(map[string]*function),
		done:      make(chan struct{}),
		stopped:   make(chan struct{}),
	}
}

// Register adds a function after checking that Path is an executable file.
// It starts nothing: the first Invoke does.
func (h *Host) Register(f Function) error {
	cfg, err := f.validate()
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	if _, ok := h.functions[cfg.Name]; ok {
		return fmt.Errorf("lambdahost: function %s is already registered", cfg.Name)
	}
	if err := h.checkReservationLocked(cfg); err != nil {
		return err
	}
	h.reservedTotal += cfg.ReservedConcurrency
	h.functions[cfg.Name] = &function{
		cfg:       cfg,
		arn:       fmt.Sprintf("arn:aws:lambda:%s:000000000000:function:%s", h.opts.Region, cfg.Name),
		initLimit: max(initTimeout, cfg.Timeout),
		instances: make(map[*instance]struct{}),
		env:       maps.Clone(cfg.Env),
	}
	return nil
}

// UpdateEnv changes a function's environment variables, as Lambda's
// UpdateFunctionConfiguration does: vars are set (an empty value removes
// the variable), idle instances are retired at once, busy ones when their
// invocation ends, and every invocation from now on starts a fresh
// instance with the new environment.
func (h *Host) UpdateEnv(name string, vars map[string]string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.functions[name]
	switch {
	case h.closed:
		return ErrClosed
	case !ok:
		return fmt.Errorf("%w: %s", ErrUnknownFunction, name)
	}
	env := maps.Clone(f.env)
	for k, v := range vars {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	f.env = env
	f.version++
	for _, inst := range slices.Clone(f.idle) {
		h.killLocked(inst)
	}
	return nil
}

// Invoke runs the function synchronously and returns its response payload.
//
// An invocation over the function's ReservedConcurrency, or (for a
// function without one) over the account's unreserved concurrency, is
// refused at once with a *ThrottleError, as Lambda throttles it; it counts
// as concurrent from here until it is over.
//
// It uses an idle instance, or starts one while the function has fewer than
// Concurrency, or waits for one; ctx bounds that wait. Waiting invocations
// are served in arrival order, and a call that arrives while others wait
// queues behind them even if an instance frees up as it arrives. The
// invocation's deadline is Timeout from when it starts on an instance,
// whatever ctx's deadline, as on Lambda: a caller's own timeout (API
// Gateway's 29 s) never shortens the function's. A function that fails
// returns a *FunctionError.
//
// Invoke returns once the invocation is over: the runtime has answered and
// asked for its next invocation (so the instance is idle again and the next
// call finds it warm), or its process has ended. With aws-lambda-go that is
// immediately after the answer. If ctx ends (cancelled or expired) while the
// function runs, Invoke returns at once with ctx's error and the invocation
// carries on in the background, as a Lambda invocation does when its caller
// stops waiting.
func (h *Host) Invoke(ctx context.Context, name string, payload []byte) ([]byte, error) {
	h.mu.Lock()
	f, ok := h.functions[name]
	var err error
	var inv *invocation
	switch {
	case h.closed:
		err = ErrClosed
	case !ok:
		err = fmt.Errorf("%w: %s", ErrUnknownFunction, name)
	default:
		inv = newInvocation(f, payload)
		err = h.admitLimitsLocked(inv)
	}
	h.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := h.acquire(ctx, inv); err != nil {
		h.mu.Lock()
		h.releaseLocked(inv) // it never reached an instance
		h.mu.Unlock()
		return nil, err
	}
	select {
	case <-inv.finished:
		return inv.response, inv.err
	case <-ctx.Done():
		return nil, fmt.Errorf("lambdahost: invoke %s: %w", name, ctx.Err())
	}
}

// Crash kills the processes of the named function that hold an
// invocation, as an out-of-memory kill or a hardware fault would: their
// invocations fail (Runtime.ExitError) and the callers' retries take over.
// It returns how many it killed.
func (h *Host) Crash(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.functions[name]
	if !ok {
		return 0
	}
	n := 0
	for inst := range f.instances {
		if inst.state == stateBusy {
			h.killLocked(inst)
			n++
		}
	}
	return n
}

// Stats returns the counters of the named function; zero if unknown.
func (h *Host) Stats(name string) Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.functions[name]
	if !ok {
		return Stats{}
	}
	s := f.stats
	s.Running = f.live
	s.ConcurrentExecutions = f.inFlight
	s.ColdStartDurations = slices.Clone(f.stats.ColdStartDurations)
	return s
}

// Close kills every process and waits until they and the host's goroutines
// are gone. Invocations in flight return ErrClosed. Calling it again waits
// for the first call and returns nil.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		<-h.stopped
		return nil
	}
	h.closed = true
	close(h.done)
	for _, f := range h.functions {
		for inst := range f.instances {
			h.killLocked(inst)
		}
	}
	h.mu.Unlock()
	h.wg.Wait()
	close(h.stopped)
	return nil
}

// coldStart starts an instance for inv, in the slot it was granted, and
// dispatches inv to it once it asks for work. It reports done false when the
// instance died after becoming ready but before inv got it: acquire tries
// again. If ctx ends first the instance carries on starting and serves
// whoever comes next.
func (h *Host) coldStart(ctx context.Context, inv *invocation) (done bool, err error) {
	f := inv.fn
	inst, err := h.launch(f)
	if err != nil {
		h.mu.Lock()
		h.passSlotLocked(f)
		var fe *FunctionError
		if errors.As(err, &fe) {
			fe.Message = fmt.Sprintf("RequestId: %s Error: %s", inv.id, fe.Message)
			f.stats.Invocations++
			f.stats.Errors++
		}
		h.mu.Unlock()
		return true, err
	}
	h.mu.Lock()
	h.trackLocked(inst, true)
	h.mu.Unlock()

	select {
	case <-inst.ready:
	case <-inst.gone:
	case <-ctx.Done():
	}

	h.mu.Lock()
	inst.reserved = false
	state, wasReady := inst.state, inst.wasReady
	if state == stateIdle {
		if ctx.Err() == nil {
			h.dispatchLocked(inst, inv)
			h.mu.Unlock()
			return true, nil
		}
		h.idleLocked(inst)
	}
	h.mu.Unlock()

	switch {
	case state == stateIdle || state == stateStarting:
		return true, fmt.Errorf("lambdahost: invoke %s: cold start: %w", f.cfg.Name, ctx.Err())
	case wasReady:
		return false, nil
	}

	// It died before its first /next: that is this invocation's failure.
	<-inst.stopped
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return true, ErrClosed
	}
	switch {
	case inst.initError != nil:
		h.answerLocked(inv, nil, inst.initError)
	case inst.initSlow:
		h.answerLocked(inv, nil, &FunctionError{
			Type:    ErrorTypeTimeout,
			Message: fmt.Sprintf("RequestId: %s Error: Init phase timed out after %.2f seconds", inv.id, f.initLimit.Seconds()),
		})
	default:
		h.answerLocked(inv, nil, inv.exited(inst.status))
	}
	return true, inv.err
}

// dispatchLocked hands inv to inst, which the caller took out of service,
// and starts inv's deadline: the function's Timeout from now. It used to
// be cut to the caller's deadline, so a frame that waited 28.7 s for one of
// the message function's instances ran with 0.3 s left and failed
// ("touch failed: context deadline exceeded"): under a backlog every frame
// was dispatched too late to succeed, and the backlog never drained.
func (h *Host) dispatchLocked(inst *instance, inv *invocation) {
	now := time.Now()
	inv.deadline = now.Add(inst.fn.cfg.Timeout)
	inv.timeout = inst.fn.cfg.Timeout
	inst.state = stateBusy
	inst.inv = inv
	inst.dispatch <- inv // never blocks: it holds at most this one
	inv.timer = time.AfterFunc(inv.timeout, func() { h.expire(inst, inv) })
}

// expire runs at inv's deadline: if inst still holds inv, the process is
// killed and inv, unless already answered, fails with Sandbox.Timedout once
// the process is reaped.
func (h *Host) expire(inst *instance, inv *invocation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if inst.inv != inv || inst.state == stateDead {
		return
	}
	if !inv.answered {
		inv.failure = inv.timedOut()
	}
	h.killLocked(inst)
}

// answerLocked sets inv's result, once, and counts it.
func (h *Host) answerLocked(inv *invocation, response []byte, err error) {
	if inv.answered {
		return
	}
	inv.answered = true
	inv.response, inv.err = response, err
	if !errors.Is(err, ErrClosed) {
		inv.fn.stats.Invocations++
		var fe *FunctionError
		if errors.As(err, &fe) {
			inv.fn.stats.Errors++
		}
	}
}

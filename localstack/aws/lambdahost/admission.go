package lambdahost

import (
	"context"
	"fmt"
	"slices"
)

// Admission is strictly first come, first served. An Invoke that finds
// neither an idle instance nor a free slot (fewer than Concurrency
// instances) joins its function's queue, and whatever frees up is handed
// straight to the oldest waiter under Host.mu: an idle instance gets the
// waiter's invocation dispatched to it there and then, a freed slot is
// counted for the waiter, which starts an instance in it. Nothing is ever
// announced for waiters to race for, and an Invoke arriving while others
// wait queues behind them, so under a backlog no invocation waits longer
// than those that arrived before it (a woken waiter that lost a race used
// to go back to the tail: some waited tens of seconds while later ones ran).

// grant is what a waiter is given when its turn comes.
type grant int

const (
	grantNone     grant = iota // not yet, or passed over because its ctx ended
	grantInstance              // an idle instance; the invocation is already dispatched to it
	grantSlot                  // a slot counted in live, with two goroutines in Host.wg: start an instance in it
)

// waiter is an Invoke queued for an instance of its function. grant is
// guarded by Host.mu.
type waiter struct {
	ctx   context.Context
	inv   *invocation
	turn  chan struct{} // closed once grant is set
	grant grant
}

func newWaiter(ctx context.Context, inv *invocation) *waiter {
	return &waiter{ctx: ctx, inv: inv, turn: make(chan struct{})}
}

// give hands w its grant; w is no longer queued.
func (w *waiter) give(g grant) {
	w.grant = g
	close(w.turn)
}

// acquire dispatches inv to an instance of its function: an idle one, a
// new one while the function has fewer than Concurrency, or the first one
// that frees up for it in arrival order.
func (h *Host) acquire(ctx context.Context, inv *invocation) error {
	f := inv.fn
	w := newWaiter(ctx, inv)
	h.mu.Lock()
	err := h.admitLocked(w)
	if err == nil && (len(f.waiters) > 0 || !h.serveLocked(w)) {
		f.waiters = append(f.waiters, w) // behind anyone already waiting, however much is free
	}
	h.mu.Unlock()

	for err == nil {
		if err = h.await(w); err != nil || w.grant == grantInstance {
			return err
		}
		var done bool
		if done, err = h.coldStart(ctx, inv); done {
			return err
		}
		// The instance it started died before taking inv: inv keeps its
		// place, at the head of the queue.
		w = newWaiter(ctx, inv)
		h.mu.Lock()
		if err = h.admitLocked(w); err == nil && !h.serveLocked(w) {
			f.waiters = slices.Insert(f.waiters, 0, w)
		}
		h.mu.Unlock()
	}
	return err
}

// admitLocked refuses w if the host is closed or w's ctx has ended.
func (h *Host) admitLocked(w *waiter) error {
	switch {
	case h.closed:
		return ErrClosed
	case w.ctx.Err() != nil:
		return fmt.Errorf("lambdahost: invoke %s: %w", w.inv.fn.cfg.Name, w.ctx.Err())
	}
	return nil
}

// serveLocked gives w an idle instance, or a slot to start one in, if one
// is free now.
func (h *Host) serveLocked(w *waiter) bool {
	f := w.inv.fn
	if n := len(f.idle); n > 0 {
		inst := f.idle[n-1]
		f.idle = f.idle[:n-1]
		h.dispatchLocked(inst, w.inv)
		w.give(grantInstance)
		return true
	}
	if f.live < f.cfg.Concurrency {
		f.live++
		h.wg.Add(2) // the new instance's server and watcher, counted before Close can wait
		w.give(grantSlot)
		return true
	}
	return false
}

// await waits for w's turn. It returns nil once w holds its grant (an
// instance: inv is dispatched and runs even if ctx ended meanwhile; a
// slot: the caller starts an instance in it). A waiter that leaves
// because ctx ended or the host closed passes a slot it was given on.
func (h *Host) await(w *waiter) error {
	select {
	case <-w.turn:
	case <-w.ctx.Done():
	case <-h.done:
	}
	f := w.inv.fn
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.grant == grantInstance {
		return nil
	}
	if w.grant == grantNone {
		f.dropWaiterLocked(w)
	}
	var err error
	switch {
	case h.closed:
		err = ErrClosed
	case w.ctx.Err() != nil:
		err = fmt.Errorf("lambdahost: invoke %s: waiting for an instance: %w", f.cfg.Name, w.ctx.Err())
	}
	if err != nil && w.grant == grantSlot {
		h.passSlotLocked(f)
	}
	return err
}

// idleLocked puts inst, ready for an invocation, back in service: the
// oldest waiter's invocation is dispatched to it, or it joins f.idle.
func (h *Host) idleLocked(inst *instance) {
	f := inst.fn
	if w := f.nextWaiterLocked(); w != nil {
		h.dispatchLocked(inst, w.inv)
		w.give(grantInstance)
		return
	}
	f.idle = append(f.idle, inst)
}

// offerSlotLocked gives a slot freed by an instance that is gone to the
// oldest waiter, if any. The caller runs in a goroutine counted in h.wg,
// so h.wg.Add cannot race Close's Wait.
func (h *Host) offerSlotLocked(f *function) {
	if h.closed || f.live >= f.cfg.Concurrency {
		return
	}
	if w := f.nextWaiterLocked(); w != nil {
		f.live++
		h.wg.Add(2)
		w.give(grantSlot)
	}
}

// passSlotLocked gives up a slot that got no instance (its launch failed,
// or its waiter left): the oldest waiter gets it as it is, else it is freed.
func (h *Host) passSlotLocked(f *function) {
	if !h.closed {
		if w := f.nextWaiterLocked(); w != nil {
			w.give(grantSlot)
			return
		}
	}
	f.live--
	h.wg.Done()
	h.wg.Done()
}

// nextWaiterLocked takes the oldest waiter that still wants an instance
// out of the queue; nil if none. Waiters whose ctx has ended are dropped on
// the way without a grant: they are leaving anyway.
func (f *function) nextWaiterLocked() *waiter {
	for len(f.waiters) > 0 {
		w := f.waiters[0]
		f.waiters[0] = nil
		f.waiters = f.waiters[1:]
		if w.ctx.Err() == nil {
			return w
		}
	}
	return nil
}

// dropWaiterLocked forgets a waiter that leaves before its turn; it may
// already be out of the queue, passed over by nextWaiterLocked.
func (f *function) dropWaiterLocked(w *waiter) {
	if i := slices.Index(f.waiters, w); i >= 0 {
		f.waiters = slices.Delete(f.waiters, i, i+1)
	}
}

package lambdahost

import (
	"errors"
	"fmt"
)

// Lambda's concurrency limits, as AWS applies them
// (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html,
// https://docs.aws.amazon.com/lambda/latest/dg/lambda-concurrency.html):
//
//   - the account has a concurrency limit per Region (1,000 by default),
//     shared by every function;
//   - a function with reserved concurrency R has R of it for itself alone
//     and never runs more than R invocations at once;
//   - the functions without a reservation share what is left (the
//     unreserved concurrency), and Lambda refuses a reservation that would
//     leave fewer than 100 unreserved;
//   - an invocation over its limit is throttled, not queued: the Invoke
//     API answers 429 TooManyRequestsException with a Reason
//     (https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html):
//     ReservedFunctionConcurrentInvocationLimitExceeded for a function at
//     its reservation, ConcurrentInvocationLimitExceeded for the account.
//
// A concurrent invocation counts from its admission until it is over, in
// flight on AWS's terms, whether it runs on an instance here or waits for
// one: Function.Concurrency is this machine's limit on processes, under
// which admitted invocations queue; the account's limit and a reservation
// are AWS's, over which they are refused.

// Throttle reasons, as Lambda's TooManyRequestsException names them.
const (
	ReasonReservedFunction = "ReservedFunctionConcurrentInvocationLimitExceeded"
	ReasonAccount          = "ConcurrentInvocationLimitExceeded"
)

// MinUnreservedConcurrency is what Lambda keeps for the functions without
// reserved concurrency: a reservation that leaves the account less is
// refused (InvalidParameterValueException).
const MinUnreservedConcurrency = 100

// DefaultAccountConcurrency is a Region's default concurrency quota.
const DefaultAccountConcurrency = 1000

// ErrThrottled matches every *ThrottleError.
var ErrThrottled = errors.New("lambdahost: throttled")

// ThrottleError is returned by Invoke for an invocation over the function's
// reserved concurrency or the account's unreserved concurrency. Nothing of
// it ran.
type ThrottleError struct {
	Function string
	Reason   string // ReasonReservedFunction or ReasonAccount
	Limit    int    // the limit it met
}

func (e *ThrottleError) Error() string {
	return fmt.Sprintf("lambdahost: invoke %s: TooManyRequestsException: Rate Exceeded. (Reason: %s, limit %d)", e.Function, e.Reason, e.Limit)
}

// Is makes errors.Is(err, ErrThrottled) true.
func (e *ThrottleError) Is(target error) bool { return target == ErrThrottled }

// admitLimitsLocked counts inv as a concurrent invocation of its function,
// or refuses it with a *ThrottleError when that would exceed the function's
// reserved concurrency or, for a function without one, the account's
// unreserved concurrency.
func (h *Host) admitLimitsLocked(inv *invocation) error {
	f := inv.fn
	reserved := f.cfg.ReservedConcurrency
	switch {
	case reserved > 0 && f.inFlight >= reserved:
		return h.throttleLocked(f, ReasonReservedFunction, reserved)
	case reserved == 0 && h.opts.AccountConcurrency > 0 && h.unreservedInFlight >= h.unreservedLimitLocked():
		return h.throttleLocked(f, ReasonAccount, h.unreservedLimitLocked())
	}
	f.inFlight++
	f.stats.MaxConcurrentExecutions = max(f.stats.MaxConcurrentExecutions, f.inFlight)
	if reserved == 0 {
		h.unreservedInFlight++
	}
	inv.counted = true
	return nil
}

func (h *Host) throttleLocked(f *function, reason string, limit int) error {
	f.stats.Throttles++
	return &ThrottleError{Function: f.cfg.Name, Reason: reason, Limit: limit}
}

// releaseLocked ends inv's count as a concurrent invocation; once.
func (h *Host) releaseLocked(inv *invocation) {
	if !inv.counted {
		return
	}
	inv.counted = false
	inv.fn.inFlight--
	if inv.fn.cfg.ReservedConcurrency == 0 {
		h.unreservedInFlight--
	}
}

// finishLocked marks inv over: its caller may return, and it no longer
// counts against the concurrency limits.
func (h *Host) finishLocked(inv *invocation) {
	h.releaseLocked(inv)
	close(inv.finished)
}

// unreservedLimitLocked is the account's concurrency less every
// reservation.
func (h *Host) unreservedLimitLocked() int {
	return h.opts.AccountConcurrency - h.reservedTotal
}

// checkReservationLocked refuses a reservation the account cannot give, as
// Lambda's PutFunctionConcurrency does.
func (h *Host) checkReservationLocked(cfg Function) error {
	if cfg.ReservedConcurrency == 0 || h.opts.AccountConcurrency <= 0 {
		return nil
	}
	left := h.opts.AccountConcurrency - h.reservedTotal - cfg.ReservedConcurrency
	if left < MinUnreservedConcurrency {
		return fmt.Errorf("lambdahost: function %s: reserved concurrency %d would leave the account (concurrency %d, %d reserved already) %d unreserved, under Lambda's minimum of %d (InvalidParameterValueException)",
			cfg.Name, cfg.ReservedConcurrency, h.opts.AccountConcurrency, h.reservedTotal, left, MinUnreservedConcurrency)
	}
	return nil
}

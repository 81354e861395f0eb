//go:build unix && !linux

package lambdahost

import (
	"errors"
	"syscall"
)

// processAttr puts a child in its own process group, so it and whatever it
// starts can be killed together. Only Linux also kills it with the host.
func processAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitExit is not available here: watch falls back to os/exec's Wait, so a
// group kill racing the reaping could, in theory, hit a reused group id.
func waitExit(int) error {
	return errors.ErrUnsupported
}

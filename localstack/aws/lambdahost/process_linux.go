package lambdahost

import (
	"syscall"
	"unsafe"
)

// processAttr puts a child in its own process group, so it and whatever it
// starts can be killed together, and has the kernel kill it if the host dies.
func processAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitExit blocks until the process has exited but leaves it unreaped, so
// its pid and process group id cannot be reused until os/exec reaps it.
func waitExit(pid int) error {
	const pPID = 1     // P_PID
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			if errno != 0 {
				return errno
			}
			return nil
		}
	}
}

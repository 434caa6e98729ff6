package swtpmtest

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes swtpm exit when the test binary dies without running
// its cleanups (a test timeout panics): no orphaned swtpm.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

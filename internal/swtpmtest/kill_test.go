package swtpmtest_test

import "syscall"

// syscallKill0 reports whether a process with that pid exists.
func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }

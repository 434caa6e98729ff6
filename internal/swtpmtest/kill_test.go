package swtpmtest_test

import (
	"syscall"
	"testing"
)

// syscallKill0 reports whether a process with that pid exists.
func syscallKill0(pid int) error { return syscall.Kill(pid, 0) }

// bindOnly holds 127.0.0.1:port bound but not listening (nothing answers a
// connection, yet nobody else can bind it) until the returned func runs.
func bindOnly(t *testing.T, port int) func() {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		t.Fatal(err)
	}
	return func() { syscall.Close(fd) }
}

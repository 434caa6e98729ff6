package swtpmtest

import (
	"net"
	"os"
	"testing"
)

// listensOn tells this process's listening socket from another process's.
func TestListensOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if own, err := listensOn(os.Getpid(), port); err != nil || !own {
		t.Errorf("listensOn(this process, %d) = %v, %v; want true", port, own, err)
	}
	i := Start(t, Options{Blank: true})
	if own, err := listensOn(i.Pid, port); err != nil || own {
		t.Errorf("listensOn(swtpm, the test's port %d) = %v, %v; want false", port, own, err)
	}
	if own, err := listensOn(i.Pid, i.port); err != nil || !own {
		t.Errorf("listensOn(swtpm, its port %d) = %v, %v; want true", i.port, own, err)
	}
}

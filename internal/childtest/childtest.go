// Package childtest runs a test of the running test binary again in a child
// process, for tests that kill a process (SIGKILL) in the middle of an
// operation and then check what it left behind. Only tests use it.
package childtest

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Child is a running child process of the test binary.
type Child struct {
	cmd *exec.Cmd
	// Line is the first line the child wrote on its standard output,
	// without its newline: the child's way of saying it reached the point
	// where the test wants to kill it.
	Line string
}

// Start runs the test named test (only it) of this test binary in a child
// process with env added to the environment, and returns once the child
// has written its first line on standard output. The child's standard
// error goes to the test's. A child that is still running at the end of
// the test is killed.
func Start(tb testing.TB, test string, env ...string) *Child {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &Child{cmd: cmd}
	tb.Cleanup(c.Kill)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		c.Kill()
		tb.Fatalf("child %s: no line on its output (%q): %v", test, line, err)
	}
	c.Line = strings.TrimSuffix(line, "\n")
	return c
}

// Kill kills the child (SIGKILL) and waits for it to end. Killing a child
// that has ended does nothing.
func (c *Child) Kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	c.cmd.Process.Kill()
	c.cmd.Wait()
}

// Package ptytest runs a program on a pseudo-terminal and talks to it the way
// a person does: wait until the screen shows a prompt, then type. Tests use it
// instead of sleeping and hoping the program is ready.
package ptytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/creack/pty"
)

// Term is a program running on a pseudo-terminal.
type Term struct {
	cmd  *exec.Cmd
	pty  *os.File
	mu   sync.Mutex
	cond *sync.Cond
	out  bytes.Buffer // everything the program wrote to the terminal
	mark int          // where the next Expect starts looking
	eof  bool
	done chan struct{}
}

// Start runs cmd with a new pseudo-terminal as its stdin, stdout and stderr.
func Start(cmd *exec.Cmd) (*Term, error) {
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 120})
	if err != nil {
		return nil, err
	}
	t := &Term{cmd: cmd, pty: f, done: make(chan struct{})}
	t.cond = sync.NewCond(&t.mu)
	go t.read()
	return t, nil
}

func (t *Term) read() {
	defer close(t.done)
	buf := make([]byte, 4096)
	for {
		n, err := t.pty.Read(buf)
		t.mu.Lock()
		t.out.Write(buf[:n])
		if err != nil {
			t.eof = true
		}
		t.cond.Broadcast()
		t.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// ErrTimeout is returned by Expect when the text did not appear in time.
var ErrTimeout = errors.New("timed out")

// Expect waits until text appears on the screen after what earlier Expects
// matched (in Text: escape sequences do not count). timeout is a deadline
// against a hung program, not a delay.
func (t *Term) Expect(text string, timeout time.Duration) error {
	timer := time.AfterFunc(timeout, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if i := strings.Index(Plain(t.out.String())[t.mark:], text); i >= 0 {
			t.mark += i + len(text)
			return nil
		}
		if t.eof {
			return fmt.Errorf("program ended before %q appeared", text)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w after %v waiting for %q", ErrTimeout, timeout, text)
		}
		t.cond.Wait()
	}
}

// Send types line and Enter.
func (t *Term) Send(line string) error {
	_, err := io.WriteString(t.pty, line+"\r")
	return err
}

// WaitFor waits until cond holds for the whole of Text (what for names the
// condition in the error). timeout is a deadline against a hung program.
func (t *Term) WaitFor(what string, cond func(text string) bool, timeout time.Duration) error {
	timer := time.AfterFunc(timeout, func() {
		t.mu.Lock()
		t.cond.Broadcast()
		t.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if cond(Plain(t.out.String())) {
			return nil
		}
		if t.eof {
			return fmt.Errorf("program ended before %s", what)
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%w after %v waiting for %s", ErrTimeout, timeout, what)
		}
		t.cond.Wait()
	}
}

// Interrupt types Ctrl-C: the terminal sends SIGINT to the program (unless
// it put the terminal in raw mode, where it reads the byte itself).
func (t *Term) Interrupt() error {
	_, err := io.WriteString(t.pty, "\x03")
	return err
}

// Wait waits for the program to end and for its last output, then returns
// its exit error (nil, or an *exec.ExitError).
func (t *Term) Wait(timeout time.Duration) error {
	exited := make(chan error, 1)
	go func() { exited <- t.cmd.Wait() }()
	select {
	case err := <-exited:
		<-t.done // the pty reports EOF once the last writer has gone
		t.pty.Close()
		return err
	case <-time.After(timeout):
		_ = t.cmd.Process.Kill()
		<-exited
		t.pty.Close()
		return fmt.Errorf("%w: program still running after %v", ErrTimeout, timeout)
	}
}

// Screen returns everything the program wrote to the terminal so far.
func (t *Term) Screen() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}

// Text returns what the program wrote so far with its escape sequences
// removed (a cursor move forward becomes spaces; carriage returns go): a
// transcript to search, not a rendering of the screen.
func (t *Term) Text() string { return Plain(t.Screen()) }

// Plain removes terminal escape sequences (CSI, OSC and two-byte ESC
// sequences) and carriage returns from s; CSI n C (cursor forward)
// becomes n spaces, as it stands for blank cells.
func Plain(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\r':
		case c == 0x1b && i+1 < len(s) && s[i+1] == '[':
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			if j < len(s) && s[j] == 'C' {
				n, err := strconv.Atoi(s[i+2 : j])
				if err != nil {
					n = 1
				}
				b.WriteString(strings.Repeat(" ", n))
			}
			i = j
		case c == 0x1b && i+1 < len(s) && s[i+1] == ']':
			j := i + 2
			for j < len(s) && s[j] != 0x07 && !(s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\') {
				j++
			}
			if j < len(s) && s[j] == 0x1b {
				j++
			}
			i = j
		case c == 0x1b:
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Run is a command-line driver for scripts: args are DIALOG PROGRAM ARGS...
// DIALOG is a file of lines "expect TEXT" (wait until TEXT is on the screen)
// and "send LINE" (type LINE and Enter). The program runs on a new
// pseudo-terminal; its screen is copied to stdout, and Run returns the
// program's exit code (125 when the dialog itself failed, said on stderr).
func Run(args []string, stdout, stderr io.Writer) int {
	const timeout = 2 * time.Minute // a deadline against a hung program
	if len(args) < 2 {
		fmt.Fprintln(stderr, "usage: pty DIALOG PROGRAM [ARGS...]")
		return 125
	}
	dialog, err := os.ReadFile(args[0])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 125
	}
	path, err := exec.LookPath(args[1])
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 125
	}
	t, err := Start(exec.Command(path, args[2:]...))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 125
	}
	fail := func(err error) int {
		_ = t.cmd.Process.Kill()
		_ = t.Wait(timeout)
		fmt.Fprint(stdout, t.Screen())
		fmt.Fprintln(stderr, "pty:", err)
		return 125
	}
	for _, line := range strings.Split(string(dialog), "\n") {
		verb, arg, _ := strings.Cut(strings.TrimRight(line, "\r"), " ")
		switch verb {
		case "":
		case "expect":
			if err := t.Expect(arg, timeout); err != nil {
				return fail(err)
			}
		case "send":
			if err := t.Send(arg); err != nil {
				return fail(err)
			}
		default:
			return fail(fmt.Errorf("dialog line %q: want expect or send", line))
		}
	}
	err = t.Wait(timeout)
	fmt.Fprint(stdout, t.Screen())
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode()
	case err != nil:
		fmt.Fprintln(stderr, "pty:", err)
		return 125
	}
	return 0
}

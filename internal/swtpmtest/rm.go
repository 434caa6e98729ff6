package swtpmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RM is a TPM resource manager in front of an instance: tpm2-abrmd on a
// private D-Bus session bus, as a device without the kernel's /dev/tpmrm0
// runs it. Tools that leave transient objects loaded for a resource manager
// to clean up (tpm2-tools, and tpm2_ptool which drives them) need one:
// swtpm has three object slots and no resource manager of its own.
//
// While it runs, tpm2-abrmd holds the instance's only connection: reach the
// TPM through TCTI (with Env in the environment) until Stop.
type RM struct {
	// TCTI is the TCTI configuration for the tss2 libraries and tools.
	TCTI string
	// Env holds the environment entries the TCTI needs (the bus address).
	Env []string

	tb   testing.TB
	cmds []*exec.Cmd // abrmd, then dbus-daemon: stopped in this order
	done []chan struct{}
}

var rmTools = []string{"dbus-daemon", "tpm2-abrmd", "tpm2_getcap"}

// StartRM starts tpm2-abrmd in front of i and returns once it answers. It
// skips the test when tpm2-abrmd or dbus-daemon is missing, except under
// CI=true where that fails it. tb.Cleanup stops it (Stop may come earlier).
func (i *Instance) StartRM(tb testing.TB) *RM {
	tb.Helper()
	requireTools(tb, rmTools, "tpm2-abrmd libtss2-tcti-tabrmd0 dbus-daemon")
	r := &RM{tb: tb}
	tb.Cleanup(r.Stop)
	if err := r.start(i); err != nil {
		tb.Fatalf("swtpmtest: resource manager: %v", err)
	}
	return r
}

func (r *RM) launch(cmd *exec.Cmd) chan struct{} {
	dieWithParent(cmd)
	done := make(chan struct{})
	r.cmds = append([]*exec.Cmd{cmd}, r.cmds...)
	r.done = append([]chan struct{}{done}, r.done...)
	return done
}

func (r *RM) start(i *Instance) error {
	// A private session bus; it prints its address once it listens.
	bus := exec.Command("dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1")
	out, err := bus.StdoutPipe()
	if err != nil {
		return err
	}
	bus.Stderr = io.Discard
	busDone := r.launch(bus)
	if err := bus.Start(); err != nil {
		r.cmds, r.done = r.cmds[1:], r.done[1:]
		return fmt.Errorf("starting dbus-daemon: %w", err)
	}
	go func() { _ = bus.Wait(); close(busDone) }()
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addr <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	var busAddr string
	select {
	case busAddr = <-addr:
	case <-busDone:
		return fmt.Errorf("dbus-daemon exited before printing its address")
	case <-time.After(time.Minute): // against a hang, not a delay: a loaded machine starts processes slowly
		return fmt.Errorf("dbus-daemon printed no address in 1 minute")
	}
	if busAddr == "" {
		return fmt.Errorf("dbus-daemon printed no address")
	}
	r.Env = []string{"DBUS_SESSION_BUS_ADDRESS=" + busAddr}
	r.TCTI = "tabrmd:bus_type=session"

	i.mu.Lock()
	port := i.port
	i.mu.Unlock()
	rm := exec.Command("tpm2-abrmd", "--session", "--allow-root", "--flush-all",
		fmt.Sprintf("--tcti=swtpm:host=127.0.0.1,port=%d", port))
	rm.Env = append(os.Environ(), r.Env...)
	rm.Stdout, rm.Stderr = io.Discard, io.Discard
	rmDone := r.launch(rm)
	if err := rm.Start(); err != nil {
		r.cmds, r.done = r.cmds[1:], r.done[1:]
		return fmt.Errorf("starting tpm2-abrmd: %w", err)
	}
	go func() { _ = rm.Wait(); close(rmDone) }()

	// Ready when a client gets an answer through it.
	// Deadlines against a hang, not delays: generous for a loaded machine.
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		probe := exec.CommandContext(ctx, "tpm2_getcap", "-T", r.TCTI, "properties-fixed")
		probe.Env = append(os.Environ(), r.Env...)
		err := probe.Run()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-rmDone:
			return fmt.Errorf("tpm2-abrmd exited before answering")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tpm2-abrmd did not answer in 1 minute: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops tpm2-abrmd (which flushes what its clients left) and the bus,
// each by pid, and waits for them: the instance is free again.
func (r *RM) Stop() {
	for k, cmd := range r.cmds {
		if cmd.Process == nil {
			continue
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-r.done[k]:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-r.done[k]
		}
	}
	r.cmds, r.done = nil, nil
}

package cmd

import (
	"bufio"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/swtpmtest"
)

const agentTestPassword = "line-key-pass-1"

// encryptLineKey rewrites the demo's plain line key as the encrypted PEM a
// real line keeps (600,000 PBKDF2 rounds) and returns the variable that
// points pki.issuer_key at it.
func (l *line) encryptLineKey(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, "pki", "line.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	enc := filepath.Join(l.dir, "pki", "line.enc.key")
	if err := certgen.WriteKeyPEM(enc, k.(crypto.Signer), []byte(agentTestPassword), false); err != nil {
		t.Fatal(err)
	}
	return "STATION_PKI_ISSUER_KEY=" + enc
}

// without returns env minus the variables named.
func without(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || k == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// with returns a new slice: env and kv (never env's array, which another
// with may share).
func with(env []string, kv ...string) []string {
	return append(append([]string(nil), env...), kv...)
}

type agentProc struct {
	cmd    *exec.Cmd
	sock   string
	stderr *syncBuffer
	done   chan struct{}
}

// syncBuffer is a strings.Builder that a process's output goroutine and the
// test may use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgent runs station agent with the password in its environment and
// returns once it has printed its socket (it is listening then).
func (l *line) startAgent(t *testing.T, env []string, args ...string) *agentProc {
	t.Helper()
	c := exec.Command(l.bin, append([]string{"agent"}, args...)...)
	c.Env = with(env, "STATION_PKI_KEY_PASSWORD="+agentTestPassword)
	out, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &agentProc{cmd: c, stderr: &syncBuffer{}, done: make(chan struct{})}
	c.Stderr = a.stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		c.Process.Kill()
		c.Wait()
		t.Fatalf("station agent printed no socket: %v\n%s", err, a.stderr)
	}
	a.sock = strings.TrimSuffix(strings.TrimPrefix(first, "STATION_AGENT_SOCK="), "; export STATION_AGENT_SOCK\n")
	go func() { io.Copy(io.Discard, out); c.Wait(); close(a.done) }()
	t.Cleanup(func() { c.Process.Kill(); <-a.done })
	return a
}

func (l *line) runEnv(env []string, args ...string) (string, string, int) {
	l.t.Helper()
	saved := l.env
	l.env = env
	defer func() { l.env = saved }()
	return l.run(args...)
}

// TestProvisionThroughAgent: with the line key encrypted, provision
// processes that have no password provision through station agent; the
// agent stopped (SIGTERM: socket removed) or killed (SIGKILL: socket left)
// makes provision exit 5 with what to do, before any unit is touched.
func TestProvisionThroughAgent(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("station agent runs on Linux")
	}
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	base := append(without(l.env, "STATION_PKI_KEY_PASSWORD", "STATION_AGENT_SOCK"), l.encryptLineKey(t))
	unit := func(serial string) (string, string) {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		d := filepath.Join(l.dir, "units", serial)
		os.MkdirAll(d, 0o700)
		return inst.Addr, "dir:" + d
	}

	// Without the agent and without the password, the key does not open.
	addr, fl := unit("AG-0")
	if _, errOut, code := l.runEnv(base, "provision", "--serial", "AG-0", "--tpm", addr, "--flash", fl); code != ExitUsage || !strings.Contains(errOut, "STATION_PKI_KEY_PASSWORD") {
		t.Fatalf("provision with an encrypted key and no password: exit %d: %s", code, errOut)
	}

	a := l.startAgent(t, base, "--socket", filepath.Join(t.TempDir(), "agent", "agent.sock"))
	withAgent := with(base, "STATION_AGENT_SOCK="+a.sock)
	for _, sn := range []string{"AG-1", "AG-2"} {
		addr, fl := unit(sn)
		t0 := time.Now()
		out, errOut, code := l.runEnv(withAgent, "-o", "json", "provision", "--serial", sn, "--tpm", addr, "--flash", fl)
		if code != 0 || !strings.Contains(out, `"result":"pass"`) {
			t.Fatalf("provision %s through the agent: exit %d\n%s%s", sn, code, out, errOut)
		}
		t.Logf("provision %s through the agent: %v", sn, time.Since(t0))
	}
	if strings.Contains(a.stderr.String(), agentTestPassword) || strings.Count(a.stderr.String(), "issued certificate") != 2 {
		t.Errorf("agent log:\n%s", a.stderr)
	}
	// The certificates it signed are recorded and audited by provision.
	if _, errOut, code := l.runEnv(withAgent, "audit", "verify"); code != 0 {
		t.Errorf("audit verify: exit %d: %s", code, errOut)
	}
	// doctor sees the key held by the agent.
	if out, _, _ := l.runEnv(withAgent, "doctor"); !strings.Contains(out, "held by station agent") {
		t.Errorf("doctor with the agent:\n%s", out)
	}

	// SIGTERM: the agent stops and removes its socket.
	a.cmd.Process.Signal(syscall.SIGTERM)
	<-a.done
	if !a.cmd.ProcessState.Success() {
		t.Errorf("agent after SIGTERM: %v\n%s", a.cmd.ProcessState, a.stderr)
	}
	if _, err := os.Lstat(a.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after SIGTERM: %v", err)
	}
	addr, fl = unit("AG-3")
	_, errOut, code := l.runEnv(withAgent, "provision", "--serial", "AG-3", "--tpm", addr, "--flash", fl)
	if code != ExitEnvironment || !strings.Contains(errOut, "hint: start `station agent`") {
		t.Fatalf("provision with the agent stopped: exit %d: %s", code, errOut)
	}

	// SIGKILL leaves the socket; provision says the same; a new agent takes
	// the stale socket over and the unit then provisions.
	b := l.startAgent(t, base, "--socket", a.sock)
	b.cmd.Process.Kill()
	<-b.done
	out, errOut, code := l.runEnv(withAgent, "provision", "--serial", "AG-3", "--tpm", addr, "--flash", fl)
	if code != ExitEnvironment || !strings.Contains(errOut, "hint: start `station agent`") {
		t.Fatalf("provision with the agent killed: exit %d: %s%s\nagent: %s", code, out, errOut, b.stderr)
	}
	if out, _, _ := l.runEnv(withAgent, "units", "show", "AG-3"); strings.Contains(out, "AG-3") {
		t.Errorf("a unit was recorded while no agent answered:\n%s", out)
	}
	l.startAgent(t, base, "--socket", a.sock)
	if out, errOut, code := l.runEnv(withAgent, "provision", "--serial", "AG-3", "--tpm", addr, "--flash", fl); code != 0 {
		t.Fatalf("provision after the agent restarted: exit %d\n%s%s", code, out, errOut)
	}
}

// TestAgentRefusesAnotherConfig: an agent started with another issuance
// policy is refused by provision (exit 2), which names the difference.
func TestAgentRefusesAnotherConfig(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("station agent runs on Linux")
	}
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	base := append(without(l.env, "STATION_PKI_KEY_PASSWORD", "STATION_AGENT_SOCK"), l.encryptLineKey(t))
	a := l.startAgent(t, with(base, "STATION_PKI_VALIDITY=1000h"), "--socket", filepath.Join(t.TempDir(), "a", "s.sock"))
	inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	_, errOut, code := l.runEnv(with(base, "STATION_AGENT_SOCK="+a.sock), "provision", "--serial", "AG-9", "--tpm", inst.Addr)
	if code != ExitUsage || !strings.Contains(errOut, "another issuer or policy") {
		t.Fatalf("provision against an agent with another validity: exit %d: %s", code, errOut)
	}
}

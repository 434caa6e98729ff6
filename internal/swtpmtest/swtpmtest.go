// Package swtpmtest starts throw-away swtpm instances for tests: a fresh TPM
// state manufactured by swtpm_setup (EK persisted, EK and platform
// certificates in NV) signed by a private local CA that lives in the test's
// temporary folder, so tests never read or write /var/lib/swtpm-localca.
//
// Tests skip when swtpm is not installed, except under CI=true where a
// missing swtpm fails the test. Every instance is shut down orderly
// (TPM2_Shutdown(CLEAR), so dictionary-attack counters do not grow) and
// stopped by pid when the test ends.
package swtpmtest

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// CA is a private swtpm local CA: it plays the TPM vendor that signs EK
// certificates.
type CA struct {
	// Dir holds the CA's keys and swtpm-localca / swtpm_setup configs.
	Dir string
	// RootPEM is the self-signed root; IssuerPEM the intermediate that
	// signs EK certificates. Trust both as vendor roots/intermediates.
	RootPEM, IssuerPEM []byte
}

// Options for Start.
type Options struct {
	// VendorCA signs the EK certificates; nil uses one CA shared by every
	// instance of this test binary.
	VendorCA *CA
	// NoEKCert manufactures a TPM with its EK persisted but no certificate.
	NoEKCert bool
	// Blank skips swtpm_setup: a freshly manufactured TPM with nothing
	// persisted and no certificate (like a TPM straight from a reel).
	Blank bool
}

// Instance is one running swtpm.
type Instance struct {
	Addr     string // "swtpm://127.0.0.1:P"
	StateDir string
	CA       *CA
	Pid      int

	tb      testing.TB
	mu      sync.Mutex
	port    int
	cmd     *exec.Cmd
	done    chan struct{}
	running bool
}

var tools = []string{"swtpm", "swtpm_setup", "swtpm_localca", "certtool"}

// require skips (or fails under CI=true) when a tool is missing.
func require(tb testing.TB) {
	tb.Helper()
	requireTools(tb, tools, "swtpm swtpm-tools gnutls-bin")
}

// requireTools skips the test when one of names is not on PATH, naming the
// packages to install, except under CI=true where that fails it.
func requireTools(tb testing.TB, names []string, packages string) {
	tb.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("swtpmtest: %s not installed (CI=true: cannot skip); run scripts/deps.sh", name)
			}
			tb.Skipf("swtpmtest: %s not installed; install %s (scripts/deps.sh)", name, packages)
		}
	}
}

// ca file names inside a CA folder.
const (
	caConf       = "swtpm-localca.conf"
	caOpts       = "swtpm-localca.options"
	setupConf    = "swtpm_setup.conf"
	caRootCert   = "swtpm-localca-rootca-cert.pem"
	caIssuerCert = "issuercert.pem"
	caSerial     = "certserial"
)

// writeCAConfig writes the configs that point swtpm_localca and swtpm_setup
// at dir instead of /var/lib/swtpm-localca and /etc.
func writeCAConfig(dir string) error {
	localca := fmt.Sprintf("statedir = %[1]s\nsigningkey = %[1]s/signkey.pem\nissuercert = %[1]s/%[2]s\ncertserial = %[1]s/%[3]s\n",
		dir, caIssuerCert, caSerial)
	opts := "--platform-manufacturer Station-Test\n--platform-version 2.1\n--platform-model swtpmtest\n"
	lca, err := exec.LookPath("swtpm_localca")
	if err != nil {
		return err
	}
	setup := fmt.Sprintf("create_certs_tool = %s\ncreate_certs_tool_config = %s\ncreate_certs_tool_options = %s\nactive_pcr_banks = sha256\n",
		lca, filepath.Join(dir, caConf), filepath.Join(dir, caOpts))
	for name, body := range map[string]string{caConf: localca, caOpts: opts, setupConf: setup} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return writeSerial(dir)
}

// writeSerial starts the CA's serial counter at a random value, so that
// copies of one CA never issue two certificates with the same serial.
func writeSerial(dir string) error {
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, caSerial), []byte(n.Add(n, big.NewInt(1)).String()), 0o600)
}

// makeCA creates a CA in dir: swtpm_localca creates the root and issuer
// keys the first time it signs something, so sign a throw-away EK.
func makeCA(dir string) (*CA, error) {
	if err := writeCAConfig(dir); err != nil {
		return nil, err
	}
	out, err := os.MkdirTemp("", "swtpmtest-ek-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	mod := make([]byte, 256)
	if _, err := rand.Read(mod); err != nil {
		return nil, err
	}
	mod[0] |= 0x80
	cmd := exec.Command("swtpm_localca", "--type", "ek", "--ek", hex.EncodeToString(mod), "--dir", out, "--tpm2",
		"--configfile", filepath.Join(dir, caConf), "--optsfile", filepath.Join(dir, caOpts),
		"--tpm-spec-family", "2.0", "--tpm-spec-level", "0", "--tpm-spec-revision", "164",
		"--tpm-manufacturer", "id:00001014", "--tpm-model", "swtpm", "--tpm-version", "id:20191023")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("swtpm_localca: %v: %s", err, b)
	}
	return loadCA(dir)
}

func loadCA(dir string) (*CA, error) {
	root, err := os.ReadFile(filepath.Join(dir, caRootCert))
	if err != nil {
		return nil, err
	}
	issuer, err := os.ReadFile(filepath.Join(dir, caIssuerCert))
	if err != nil {
		return nil, err
	}
	for _, p := range [][]byte{root, issuer} {
		if b, _ := pem.Decode(p); b == nil || b.Type != "CERTIFICATE" {
			return nil, errors.New("CA certificate is not PEM")
		}
	}
	return &CA{Dir: dir, RootPEM: root, IssuerPEM: issuer}, nil
}

// NewCA creates a separate private CA (another "vendor") in a temporary
// folder of tb.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	require(tb)
	ca, err := makeCA(tb.TempDir())
	if err != nil {
		tb.Fatalf("swtpmtest: creating CA: %v", err)
	}
	return ca
}

// The CA shared by a test binary is kept in memory (its files), and copied
// into each instance's temporary folder with its own serial counter.
var shared struct {
	once  sync.Once
	files map[string][]byte
	err   error
}

func sharedCA(tb testing.TB) *CA {
	tb.Helper()
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "swtpmtest-ca-")
		if err != nil {
			shared.err = err
			return
		}
		defer os.RemoveAll(dir)
		if _, err := makeCA(dir); err != nil {
			shared.err = err
			return
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			shared.err = err
			return
		}
		shared.files = map[string][]byte{}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			switch e.Name() {
			case caConf, setupConf, caSerial: // rewritten per copy
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				shared.err = err
				return
			}
			shared.files[e.Name()] = b
		}
	})
	if shared.err != nil {
		tb.Fatalf("swtpmtest: creating the shared CA: %v", shared.err)
	}
	dir := filepath.Join(tb.TempDir(), "ca")
	if err := os.Mkdir(dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	for name, b := range shared.files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	if err := writeCAConfig(dir); err != nil {
		tb.Fatalf("swtpmtest: %v", err)
	}
	ca, err := loadCA(dir)
	if err != nil {
		tb.Fatalf("swtpmtest: %v", err)
	}
	return ca
}

// Start manufactures a fresh TPM state and starts swtpm on loopback ports
// P (TPM commands) and P+1 (control). It returns once the TPM answers.
// tb.Cleanup shuts it down (TPM2_Shutdown(CLEAR)) and stops it.
func Start(tb testing.TB, opts Options) *Instance {
	tb.Helper()
	require(tb)
	ca := opts.VendorCA
	if ca == nil && !opts.Blank && !opts.NoEKCert {
		ca = sharedCA(tb)
	}
	state := filepath.Join(tb.TempDir(), "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		tb.Fatal(err)
	}
	if !opts.Blank {
		args := []string{"--tpm2", "--tpm-state", state, "--logfile", filepath.Join(state, "setup.log")}
		if opts.NoEKCert {
			args = append(args, "--createek")
			if ca != nil {
				args = append(args, "--config", filepath.Join(ca.Dir, setupConf))
			} else {
				conf := filepath.Join(state, "..", setupConf)
				if err := os.WriteFile(conf, []byte("active_pcr_banks = sha256\n"), 0o600); err != nil {
					tb.Fatal(err)
				}
				args = append(args, "--config", conf)
			}
		} else {
			args = append(args, "--create-ek-cert", "--create-platform-cert", "--config", filepath.Join(ca.Dir, setupConf))
		}
		if b, err := exec.Command("swtpm_setup", args...).CombinedOutput(); err != nil {
			log, _ := os.ReadFile(filepath.Join(state, "setup.log"))
			tb.Fatalf("swtpmtest: swtpm_setup: %v: %s\n%s", err, b, log)
		}
	}
	i := &Instance{StateDir: state, CA: ca, tb: tb}
	if err := i.start(); err != nil {
		tb.Fatalf("swtpmtest: %v", err)
	}
	tb.Cleanup(i.Stop)
	return i
}

// start launches swtpm on free ports (retrying when another process took
// them between the check and the bind) and waits until the TPM answers.
func (i *Instance) start() error {
	var last error
	for attempt := 0; attempt < 8; attempt++ {
		port, err := freePortPair()
		if err != nil {
			return err
		}
		cmd := exec.Command("swtpm", "socket", "--tpm2",
			"--tpmstate", "dir="+i.StateDir,
			"--server", fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", port),
			"--ctrl", fmt.Sprintf("type=tcp,bindaddr=127.0.0.1,port=%d", port+1),
			"--flags", "startup-clear",
			"--log", "file="+filepath.Join(i.StateDir, "swtpm.log"))
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting swtpm: %w", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		err = waitReady(port, done)
		if err == nil {
			// The TPM that answered may be another program's that took
			// the port first (this swtpm then exits): use it only if the
			// listening socket is this swtpm's.
			var own bool
			if own, err = listensOn(cmd.Process.Pid, port); err == nil && !own {
				err = fmt.Errorf("port %d is another program's", port)
			}
		}
		if err != nil {
			_ = cmd.Process.Kill()
			<-done
			last = err
			continue
		}
		i.mu.Lock()
		i.port, i.cmd, i.done, i.running = port, cmd, done, true
		i.Pid = cmd.Process.Pid
		i.Addr = fmt.Sprintf("swtpm://127.0.0.1:%d", port)
		i.mu.Unlock()
		return nil
	}
	return fmt.Errorf("swtpm did not come up: %w", last)
}

// freePortPair finds P such that P and P+1 are free on 127.0.0.1.
func freePortPair() (int, error) { return FreePorts(2) }

// FreePorts finds P such that P..P+n-1 are all free on 127.0.0.1 when it
// returns, for programs given a base port (scripts/swtpm.sh's
// SWTPM_BASE_PORT). Another process may take them before the caller binds.
func FreePorts(n int) (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := l.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{l}
		for i := 1; i < n; i++ {
			li, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
			if err != nil {
				break
			}
			ls = append(ls, li)
		}
		for _, li := range ls {
			li.Close()
		}
		if len(ls) == n {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports on 127.0.0.1", n)
}

// getRandom is TPM2_GetRandom(8), a harmless command to see the TPM answer.
var getRandom = []byte{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x7b, 0, 8}

// shutdownClear is TPM2_Shutdown(TPM_SU_CLEAR).
var shutdownClear = []byte{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x45, 0, 0}

// waitReady waits until the swtpm on port answers. Its deadlines are
// against a swtpm that never comes up, not delays: generous, as a loaded
// machine may take seconds to start a process.
func waitReady(port int, exited <-chan struct{}) error {
	const wait = time.Minute
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("swtpm exited at start (port taken?)")
		default:
		}
		rc, err := rawCommand(port, getRandom, 5*time.Second)
		if err == nil {
			if rc != 0 {
				return fmt.Errorf("swtpm answers GetRandom with %#x", rc)
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("swtpm did not answer within %v", wait)
}

// rawCommand sends one command on a new connection and returns the
// response code.
func rawCommand(port int, cmd []byte, timeout time.Duration) (uint32, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(cmd); err != nil {
		return 0, err
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return 0, err
	}
	if n := binary.BigEndian.Uint32(hdr[2:6]); n > 10 {
		if _, err := io.CopyN(io.Discard, c, int64(n-10)); err != nil {
			return 0, err
		}
	}
	return binary.BigEndian.Uint32(hdr[6:10]), nil
}

// Stop sends TPM2_Shutdown(CLEAR), then stops swtpm by pid and waits for it.
// Idempotent. Close TPM connections to the instance first: swtpm serves one
// connection at a time, so the shutdown waits (up to 5s) for them.
func (i *Instance) Stop() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.running {
		return
	}
	i.running = false
	if rc, err := rawCommand(i.port, shutdownClear, 5*time.Second); err != nil || rc != 0 {
		i.tb.Logf("swtpmtest: TPM2_Shutdown on %s: rc=%#x err=%v (DA counters may grow)", i.Addr, rc, err)
	}
	_ = i.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-i.done:
	case <-time.After(5 * time.Second):
		_ = i.cmd.Process.Kill()
		<-i.done
	}
}

// Restart stops the instance (orderly) and starts it again on the same
// state; Addr may change. Open the TPM again afterwards.
func (i *Instance) Restart() {
	i.tb.Helper()
	i.Stop()
	if err := i.start(); err != nil {
		i.tb.Fatalf("swtpmtest: restarting: %v", err)
	}
}

// Kill stops swtpm without TPM2_Shutdown, like pulling the plug (for
// crash/resume tests). Restart brings it back.
func (i *Instance) Kill() {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.running {
		return
	}
	i.running = false
	_ = i.cmd.Process.Kill()
	<-i.done
}

// ClosedAddr returns a TPM address (swtpm://127.0.0.1:PORT) on which nothing
// listens: a TPM that cannot be reached (connection refused). It needs no
// swtpm. The port stays bound (without listening) until the test ends, so
// no other program, such as another test's swtpm, can take it meanwhile.
func ClosedAddr(tb testing.TB) string {
	tb.Helper()
	syscall.ForkLock.RLock() // no child process may inherit the socket
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err == nil {
		syscall.CloseOnExec(fd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		tb.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		tb.Fatal(err)
	}
	in4, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		tb.Fatalf("swtpmtest: bound to %T", sa)
	}
	return fmt.Sprintf("swtpm://127.0.0.1:%d", in4.Port)
}

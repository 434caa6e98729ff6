package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
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
	"github.com/factory-id/station/internal/hint"
)

var testPolicy = Policy{SANURI: certgen.DefaultSANURI, Validity: 24 * time.Hour, Warehouse: time.Hour}

// testIssuer is a throwaway root → line intermediate with its key.
func testIssuer(t testing.TB) *certgen.Issuer {
	t.Helper()
	rootKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	lineKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	root, err := certgen.NewRoot(rootKey, certgen.CAOptions{Subject: "Agent Test Root", Validity: 48 * time.Hour, PathLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	line, err := certgen.NewIntermediate(root, rootKey, lineKey.Public(), certgen.CAOptions{Subject: "Agent Test Line", Validity: 47 * time.Hour, PathLen: 0})
	if err != nil {
		t.Fatal(err)
	}
	is, err := certgen.NewIssuer(line, lineKey, nil, root)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

// publicOnly is what a provision process holds: the certificates, no key.
func publicOnly(is *certgen.Issuer) *certgen.Issuer {
	return &certgen.Issuer{Cert: is.Cert, Chain: is.Chain, Root: is.Root}
}

// privateDir is a 0700 folder (t.TempDir's own mode is not promised).
func privateDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

type running struct {
	path string
	srv  *Server
	stop context.CancelFunc
	done chan error
}

func startAgent(t testing.TB, is *certgen.Issuer, pol Policy, idle time.Duration) *running {
	t.Helper()
	path := filepath.Join(privateDir(t), "agent", "agent.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{path: path, srv: &Server{Issuer: is, Policy: pol, IdleTimeout: idle}, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- r.srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func csrFor(t testing.TB, cn string) (*x509.CertificateRequest, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := certgen.NewCSR(k, cn)
	if err != nil {
		t.Fatal(err)
	}
	return csr, k
}

func TestAgentIssuesUnderPolicy(t *testing.T) {
	is := testIssuer(t)
	a := startAgent(t, is, testPolicy, 0)
	c, err := Dial(a.path, publicOnly(is), testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	csr, k := csrFor(t, "unit-1")
	cert, err := c.Issue(certgen.LeafRequest{CSR: csr, RegistrationID: "unit-1", UnitSerial: "SN-1"})
	if err != nil {
		t.Fatal(err)
	}
	if !k.PublicKey.Equal(cert.PublicKey) || cert.Subject.CommonName != "unit-1" || cert.IsCA {
		t.Fatalf("leaf: CN %q, CA %v", cert.Subject.CommonName, cert.IsCA)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "urn:station:serial:SN-1" {
		t.Errorf("leaf SAN %v: the agent's SAN template must apply", cert.URIs)
	}
	// The policy's validity is the agent's: the client cannot ask for more.
	if life := cert.NotAfter.Sub(cert.NotBefore); life > testPolicy.Validity+testPolicy.Warehouse+time.Hour {
		t.Errorf("leaf lives %s, past the agent's policy", life)
	}
	if got := c.Info().Issued; got != 0 {
		t.Errorf("info at dial: issued %d", got)
	}

	// Refusals of the policy come back as such, with their hint.
	bad, _ := csrFor(t, "x")
	_, err = c.Issue(certgen.LeafRequest{CSR: bad, RegistrationID: "-bad id-", UnitSerial: "SN-2"})
	if !errors.Is(err, certgen.ErrPolicy) || hint.Of(err) == "" {
		t.Errorf("bad registration ID via the agent: %v (hint %q), want ErrPolicy with a hint", err, hint.Of(err))
	}
	// A CSR whose signature does not verify (a client without the key).
	csr2, _ := csrFor(t, "unit-3")
	forged := *csr2
	forged.Raw = append([]byte{}, csr2.Raw...)
	forged.Raw[len(forged.Raw)-3] ^= 1
	if _, err := c.Issue(certgen.LeafRequest{CSR: &forged, RegistrationID: "unit-3", UnitSerial: "SN-3"}); !errors.Is(err, certgen.ErrPolicy) {
		t.Errorf("tampered CSR via the agent: %v, want ErrPolicy", err)
	}
}

// TestAgentCeiling: pki.max_issued holds in the agent whatever count the
// client reports.
func TestAgentCeiling(t *testing.T) {
	is := testIssuer(t)
	pol := testPolicy
	pol.MaxIssued = 2
	a := startAgent(t, is, pol, 0)
	c, err := Dial(a.path, publicOnly(is), pol)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		csr, _ := csrFor(t, fmt.Sprintf("unit-%d", i))
		_, err := c.Issue(certgen.LeafRequest{CSR: csr, RegistrationID: fmt.Sprintf("unit-%d", i), UnitSerial: fmt.Sprint("SN-", i), Issued: 0})
		if i < 2 && err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		if i == 2 && !errors.Is(err, certgen.ErrPolicy) {
			t.Fatalf("leaf past the ceiling with a client claiming 0 issued: %v, want ErrPolicy", err)
		}
	}
}

// TestAgentSerialTaken: a certificate serial the database already holds is
// never returned; the client asks again.
func TestAgentSerialTaken(t *testing.T) {
	is := testIssuer(t)
	a := startAgent(t, is, testPolicy, 0)
	c, err := Dial(a.path, publicOnly(is), testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := csrFor(t, "unit-1")
	var seen []string
	cert, err := c.Issue(certgen.LeafRequest{CSR: csr, RegistrationID: "unit-1", UnitSerial: "SN-1",
		SerialTaken: func(s string) bool { seen = append(seen, s); return len(seen) == 1 }})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || certgen.SerialHex(cert) == seen[0] {
		t.Fatalf("serials asked %v, got %s: the taken one must not come back", seen, certgen.SerialHex(cert))
	}
}

func TestDialMismatch(t *testing.T) {
	is := testIssuer(t)
	a := startAgent(t, is, testPolicy, 0)
	other := testIssuer(t)
	if _, err := Dial(a.path, publicOnly(other), testPolicy); !errors.Is(err, ErrMismatch) {
		t.Errorf("dial with another issuer: %v, want ErrMismatch", err)
	}
	pol := testPolicy
	pol.Validity *= 2
	if _, err := Dial(a.path, publicOnly(is), pol); !errors.Is(err, ErrMismatch) {
		t.Errorf("dial with another validity: %v, want ErrMismatch", err)
	}
}

// TestAgentStops: on ctx and on the idle timeout the agent stops and
// removes its socket; a client then gets ErrUnavailable with a hint.
func TestAgentStops(t *testing.T) {
	is := testIssuer(t)
	a := startAgent(t, is, testPolicy, 0)
	a.stop()
	if err := <-a.done; err != nil {
		t.Fatalf("serve after cancel: %v", err)
	}
	a.done <- nil // for the cleanup
	if _, err := os.Lstat(a.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after stop: %v", err)
	}
	_, err := Dial(a.path, publicOnly(is), testPolicy)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(hint.Of(err), "station agent") {
		t.Errorf("dial a stopped agent: %v (hint %q)", err, hint.Of(err))
	}

	b := startAgent(t, is, testPolicy, 50*time.Millisecond)
	err = <-b.done
	b.done <- nil
	if err == nil || !strings.Contains(err.Error(), "without a request") {
		t.Errorf("serve with an idle timeout: %v", err)
	}
	if _, err := os.Lstat(b.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after the idle timeout: %v", err)
	}
}

// TestAgentKilled: a killed agent leaves its socket; clients get
// ErrUnavailable, and a new agent replaces the stale socket.
func TestAgentKilled(t *testing.T) {
	is := testIssuer(t)
	path := filepath.Join(privateDir(t), "agent.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false) // as SIGKILL leaves it
	ln.Close()
	if _, err := Dial(path, publicOnly(is), testPolicy); !errors.Is(err, ErrUnavailable) {
		t.Errorf("dial a dead socket: %v, want ErrUnavailable", err)
	}
	ln, err = Listen(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer ln.Close()
	// A live one is not taken over.
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Errorf("listen over a live agent: %v, want ErrInUse", err)
	}
}

func TestListenPermissions(t *testing.T) {
	dir := privateDir(t)
	path := filepath.Join(dir, "new", "agent.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
	}

	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	if _, err := Listen(filepath.Join(open, "agent.sock")); !errors.Is(err, ErrUnsafeSocket) || !strings.Contains(hint.Of(err), "chmod 700") {
		t.Errorf("listen in a 0755 folder: %v (hint %q), want ErrUnsafeSocket", err, hint.Of(err))
	}
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "new"), link)
	if _, err := Listen(filepath.Join(link, "x.sock")); !errors.Is(err, ErrUnsafeSocket) {
		t.Errorf("listen in a symlinked folder: %v, want ErrUnsafeSocket", err)
	}
	file := filepath.Join(dir, "new", "file")
	os.WriteFile(file, []byte("keep"), 0o600)
	if _, err := Listen(file); !errors.Is(err, ErrUnsafeSocket) {
		t.Errorf("listen over a file: %v, want ErrUnsafeSocket", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep" {
		t.Error("a file at the socket path was touched")
	}
	if os.Getuid() == 0 {
		theirs := filepath.Join(dir, "theirs")
		os.Mkdir(theirs, 0o700)
		os.Chown(theirs, 65534, 65534)
		if _, err := Listen(filepath.Join(theirs, "agent.sock")); !errors.Is(err, ErrUnsafeSocket) {
			t.Errorf("listen in another user's folder: %v, want ErrUnsafeSocket", err)
		}
	}
}

func TestAllowUID(t *testing.T) {
	for _, c := range []struct {
		peer, self uint32
		ok         bool
	}{{1000, 1000, true}, {0, 0, true}, {1001, 1000, false}, {0, 1000, false}, {1000, 0, false}} {
		err := allowUID(c.peer, c.self)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, ErrPeer)) {
			t.Errorf("allowUID(%d, %d) = %v, want ok=%v", c.peer, c.self, err, c.ok)
		}
	}
}

// TestPeerOfAnotherUser: a process of another uid that reaches the socket
// (here through a folder left open on purpose) is refused by the agent's
// SO_PEERCRED check and gets no certificate. Needs root to run the client
// as nobody.
func TestPeerOfAnotherUser(t *testing.T) {
	if runtime.GOOS != "linux" || os.Getuid() != 0 {
		t.Skip("needs Linux and root to run a client as another uid (TestAllowUID covers the rule)")
	}
	is := testIssuer(t)
	open, err := os.MkdirTemp("", "agent-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(open) })
	os.Chmod(open, 0o755)
	exe, _ := os.Executable()
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(open, "agent.test")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sockDir := filepath.Join(open, "s")
	os.Mkdir(sockDir, 0o777)
	os.Chmod(sockDir, 0o777)
	path := filepath.Join(sockDir, "agent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o777) // the folder and socket protect nothing here: only the peer check
	var log strings.Builder
	var mu sync.Mutex
	srv := &Server{Issuer: is, Policy: testPolicy, Log: slog.New(slog.NewTextHandler(lockedWriter{&mu, &log}, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	cmd := exec.Command(bin, "-test.run=^TestPeerClientHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "AGENT_PEER_SOCKET="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "REFUSED") {
		t.Fatalf("the client of another uid was not refused:\n%s", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(log.String(), "uid 65534") || strings.Contains(log.String(), "issued") {
		t.Errorf("agent log: %s", log.String())
	}
	if srv.issued != 0 {
		t.Errorf("the agent signed %d certificate(s) for another user", srv.issued)
	}
}

// TestPeerClientHelper is the other user's process of TestPeerOfAnotherUser.
func TestPeerClientHelper(t *testing.T) {
	path := os.Getenv("AGENT_PEER_SOCKET")
	if path == "" {
		t.Skip("run by TestPeerOfAnotherUser")
	}
	// A raw connection: the agent's check is under test, not the client's.
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	csr, _ := csrFor(t, "unit-1")
	// The agent may refuse and hang up as soon as it sees the peer, before
	// the request is written: a broken pipe here is that refusal arriving
	// first, and the refusal is still there to read.
	if err := writeMsg(conn, &request{Op: opIssue, CSR: csr.Raw, RegistrationID: "unit-1", UnitSerial: "SN-1"}); err != nil &&
		!errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	var resp response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		t.Fatal(err)
	}
	if resp.Class != classPeer || len(resp.Cert) != 0 || !strings.Contains(resp.Error, "uid 65534") {
		t.Fatalf("response to another uid: %+v", resp)
	}
	fmt.Println("REFUSED:", resp.Error)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *strings.Builder
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

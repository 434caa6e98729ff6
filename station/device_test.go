package station

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
	"github.com/factory-id/station/tsskey"
)

// deviceTools are the device-side clients of the tests below, from the
// Debian packages tpm2-openssl, libtpm2-pkcs11-1, libtpm2-pkcs11-tools and
// opensc (scripts/deps.sh).
var deviceTools = []string{"openssl", "tpm2_ptool", "pkcs11-tool"}

func requireDeviceTools(t *testing.T) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (CI=true: cannot skip); run scripts/deps.sh", what)
		}
		t.Skipf("%s not installed; run scripts/deps.sh", what)
	}
	for _, name := range deviceTools {
		if _, err := exec.LookPath(name); err != nil {
			missing(name)
		}
	}
	// The provider needs a TPM to load, so look for its module file.
	out, _ := exec.Command("openssl", "version", "-m").Output()
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "MODULESDIR: ")
	if _, err := os.Stat(filepath.Join(strings.Trim(dir, `"`), "tpm2.so")); !ok || err != nil {
		missing("OpenSSL's tpm2 provider (tpm2-openssl)")
	}
	if pkcs11Module() == "" {
		missing("libtpm2_pkcs11.so")
	}
}

// pkcs11Module is the tpm2-pkcs11 module of the Debian package, "" if absent.
func pkcs11Module() string {
	m, _ := filepath.Glob("/usr/lib/*/pkcs11/libtpm2_pkcs11.so")
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

// deviceUnit is a provisioned swtpm unit as its own software finds it: the
// flashed bundle folder, read through its device.json.
type deviceUnit struct {
	inst   *swtpmtest.Instance
	dir    string // the bundle folder on the unit's storage
	dev    credbundle.DeviceManifest
	leaf   *x509.Certificate
	root   string // the pinned root, PEM file
	tcti   string // swtpm TCTI for the tss2 libraries
	serial string
}

func (d *deviceUnit) file(name string) string { return filepath.Join(d.dir, name) }

func provisionDevice(t *testing.T, l *testLine, inst *swtpmtest.Instance, serial string) *deviceUnit {
	t.Helper()
	v := l.provisionSwtpmOn(t, inst, serial)
	d := &deviceUnit{inst: inst, dir: filepath.Join(v.flash, flash.DirBundle), root: l.cfg.File(configs.KeyRoot), serial: serial}
	host, port := swtpmHostPort(t, inst)
	d.tcti = "swtpm:host=" + host + ",port=" + port
	dj, err := os.ReadFile(d.file(credbundle.FileDevice))
	if err != nil {
		t.Fatalf("the unit has no %s: %v", credbundle.FileDevice, err)
	}
	if err := json.Unmarshal(dj, &d.dev); err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(d.file(d.dev.Certificate))
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		t.Fatalf("%s is not PEM", d.dev.Certificate)
	}
	if d.leaf, err = x509.ParseCertificate(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	// What device.json names is what was provisioned.
	u := v.u
	if d.dev.RegistrationID != u.RegistrationID || d.dev.IDScope != l.cfg.DPS.IDScope || d.dev.GlobalEndpoint != l.cfg.DPS.GlobalEndpoint ||
		d.dev.Key.Handle != fmt.Sprintf("0x%08x", u.DeviceKeyHandle) || d.dev.Key.Parent != fmt.Sprintf("0x%08x", u.SRKHandle) ||
		!d.dev.Key.EmptyAuth || !bytes.Equal(d.leaf.Raw, u.Cert) {
		t.Fatalf("device.json %+v does not describe unit %s", d.dev, serial)
	}
	return d
}

// provisionSwtpmOn provisions serial on inst with a dir: flash target.
func (l *testLine) provisionSwtpmOn(t *testing.T, inst *swtpmtest.Instance, serial string) *verifyUnit {
	t.Helper()
	dir := filepath.Join(l.dir, "units", serial)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.provision(Request{Serial: serial, TPMAddr: inst.Addr, FlashSpec: "dir:" + dir}); err != nil {
		t.Fatalf("provisioning %s: %v", serial, err)
	}
	return &verifyUnit{l: l, inst: inst, u: l.unit(serial), flash: dir}
}

// sServer is `openssl s_server` on 127.0.0.1 that requires a client
// certificate chaining to caFile and nothing else, for one connection.
type sServer struct {
	cmd  *exec.Cmd
	port int
	out  bytes.Buffer // what it printed (stdout and stderr), complete once done is closed
	done chan struct{}
	in   io.WriteCloser
}

func startSServer(t *testing.T, caFile string, serverKey crypto.Signer) *sServer {
	t.Helper()
	dir := t.TempDir()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, serverKey.Public(), serverKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "server.crt"), pemCerts(der), 0o644)
	kd, _ := x509.MarshalPKCS8PrivateKey(serverKey)
	os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600)
	for attempt := 0; attempt < 5; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		s := &sServer{port: port, done: make(chan struct{})}
		s.cmd = exec.Command("openssl", "s_server", "-accept", fmt.Sprintf("127.0.0.1:%d", port),
			"-cert", filepath.Join(dir, "server.crt"), "-key", filepath.Join(dir, "server.key"),
			"-CAfile", caFile, "-no-CApath", "-no-CAstore", "-Verify", "4", "-verify_return_error", "-naccept", "1")
		// Its standard input stays open until it is stopped: at end of
		// input s_server would end the connection.
		if s.in, err = s.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		s.cmd.Stdout, s.cmd.Stderr = w, w
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		t.Cleanup(func() { s.stop(0) })
		// Ready once it prints ACCEPT; a port taken meanwhile makes it exit.
		ready := make(chan bool, 1)
		go func() {
			defer close(s.done)
			br := bufio.NewReader(r)
			for {
				line, err := br.ReadString('\n')
				s.out.WriteString(line)
				if strings.HasPrefix(line, "ACCEPT") {
					ready <- true
					break
				}
				if err != nil {
					ready <- false
					break
				}
			}
			_, _ = io.Copy(&s.out, br)
			r.Close()
			_ = s.cmd.Wait()
		}()
		select {
		case ok := <-ready:
			if ok {
				return s
			}
			<-s.done
		case <-time.After(30 * time.Second):
			t.Fatal("openssl s_server did not start in 30s")
		}
	}
	t.Fatal("openssl s_server could not bind a port")
	return nil
}

// stop waits up to grace for the server to exit by itself (it does after
// its one connection), then stops it by pid, and returns what it printed.
func (s *sServer) stop(grace time.Duration) string {
	select {
	case <-s.done:
	case <-time.After(grace):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.in.Close()
	return s.out.String()
}

// sClient runs `openssl s_client` with OpenSSL's tpm2 provider on the unit's
// TPM, presenting the flashed certificate and chain with key (a provider URI
// or a key file), and sends one line.
func (d *deviceUnit) sClient(t *testing.T, port int, key, tcti string, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "openssl", "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", port),
		// The default provider first, so that what libssl hashes without a
		// property query stays in software; the signature comes from the
		// tpm2 provider, which holds the key.
		"-provider", "default", "-provider", "tpm2", "-propquery", "?tpm2.signature",
		"-cert", d.file(d.dev.Certificate), "-cert_chain", d.file(d.dev.Chain), "-key", key)
	cmd.Env = append(append(os.Environ(), env...), "TPM2OPENSSL_TCTI="+tcti)
	cmd.Stdin = strings.NewReader("hello from " + d.serial + "\n")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// handshake runs one mTLS connection from the unit (its TPM reached
// through tcti) to a server trusting caFile and returns the client
// certificate the server accepted ("" when it accepted none) and the
// server's and client's output.
func (d *deviceUnit) handshake(t *testing.T, caFile string, serverKey crypto.Signer, key, tcti string, env ...string) (leaf, server, client string) {
	t.Helper()
	s := startSServer(t, caFile, serverKey)
	client, _ = d.sClient(t, s.port, key, tcti, env...)
	grace := 30 * time.Second
	if !strings.Contains(client, "CONNECTED(") {
		grace = 0 // the client never connected: nothing to wait for
	}
	server = s.stop(grace)
	if i := strings.Index(server, "Client certificate\n"); i >= 0 {
		if blk, _ := pem.Decode([]byte(server[i:])); blk != nil && blk.Type == "CERTIFICATE" {
			leaf = string(blk.Bytes)
		}
	}
	return leaf, server, client
}

// TestDeviceSoftware: a unit as provisioned works with the software on the
// device, from the files of its bundle alone: OpenSSL's tpm2 provider makes
// an mTLS connection with the key by persistent handle and by the TSS2 key
// file, to a server that trusts only the root and sees CN = registration ID
// (what DPS checks for an X.509 individual enrollment); tpm2-pkcs11 links
// the key file and signs through PKCS#11.
func TestDeviceSoftware(t *testing.T) {
	requireDeviceTools(t)
	for _, tc := range []struct {
		name   string
		mutate func(*configs.Config)
		pkcs11 bool
	}{
		// X.509 attestation with the key in the TPM, owner auth escrowed:
		// the device's software needs no hierarchy auth at all.
		{"x509", func(c *configs.Config) {
			c.DPS.Attestation, c.DPS.RegistrationID, c.DPS.Line = "x509", "{line}-{serial}", "l1"
			c.Ownership.OwnerAuth = "escrow"
		}, true},
		// TPM attestation (the default): the same key file and handle.
		{"tpm", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := swtpmtest.Start(t, swtpmtest.Options{})
			l := newTestLine(t, func(c *configs.Config) {
				trustSwtpm(t, inst.CA)(c)
				if tc.mutate != nil {
					tc.mutate(c)
				}
			})
			d := provisionDevice(t, l, inst, "DEV-"+strings.ToUpper(tc.name))
			if d.dev.Attestation != tc.name {
				t.Fatalf("device.json attestation %q", d.dev.Attestation)
			}
			t.Run("openssl", func(t *testing.T) { d.testOpenSSL(t) })
			if tc.pkcs11 {
				t.Run("pkcs11", func(t *testing.T) { d.testPKCS11(t) })
			}
			d.noLeaks(t)
		})
	}
}

// checkAccepted requires that the server accepted exactly the unit's leaf,
// saw CN = registration ID, and received the client's line.
func (d *deviceUnit) checkAccepted(t *testing.T, what, leaf, server, client string) {
	t.Helper()
	if leaf != string(d.leaf.Raw) {
		t.Fatalf("%s: the server accepted no client certificate, or another one\nserver:\n%s\nclient:\n%s", what, server, client)
	}
	if want := "subject=CN = " + d.dev.RegistrationID + "\n"; !strings.Contains(server, want) || d.leaf.Subject.CommonName != d.dev.RegistrationID {
		t.Errorf("%s: the server did not see CN = registration ID %s:\n%s", what, d.dev.RegistrationID, server)
	}
	if !strings.Contains(server, "hello from "+d.serial) {
		t.Errorf("%s: no data crossed the connection:\n%s", what, server)
	}
}

func (d *deviceUnit) testOpenSSL(t *testing.T) {
	// The server's key is Ed25519, which the tpm2 provider does not
	// implement, so that only the client's own key touches the TPM: swtpm
	// has three object slots and no resource manager, and a P-256 server
	// key verified through the provider (TPM2_LoadExternal) beside the
	// loaded key file and the provider's hash sequences overflows them. A
	// device's /dev/tpmrm0 swaps objects; tpm2-abrmd does the same below.
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, key := range []string{"handle:" + d.dev.Key.Handle, d.file(d.dev.Key.File)} {
		leaf, server, client := d.handshake(t, d.root, edKey, key, d.tcti)
		d.checkAccepted(t, "-key "+key, leaf, server, client)
	}
	// Through a resource manager, with a P-256 server as DPS-like services
	// commonly have.
	rm := d.inst.StartRM(t)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, key := range []string{"handle:" + d.dev.Key.Handle, d.file(d.dev.Key.File)} {
		leaf, server, client := d.handshake(t, d.root, ecKey, key, rm.TCTI, rm.Env...)
		d.checkAccepted(t, "-key "+key+" via tpm2-abrmd", leaf, server, client)
	}
	rm.Stop()

	// The server really checks: trusting another root, it refuses the unit.
	other, _ := newCA(t, "Another Root")
	otherFile := filepath.Join(t.TempDir(), "other-root.pem")
	os.WriteFile(otherFile, pemCerts(other.Raw), 0o644)
	if leaf, server, _ := d.handshake(t, otherFile, edKey, "handle:"+d.dev.Key.Handle, d.tcti); leaf != "" || !strings.Contains(server, "verify error") {
		t.Errorf("a server trusting another root accepted the unit:\n%s", server)
	}

	// A key file whose private blob was edited does not load (TPM2_Load
	// checks its integrity under the SRK): no handshake.
	kf, err := os.ReadFile(d.file(d.dev.Key.File))
	if err != nil {
		t.Fatal(err)
	}
	k, err := tsskey.ParsePEM(kf)
	if err != nil {
		t.Fatal(err)
	}
	k.Private[len(k.Private)-1] ^= 1
	bad, _ := k.MarshalPEM()
	badFile := filepath.Join(t.TempDir(), "edited.tss2.pem")
	os.WriteFile(badFile, bad, 0o600)
	if leaf, server, client := d.handshake(t, d.root, edKey, badFile, d.tcti); leaf != "" || !strings.Contains(client, "Could not read client certificate private key") {
		t.Errorf("an edited key file made a connection:\n%s\n%s", server, client)
	}
}

func (d *deviceUnit) testPKCS11(t *testing.T) {
	store := t.TempDir()
	const label, userPIN, soPIN = "unit", "user-1234", "so-1234"
	// tpm2_ptool drives tpm2-tools, which leave transient objects for a
	// resource manager to flush: swtpm has none, so tpm2-abrmd stands in
	// for the device's /dev/tpmrm0 while the token is made.
	rm := d.inst.StartRM(t)
	ptool := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "tpm2_ptool", append(args, "--path", store)...)
		cmd.Env = append(append(os.Environ(), rm.Env...), "TPM2TOOLS_TCTI="+rm.TCTI, "TPM2_PKCS11_TCTI="+rm.TCTI, "TPM2_PKCS11_STORE="+store)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, args := range [][]string{
		{"init", "--primary-handle", d.dev.Key.Parent},
		{"addtoken", "--pid", "1", "--label", label, "--userpin", userPIN, "--sopin", soPIN},
	} {
		if out, err := ptool(args...); err != nil {
			t.Fatalf("tpm2_ptool %v: %v\n%s", args, err, out)
		}
	}
	// An edited key file is refused by link (it loads the key); the
	// flashed one links.
	kf, _ := os.ReadFile(d.file(d.dev.Key.File))
	k, _ := tsskey.ParsePEM(kf)
	k.Private[len(k.Private)-1] ^= 1
	bad, _ := k.MarshalPEM()
	badFile := filepath.Join(t.TempDir(), "edited.tss2.pem")
	os.WriteFile(badFile, bad, 0o600)
	if out, err := ptool("link", "--label", label, "--userpin", userPIN, "--key-label", "edited", badFile); err == nil {
		t.Errorf("tpm2_ptool linked an edited key file:\n%s", out)
	}
	if out, err := ptool("link", "--label", label, "--userpin", userPIN, "--key-label", "device", d.file(d.dev.Key.File)); err != nil {
		t.Fatalf("tpm2_ptool link: %v\n%s", err, out)
	}
	rm.Stop()

	// The device's PKCS#11 consumer, on the TPM directly.
	digest := sha256.Sum256([]byte("DPS challenge for " + d.dev.RegistrationID))
	dir := t.TempDir()
	in, sigFile := filepath.Join(dir, "digest"), filepath.Join(dir, "sig")
	os.WriteFile(in, digest[:], 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "pkcs11-tool", "--module", pkcs11Module(), "--token-label", label,
		"--login", "--pin", userPIN, "--sign", "--mechanism", "ECDSA", "--label", "device",
		"--signature-format", "openssl", "-i", in, "-o", sigFile)
	cmd.Env = append(os.Environ(), "TPM2_PKCS11_TCTI="+d.tcti, "TPM2_PKCS11_STORE="+store)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pkcs11-tool --sign: %v\n%s", err, out)
	}
	sig, _ := os.ReadFile(sigFile)
	pub := d.leaf.PublicKey.(*ecdsa.PublicKey)
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatalf("the PKCS#11 signature does not verify under the leaf's key (%x)", sig)
	}
	digest[0] ^= 1
	if ecdsa.VerifyASN1(pub, digest[:], sig) {
		t.Fatal("the PKCS#11 signature verifies over another digest")
	}
}

// noLeaks checks the device software left nothing loaded in the TPM.
func (d *deviceUnit) noLeaks(t *testing.T) {
	t.Helper()
	tpm, err := tpmops.Open(d.inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	noLeaks(t, tpm)
}

// TestKeyFileAfterResume: a unit stopped after its device key was made and
// before the flash step (here: cancelled as the certificate step starts,
// which fails the flash step) still gets its TSS2 key file when resumed:
// the TPM2B_PRIVATE was journaled with the key, not kept in memory. A
// record without it (made before it was journaled; here: edited out)
// resumes to a version 1 bundle without a key file; an edited blob stops
// the flash step (nothing flashed) instead of giving the device a key file
// that does not load.
func TestKeyFileAfterResume(t *testing.T) {
	for _, tc := range []struct {
		name        string
		edit        func(u *store.Unit)
		wantKey     bool
		wantVersion int
		wantErr     string
	}{
		{"journaled", nil, true, credbundle.Version2, ""},
		{"record without the blob", func(u *store.Unit) { u.DeviceKeyPrivate = nil }, false, credbundle.Version1, ""},
		{"blob edited in the record", func(u *store.Unit) { u.DeviceKeyPrivate[len(u.DeviceKeyPrivate)-1] ^= 1 }, false, 0, "does not load under the SRK"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := swtpmtest.Start(t, swtpmtest.Options{})
			l := newTestLine(t, trustSwtpm(t, inst.CA))
			serial := "RES-1"
			dir := filepath.Join(l.dir, "units", serial)
			os.MkdirAll(dir, 0o755)
			ctx, cancel := context.WithCancel(context.Background())
			req := Request{Serial: serial, TPMAddr: inst.Addr, FlashSpec: "dir:" + dir,
				Observer: ObserverFuncs{Started: func(_, step string) {
					if step == StepCertificate {
						cancel()
					}
				}}}
			res, err := l.prov.Provision(ctx, req)
			if err == nil || res.FailedStep != StepFlash {
				t.Fatalf("first run: %+v, %v (want it stopped at the flash step)", res, err)
			}
			u := l.unit(serial)
			if !u.StepDone(StepDeviceKey) || len(u.DeviceKeyPrivate) == 0 || u.DeviceKeyPending != nil {
				t.Fatalf("after the device-key step: done %v, private %d bytes, pending %v", u.StepDone(StepDeviceKey), len(u.DeviceKeyPrivate), u.DeviceKeyPending != nil)
			}
			if _, err := os.Stat(filepath.Join(dir, flash.DirBundle)); !os.IsNotExist(err) {
				t.Fatalf("something was flashed before the flash step: %v", err)
			}
			if tc.edit != nil {
				tc.edit(u)
				putUnit(t, l, u)
			}
			req.Observer = nil
			res, err = l.prov.Provision(context.Background(), req)
			if tc.wantErr != "" {
				if err == nil || res.FailedStep != StepFlash || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("resume with %s: %+v, %v", tc.name, res, err)
				}
				if _, err := os.Stat(filepath.Join(dir, flash.DirBundle)); !os.IsNotExist(err) {
					t.Fatalf("a bundle was flashed: %v", err)
				}
				return
			}
			if err != nil || !res.Resumed {
				t.Fatalf("resume: %+v, %v", res, err)
			}
			b, err := flash.ReadFolder(filepath.Join(dir, flash.DirBundle))
			if err != nil {
				t.Fatal(err)
			}
			if b.Version != tc.wantVersion || (len(b.TPMKey) > 0) != tc.wantKey {
				t.Fatalf("resumed bundle: version %d, key file %v", b.Version, len(b.TPMKey) > 0)
			}
			if !tc.wantKey {
				return
			}
			u = l.unit(serial)
			k, err := tsskey.ParseDER(b.TPMKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k.Public, u.DeviceKeyPublic) || !bytes.Equal(k.Private, u.DeviceKeyPrivate) || k.Parent != u.SRKHandle {
				t.Fatal("the key file is not the journaled key under the SRK")
			}
			// It loads on the unit's TPM as the key at the device key handle.
			tpm, err := tpmops.Open(inst.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer tpm.Close()
			srk, _ := tpm.ReadPublic(0x81000001)
			dev, _ := tpm.ReadPublic(0x81000010)
			loaded, err := tpm.CheckKeyBlob(srk, k.Public, k.Private)
			if err != nil || !bytes.Equal(loaded.Name, dev.Name) {
				t.Fatalf("the key file does not load as the device key: %v", err)
			}
			noLeaks(t, tpm)
		})
	}
}

// putUnit writes a unit record behind the station's back.
func putUnit(t *testing.T, l *testLine, u *store.Unit) {
	t.Helper()
	if err := l.env.DB.Update(func(tx *bolt.Tx) error { return store.PutUnit(tx, u) }); err != nil {
		t.Fatal(err)
	}
}

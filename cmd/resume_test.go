package cmd

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
	"github.com/factory-id/station/tsskey"
)

// line is a station made by `station demo --units 1`, pointed at a swtpm vendor.
type line struct {
	t      testing.TB
	bin    string
	dir    string
	config string
	env    []string
}

// swtpmVendor skips the test off Linux and returns the CA of a fresh swtpm,
// to be the vendor of the line's TPMs.
func swtpmVendor(t *testing.T) *swtpmtest.CA {
	t.Helper()
	needLinux(t)
	return swtpmtest.Start(t, swtpmtest.Options{}).CA
}

func newLine(t *testing.T, vendor *swtpmtest.CA) *line {
	t.Helper()
	l := &line{t: t, bin: stationExe(t), dir: t.TempDir()}
	l.config = filepath.Join(l.dir, "station.yaml")
	roots := filepath.Join(t.TempDir(), "vendor")
	os.MkdirAll(roots, 0o755)
	os.WriteFile(filepath.Join(roots, "root.pem"), vendor.RootPEM, 0o644)
	os.WriteFile(filepath.Join(roots, "issuer.pem"), vendor.IssuerPEM, 0o644)
	l.env = append(os.Environ(), "STATION_TPM_VENDOR_ROOTS="+roots, "STATION_CONFIG="+l.config)
	if out, err := l.cmd("demo", "--units", "1", "--out", l.dir).CombinedOutput(); err != nil {
		t.Fatalf("station demo: %v\n%s", err, out)
	}
	return l
}

func (l *line) cmd(args ...string) *exec.Cmd {
	c := exec.Command(l.bin, args...)
	c.Env = l.env
	return c
}

func (l *line) run(args ...string) (string, string, int) {
	l.t.Helper()
	return runExit(l.t, l.cmd(args...))
}

// killAt starts provision and SIGKILLs it soon after it announces step.
// It reports whether the kill happened before the process finished.
func (l *line) killAt(serial, addr, step string, delay time.Duration, extra ...string) bool {
	l.t.Helper()
	c := l.cmd(append([]string{"provision", "--serial", serial, "--tpm", addr, "--verbose"}, extra...)...)
	stderr, err := c.StderrPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		l.t.Fatal(err)
	}
	killed := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), " step="+step) {
			time.Sleep(delay)
			killed = c.Process.Kill() == nil
			break
		}
	}
	for sc.Scan() {
	}
	c.Wait()
	return killed && c.ProcessState != nil && !c.ProcessState.Success()
}

// TestResumeAfterKill kills a real provision process as each step starts
// (and a little into it), then re-runs provision on the same swtpm: the unit
// must finish with one certificate, its escrowed lockout auth in force, a
// flashed TSS2 key file that loads as its device key, and an audit log that
// verifies.
func TestResumeAfterKill(t *testing.T) {
	vendor := swtpmVendor(t)
	for i, step := range station.Steps {
		t.Run(step, func(t *testing.T) {
			inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
			l := newLine(t, vendor)
			serial := "KILL-" + step
			unitDir := filepath.Join(l.dir, "units", serial)
			os.MkdirAll(unitDir, 0o755)
			delay := time.Duration(rand.IntN(3)) * time.Millisecond // land inside the step
			if !l.killAt(serial, inst.Addr, step, delay, "--flash", "dir:"+unitDir) {
				t.Logf("provision finished before the kill at %s+%v", step, delay)
			}
			out, errOut, code := l.run("provision", "--serial", serial, "--tpm", inst.Addr, "--flash", "dir:"+unitDir)
			if code != 0 || !strings.Contains(out, "PASS") {
				t.Fatalf("re-run after kill at %s (#%d): exit %d\n%s%s", step, i, code, out, errOut)
			}
			js, _, code := l.run("units", "show", serial, "-o", "json")
			if code != 0 {
				t.Fatalf("units show: exit %d", code)
			}
			u, err := parseUnitShow(js)
			if err != nil {
				t.Fatal(err)
			}
			if u.Status != store.StatusProvisioned || len(u.Cert) == 0 || len(u.Escrows) != 1 || u.Escrows[0].Pending {
				t.Fatalf("unit after resume: status %s, cert %d bytes, escrows %+v", u.Status, len(u.Cert), u.Escrows)
			}
			// The escrowed lockout auth is the one in force.
			tpm := l.escrowedLockoutInForce(t, u, inst.Addr)
			// The key file the device got is the key at the device key handle.
			b, err := flash.ReadFolder(filepath.Join(unitDir, flash.DirBundle))
			if err != nil {
				t.Fatalf("the unit's bundle after resume: %v", err)
			}
			k, err := tsskey.ParseDER(b.TPMKey)
			if err != nil {
				t.Fatalf("the unit's key file after a kill at %s: %v", step, err)
			}
			srk, _ := tpm.ReadPublic(tpm2.TPMHandle(u.SRKHandle))
			dev, _ := tpm.ReadPublic(tpm2.TPMHandle(u.DeviceKeyHandle))
			if loaded, err := tpm.CheckKeyBlob(srk, k.Public, k.Private); err != nil || !bytes.Equal(loaded.Name, dev.Name) || k.Parent != u.SRKHandle {
				t.Errorf("the key file after a kill at %s does not load as the device key: %v", step, err)
			}
			noTransients(t, tpm)
			tpm.Close()
			if _, errOut, code := l.run("audit", "verify"); code != 0 {
				t.Errorf("audit verify after kill at %s: exit %d: %s", step, code, errOut)
			}
		})
	}
}

// openTPM opens the TPM at addr; the caller closes it.
func openTPM(t testing.TB, addr string) *tpmops.TPM {
	t.Helper()
	tpm, err := tpmops.Open(addr)
	if err != nil {
		t.Fatal(err)
	}
	return tpm
}

// escrowedLockoutInForce opens the TPM at addr and requires the lockout
// auth escrowed in the line's record of unit u to be the one in force
// there. The caller closes the TPM.
func (l *line) escrowedLockoutInForce(t testing.TB, u *store.Unit, addr string) *tpmops.TPM {
	t.Helper()
	secret, err := station.OpenEscrow(u.Escrows[0].JWE, escrowKey(t, l.dir), u.Serial, "lockout")
	if err != nil {
		t.Fatal(err)
	}
	tpm := openTPM(t, addr)
	da, _ := tpm.DAParams()
	if err := tpm.SetDAParams(secret, da); err != nil {
		t.Errorf("the escrowed lockout auth is not the one in force: %v", err)
	}
	return tpm
}

// noTransients requires the TPM to hold no transient handle or session.
func noTransients(t testing.TB, tpm *tpmops.TPM) {
	t.Helper()
	if hs, _ := tpm.Transients(); len(hs) != 0 {
		t.Errorf("transient handles left: %v", hs)
	}
}

func escrowKey(t testing.TB, dir string) any {
	t.Helper()
	return readPKCS8(t, filepath.Join(dir, "escrow.key.pem"))
}

// readPKCS8 reads an unencrypted PKCS#8 PEM private key file.
func readPKCS8(t testing.TB, path string) any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestBatchParallel provisions a tray of swtpm units on three fixtures at
// once (the race-instrumented binary under make test): one JSON line per
// unit, all pass, and the audit log has no gaps.
func TestBatchParallel(t *testing.T) {
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	var csv strings.Builder
	csv.WriteString("serial,tpm,flash\n")
	for i := 0; i < 4; i++ {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		d := filepath.Join(l.dir, "units", fmt.Sprintf("TRAY-%d", i))
		os.MkdirAll(d, 0o700)
		fmt.Fprintf(&csv, "TRAY-%d,%s,dir:%s\n", i, inst.Addr, d)
	}
	tray := filepath.Join(t.TempDir(), "tray.csv")
	os.WriteFile(tray, []byte(csv.String()), 0o600)
	out, errOut, code := l.run("-o", "json", "provision", "--batch", tray, "--parallel", "3")
	if code != 0 {
		t.Fatalf("batch: exit %d\n%s%s", code, out, errOut)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			Serial, Result string
			ExitCode       int `json:"exit_code"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", line, err)
		}
		if r.Result != "pass" || r.ExitCode != 0 {
			t.Errorf("unit %s: %s (exit %d)", r.Serial, r.Result, r.ExitCode)
		}
		seen[r.Serial] = true
	}
	if len(seen) != 4 {
		t.Fatalf("%d units reported, want 4:\n%s", len(seen), out)
	}
	if !strings.Contains(errOut, "4 passed, 0 failed") {
		t.Errorf("no batch summary on stderr: %s", errOut)
	}
	if _, errOut, code := l.run("audit", "verify"); code != 0 {
		t.Errorf("audit verify after a parallel batch: exit %d: %s", code, errOut)
	}
}

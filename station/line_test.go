package station

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// testLine is a whole station made for one test: the demo's throwaway PKI,
// vendor CA, escrow key and firmware, initialized and ready to provision.
type testLine struct {
	t      testing.TB
	dir    string
	cfg    *configs.Config
	env    *Env
	prov   *Provisioner
	vendor *demoVendor
}

func newTestLine(t testing.TB, mutate func(*configs.Config)) *testLine {
	t.Helper()
	dir := t.TempDir()
	cfg, vendor, err := demoSetup(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Station.ID = "test-station"
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(cfg, "test"); err != nil {
		t.Fatal(err)
	}
	env, err := OpenEnv(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Close() })
	l := &testLine{t: t, dir: dir, cfg: cfg, env: env, vendor: vendor}
	l.prov, err = NewProvisioner(env, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.prov.Close() })
	return l
}

// trustSwtpm makes the swtpm test CA the line's TPM vendor.
func trustSwtpm(t testing.TB, ca *swtpmtest.CA) func(*configs.Config) {
	return func(cfg *configs.Config) {
		d := filepath.Join(t.TempDir(), "vendor-roots")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "root.pem"), ca.RootPEM, 0o644)
		os.WriteFile(filepath.Join(d, "issuer.pem"), ca.IssuerPEM, 0o644)
		cfg.TPM.VendorRoots = d
	}
}

// x509OwnerEscrow configures x509 attestation with the owner auth set and
// escrowed (allowed with x509 only), registration IDs "l1-SERIAL", and the
// swtpm vendor ca trusted.
func x509OwnerEscrow(t testing.TB, ca *swtpmtest.CA) func(*configs.Config) {
	return func(c *configs.Config) {
		trustSwtpm(t, ca)(c)
		c.DPS.Attestation, c.DPS.RegistrationID = "x509", "{line}-{serial}"
		c.DPS.Line = "l1"
		c.Ownership.OwnerAuth = "escrow"
	}
}

// simUnit opens a simulated TPM manufactured by the line's demo vendor.
// Only one simulator can be open in a process: close it before the next.
func (l *testLine) simUnit() *tpmops.TPM {
	l.t.Helper()
	return l.simUnitWrapped(nil)
}

// simUnitWrapped is simUnit with wrap around the simulator's connection
// (tpmops.OpenWrapped), e.g. a latency model.
func (l *testLine) simUnitWrapped(wrap func(transport.TPM) transport.TPM) *tpmops.TPM {
	l.t.Helper()
	tpm, err := tpmops.OpenWrapped("sim", wrap)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { tpm.Close() })
	alg := tpmops.Alg(l.cfg.TPM.EK)
	ek, _, err := tpm.EnsureEK(alg, nil)
	if err != nil {
		l.t.Fatal(err)
	}
	der, err := l.vendor.ekCert(ek.Pub, "test")
	if err != nil {
		l.t.Fatal(err)
	}
	if err := tpm.ProvisionEKCert(alg, der); err != nil {
		l.t.Fatal(err)
	}
	return tpm
}

func (l *testLine) provision(req Request) (*Result, error) {
	l.t.Helper()
	if req.FlashSpec == "" {
		d := filepath.Join(l.dir, "units", req.Serial)
		if err := os.MkdirAll(d, 0o700); err != nil {
			l.t.Fatal(err)
		}
		req.FlashSpec = "dir:" + d
	}
	return l.prov.Provision(context.Background(), req)
}

// unit returns the recorded unit, or nil.
func (l *testLine) unit(serial string) *store.Unit {
	l.t.Helper()
	var u *store.Unit
	l.env.DB.View(func(tx *bolt.Tx) error {
		u, _ = store.GetUnit(tx, serial)
		return nil
	})
	return u
}

func (l *testLine) escrowKey() crypto.PrivateKey {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join(l.dir, "escrow.key.pem"))
	if err != nil {
		l.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		l.t.Fatal(err)
	}
	return k
}

// escrowed decrypts the unit's escrowed auth for hierarchy.
func (l *testLine) escrowed(u *store.Unit, hierarchy string) []byte {
	l.t.Helper()
	e := escrowOf(u, hierarchy)
	if e == nil {
		l.t.Fatalf("unit %s has no %s escrow", u.Serial, hierarchy)
	}
	if e.Pending {
		l.t.Fatalf("unit %s: %s escrow still pending after provisioning", u.Serial, hierarchy)
	}
	secret, err := OpenEscrow(e.JWE, l.escrowKey(), u.Serial, hierarchy)
	if err != nil {
		l.t.Fatal(err)
	}
	return secret
}

// noLeaks fails the test if the TPM holds transient objects or sessions.
func noLeaks(t testing.TB, tpm *tpmops.TPM) {
	t.Helper()
	hs, err := tpm.Transients()
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 0 {
		t.Fatalf("TPM left with transient handles/sessions %v", hs)
	}
}

// tpm2tools runs a tpm2-tools command against a swtpm and returns stdout.
// swtpm serves one client at a time: close any tpmops connection first.
func tpm2tools(t testing.TB, inst *swtpmtest.Instance, name string, args ...string) string {
	t.Helper()
	host, port := swtpmHostPort(t, inst)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, append(args, "-T", "swtpm:host="+host+",port="+port)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return string(out)
}

func swtpmHostPort(t testing.TB, inst *swtpmtest.Instance) (string, string) {
	t.Helper()
	hp := inst.Addr[len("swtpm://"):]
	for i := len(hp) - 1; i >= 0; i-- {
		if hp[i] == ':' {
			return hp[:i], hp[i+1:]
		}
	}
	t.Fatalf("bad swtpm address %q", inst.Addr)
	return "", ""
}

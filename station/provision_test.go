package station

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// checkUnit asserts everything provisioning promises about a finished unit,
// reading the TPM itself rather than trusting the record.
func checkUnit(t *testing.T, l *testLine, u *store.Unit, tpm *tpmops.TPM) {
	t.Helper()
	if u == nil || u.Status != store.StatusProvisioned {
		t.Fatalf("unit not provisioned: %+v", u)
	}
	if want := enroll.RegistrationID(u.EKPublic); u.RegistrationID != want && u.Attestation == "tpm" {
		t.Errorf("registration ID %s, want the EK-derived %s", u.RegistrationID, want)
	}
	for _, h := range []struct {
		name   string
		handle uint32
		want   []byte
	}{
		{"EK", 0x81010001, u.EKPublic},
		{"SRK", u.SRKHandle, u.SRKPublic},
		{"device key", uint32(l.cfg.TPM.DeviceKeyHandle), u.DeviceKeyPublic},
	} {
		k, err := tpm.ReadPublic(tpmops.Handle(h.handle))
		if err != nil {
			t.Fatalf("%s at 0x%08x: %v", h.name, h.handle, err)
		}
		if !bytes.Equal(k.Public, h.want) {
			t.Errorf("%s at 0x%08x differs from the record", h.name, h.handle)
		}
	}
	if u.SRKHandle != 0x81000001 {
		t.Errorf("SRK at 0x%08x, want 0x81000001", u.SRKHandle)
	}

	// The leaf: chains to the pinned root, CN = registration ID, clientAuth,
	// certifies the TPM-resident key, lives through the warehouse period.
	leaf, err := x509.ParseCertificate(u.Cert)
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	rootPEM, _ := os.ReadFile(l.cfg.File(configs.KeyRoot))
	roots.AppendCertsFromPEM(rootPEM)
	for _, d := range u.Chain {
		c, _ := x509.ParseCertificate(d)
		inters.AddCert(c)
	}
	for _, at := range []time.Time{time.Now(), time.Now().Add(l.cfg.PKI.Warehouse.D())} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("leaf does not verify at %s: %v", at, err)
		}
	}
	if leaf.Subject.CommonName != u.RegistrationID {
		t.Errorf("CN %q, want %q", leaf.Subject.CommonName, u.RegistrationID)
	}
	dev, _ := tpm.ReadPublic(tpmops.Handle(l.cfg.TPM.DeviceKeyHandle))
	if !leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(dev.Pub) {
		t.Error("the leaf does not certify the key in the TPM")
	}

	// Ownership as the policy says, and the escrowed lockout auth is the
	// one in force: the DA parameters can be set with it.
	perm, err := tpm.Permanent()
	if err != nil {
		t.Fatal(err)
	}
	wantOwner := l.cfg.Ownership.OwnerAuth == "escrow"
	if !perm.LockoutAuthSet || perm.EndorsementAuthSet || perm.OwnerAuthSet != wantOwner {
		t.Errorf("after provisioning: %+v (want lockout set, endorsement empty, owner set=%v)", perm, wantOwner)
	}
	da := tpmops.DAParams{MaxTries: l.cfg.Ownership.DAMaxTries, RecoverySeconds: l.cfg.Ownership.DARecoverySeconds, LockoutRecoverySeconds: l.cfg.Ownership.DALockoutRecoverySeconds}
	if got, err := tpm.DAParams(); err != nil || got != da {
		t.Errorf("DA parameters %+v (%v), want %+v", got, err, da)
	}
	if err := tpm.SetDAParams(l.escrowed(u, "lockout"), da); err != nil {
		t.Errorf("the escrowed lockout auth does not work: %v", err)
	}
	if wantOwner {
		owner := l.escrowed(u, "owner")
		srk, _ := tpm.ReadPublic(0x81000001)
		if err := tpm.ChangeAuth(tpmops.Owner, owner, owner, srk); err != nil {
			t.Errorf("the escrowed owner auth does not work: %v", err)
		}
	} else if escrowOf(u, "owner") != nil {
		t.Error("an owner escrow exists although owner_auth is empty")
	}
	noLeaks(t, tpm)
}

func TestProvisionSimulator(t *testing.T) {
	l := newTestLine(t, nil)
	tpm := l.simUnit()
	res, err := l.provision(Request{Serial: "SIM-0001", TPM: tpm, TPMAddr: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Result != ResultPass || len(res.RegistrationID) != 52 {
		t.Fatalf("result %+v", res)
	}
	for _, s := range Steps {
		if _, ok := res.StepsMs[s]; !ok {
			t.Errorf("no timing for step %s", s)
		}
	}
	u := l.unit("SIM-0001")
	checkUnit(t, l, u, tpm)

	// A second run on the finished unit reports it and changes nothing.
	before, _ := json.Marshal(u)
	res, err = l.provision(Request{Serial: "SIM-0001", TPM: tpm, TPMAddr: "sim"})
	if err != nil || res.Result != ResultAlready {
		t.Fatalf("re-run: %+v, %v", res, err)
	}
	after, _ := json.Marshal(l.unit("SIM-0001"))
	if !bytes.Equal(before, after) {
		t.Error("re-running provision on a finished unit changed its record")
	}
	noLeaks(t, tpm)
}

func TestProvisionSwtpm(t *testing.T) {
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	l := newTestLine(t, trustSwtpm(t, inst.CA))
	res, err := l.provision(Request{Serial: "SW-0001", TPMAddr: inst.Addr})
	if err != nil {
		t.Fatal(err)
	}
	u := l.unit("SW-0001")
	t.Logf("swtpm unit: %.0f ms total, %.0f ms in TPM commands, steps %v", res.TotalMs, res.TPMMs, res.StepsMs)
	tpm, err := tpmops.Open(inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	checkUnit(t, l, u, tpm)
	tpm.Close()

	// tpm2-tools reads the same keys at the standard handles.
	for _, h := range []struct {
		handle string
		want   []byte
	}{{"0x81010001", u.EKPublic}, {"0x81000001", u.SRKPublic}, {"0x81000010", u.DeviceKeyPublic}} {
		f := filepath.Join(t.TempDir(), "pub")
		tpm2tools(t, inst, "tpm2_readpublic", "-c", h.handle, "-o", f)
		got, _ := os.ReadFile(f)
		if !bytes.Equal(got, h.want) {
			t.Errorf("tpm2_readpublic %s: %x, want the recorded %x", h.handle, got, h.want)
		}
	}
	// The DPS endorsementKey is that same TPM2B_PUBLIC.
	if enroll.RegistrationID(u.EKPublic) != u.RegistrationID {
		t.Error("registration ID is not derived from the EK tpm2-tools reads")
	}
	props := tpm2tools(t, inst, "tpm2_getcap", "properties-variable")
	for name, want := range map[string]string{"ownerAuthSet": "0", "endorsementAuthSet": "0", "lockoutAuthSet": "1"} {
		m := regexp.MustCompile(name + `:\s+(\d)`).FindStringSubmatch(props)
		if m == nil || m[1] != want {
			t.Errorf("tpm2_getcap: %s = %v, want %s", name, m, want)
		}
	}
	// openssl accepts the leaf against the root and chain.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "leaf.pem"), pemCerts(u.Cert), 0o644)
	os.WriteFile(filepath.Join(dir, "chain.pem"), pemCerts(u.Chain...), 0o644)
	out, err := exec.Command("openssl", "verify", "-purpose", "sslclient", "-CAfile", l.cfg.File(configs.KeyRoot),
		"-untrusted", filepath.Join(dir, "chain.pem"), filepath.Join(dir, "leaf.pem")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ": OK") {
		t.Errorf("openssl verify: %v\n%s", err, out)
	}
}

func TestProvisionOwnerEscrow(t *testing.T) {
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	l := newTestLine(t, x509OwnerEscrow(t, inst.CA))
	if _, err := l.provision(Request{Serial: "X-0001", TPMAddr: inst.Addr}); err != nil {
		t.Fatal(err)
	}
	u := l.unit("X-0001")
	if u.RegistrationID != "l1-x-0001" {
		t.Errorf("registration ID %q, want l1-x-0001", u.RegistrationID)
	}
	tpm, err := tpmops.Open(inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	checkUnit(t, l, u, tpm)
	tpm.Close()
	if m := regexp.MustCompile(`ownerAuthSet:\s+(\d)`).FindStringSubmatch(tpm2tools(t, inst, "tpm2_getcap", "properties-variable")); m == nil || m[1] != "1" {
		t.Errorf("tpm2_getcap ownerAuthSet = %v, want 1", m)
	}
}

// Each refusal: the documented sentinel (exit 3 in cmd), and no unit
// recorded as done.
func TestProvisionRefusals(t *testing.T) {
	otherVendor := swtpmtest.NewCA(t)
	tests := []struct {
		name    string
		opts    swtpmtest.Options
		mutate  func(*configs.Config)
		prepare func(t *testing.T, inst *swtpmtest.Instance)
		want    error
	}{
		{name: "EK certificate from an untrusted vendor", opts: swtpmtest.Options{VendorCA: otherVendor}, want: tpmops.ErrUntrustedEKCert},
		{name: "EK certificate whose issuing CA is not in the roots folder", mutate: func(c *configs.Config) {
			if err := os.Remove(filepath.Join(c.TPM.VendorRoots, "issuer.pem")); err != nil {
				panic(err)
			}
		}, want: tpmops.ErrUntrustedEKCert},
		{name: "no EK certificate", opts: swtpmtest.Options{NoEKCert: true}, want: tpmops.ErrNoEKCert},
		{name: "foreign key at the EK handle", opts: swtpmtest.Options{Blank: true},
			mutate: func(c *configs.Config) { c.TPM.RequireEKCert = false },
			prepare: func(t *testing.T, inst *swtpmtest.Instance) {
				ctx := filepath.Join(t.TempDir(), "k.ctx")
				tpm2tools(t, inst, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", ctx)
				tpm2tools(t, inst, "tpm2_evictcontrol", "-C", "o", "-c", ctx, "0x81010001")
				tpm2tools(t, inst, "tpm2_flushcontext", "-t")
			}, want: tpmops.ErrEKMismatch},
		{name: "owner auth set by someone else", prepare: func(t *testing.T, inst *swtpmtest.Instance) {
			tpm2tools(t, inst, "tpm2_changeauth", "-c", "owner", "someone-else")
		}, want: ErrOwnedElsewhere},
		{name: "lockout auth set by someone else", prepare: func(t *testing.T, inst *swtpmtest.Instance) {
			tpm2tools(t, inst, "tpm2_changeauth", "-c", "lockout", "someone-else")
		}, want: ErrOwnedElsewhere},
		{name: "endorsement auth set by someone else", prepare: func(t *testing.T, inst *swtpmtest.Instance) {
			tpm2tools(t, inst, "tpm2_changeauth", "-c", "endorsement", "someone-else")
		}, want: ErrOwnedElsewhere},
		{name: "foreign key at the device key handle", prepare: func(t *testing.T, inst *swtpmtest.Instance) {
			ctx := filepath.Join(t.TempDir(), "k.ctx")
			tpm2tools(t, inst, "tpm2_createprimary", "-C", "o", "-G", "ecc", "-c", ctx)
			tpm2tools(t, inst, "tpm2_evictcontrol", "-C", "o", "-c", ctx, "0x81000010")
			tpm2tools(t, inst, "tpm2_flushcontext", "-t")
		}, want: tpmops.ErrForeignKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inst := swtpmtest.Start(t, tc.opts)
			l := newTestLine(t, func(c *configs.Config) {
				trustSwtpm(t, swtpmtest.Start(t, swtpmtest.Options{}).CA)(c) // the shared test vendor
				if tc.mutate != nil {
					tc.mutate(c)
				}
			})
			if tc.prepare != nil {
				tc.prepare(t, inst)
			}
			res, err := l.provision(Request{Serial: "REF-1", TPMAddr: inst.Addr})
			if !errors.Is(err, tc.want) {
				t.Fatalf("provision = %v, want %v", err, tc.want)
			}
			var se *StepError
			if !errors.As(err, &se) || se.Serial != "REF-1" || hint.Of(err) == "" || res.FailedStep == "" {
				t.Errorf("error %v does not name the unit, the step and a hint", err)
			}
			if u := l.unit("REF-1"); u != nil && u.Status == store.StatusProvisioned {
				t.Error("a refused unit was recorded as provisioned")
			}
			tpm, err := tpmops.Open(inst.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer tpm.Close()
			noLeaks(t, tpm)
			if errors.Is(tc.want, tpmops.ErrEKMismatch) {
				k, err := tpm.ReadPublic(0x81010001)
				if err != nil || k.Pub == nil {
					t.Errorf("the foreign key at 0x81010001 is gone: %v", err)
				}
			}
		})
	}
}

func TestDuplicateEKRefused(t *testing.T) {
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	l := newTestLine(t, trustSwtpm(t, inst.CA))
	if _, err := l.provision(Request{Serial: "DUP-A", TPMAddr: inst.Addr}); err != nil {
		t.Fatal(err)
	}
	_, err := l.provision(Request{Serial: "DUP-B", TPMAddr: inst.Addr})
	if !errors.Is(err, ErrDuplicateEK) || !strings.Contains(err.Error(), "DUP-A") {
		t.Fatalf("second serial on the same TPM: %v, want ErrDuplicateEK naming DUP-A", err)
	}
	if l.unit("DUP-B") != nil {
		t.Error("the duplicate unit was recorded")
	}
}

func TestWrongFirmwareRefused(t *testing.T) {
	dir := t.TempDir()
	cfg, _, err := demoSetup(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Firmware.SHA256 = strings.Repeat("ab", 32)
	if _, err := Init(cfg, "test"); err != nil {
		t.Fatal(err)
	}
	env, err := OpenEnv(cfg, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if _, err := NewProvisioner(env, os.Getenv); !errors.Is(err, flash.ErrFirmwareMismatch) {
		t.Fatalf("NewProvisioner with a wrong firmware hash = %v, want ErrFirmwareMismatch", err)
	}
}

func TestDemo(t *testing.T) {
	rep, err := Demo(context.Background(), DemoOptions{Units: 3, Dir: t.TempDir(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range rep.Results {
		if r.Result != ResultPass {
			t.Errorf("demo unit %s: %s at %s: %s", r.Serial, r.Result, r.FailedStep, r.Error)
		}
		ids[r.RegistrationID] = true
		if vr := rep.Verified[r.Serial]; vr == nil || !vr.Passed {
			t.Errorf("demo unit %s does not pass station verify: %+v", r.Serial, vr)
		}
	}
	if len(ids) != 3 {
		t.Errorf("demo units share registration IDs: %v", ids)
	}
}

func TestIssuanceCeiling(t *testing.T) {
	l := newTestLine(t, func(c *configs.Config) { c.PKI.MaxIssued = 1 })
	first := l.simUnit()
	if _, err := l.provision(Request{Serial: "CEIL-1", TPM: first, TPMAddr: "sim"}); err != nil {
		t.Fatal(err)
	}
	first.Close() // one simulator at a time
	tpm := l.simUnit()
	_, err := l.provision(Request{Serial: "CEIL-2", TPM: tpm, TPMAddr: "sim"})
	if !errors.Is(err, certgen.ErrPolicy) {
		t.Fatalf("second certificate under max_issued 1: %v, want certgen.ErrPolicy", err)
	}
	if u := l.unit("CEIL-2"); u == nil || u.Status != store.StatusInProgress || len(u.Cert) != 0 {
		t.Fatalf("refused unit recorded as %+v", u)
	}
	noLeaks(t, tpm)
}

// Parallel fixtures cannot all slip under the ceiling: with max_issued 2,
// three units provisioned at once get exactly two certificates.
func TestIssuanceCeilingParallel(t *testing.T) {
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newTestLine(t, func(c *configs.Config) {
		trustSwtpm(t, vendor)(c)
		c.PKI.MaxIssued = 2
	})
	insts := make([]*swtpmtest.Instance, 3)
	for i := range insts {
		insts[i] = swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	}
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for i, inst := range insts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = l.provision(Request{Serial: fmt.Sprintf("PAR-%d", i), TPMAddr: inst.Addr})
		}()
	}
	wg.Wait()
	passed := 0
	for i, err := range errs {
		switch {
		case err == nil:
			passed++
		case !errors.Is(err, certgen.ErrPolicy):
			t.Errorf("PAR-%d: %v, want a ceiling refusal", i, err)
		}
	}
	if passed != 2 {
		t.Fatalf("%d certificates issued under max_issued 2", passed)
	}
}

// A recorded serial on another TPM is a duplicate serial (exit 3), whether
// the unit is finished or half-done, and the other TPM is not changed.
func TestSerialOnAnotherTPM(t *testing.T) {
	a := swtpmtest.Start(t, swtpmtest.Options{})
	l := newTestLine(t, trustSwtpm(t, a.CA))
	b := swtpmtest.Start(t, swtpmtest.Options{VendorCA: a.CA})
	if _, err := l.provision(Request{Serial: "SER-1", TPMAddr: a.Addr}); err != nil {
		t.Fatal(err)
	}
	// SER-2, on its own TPM, stops at the flash step: its storage is not mounted.
	c := swtpmtest.Start(t, swtpmtest.Options{VendorCA: a.CA})
	if _, err := l.provision(Request{Serial: "SER-2", TPMAddr: c.Addr, FlashSpec: "dir:" + filepath.Join(l.dir, "absent")}); err == nil {
		t.Fatal("flash to an absent folder passed")
	}
	if u := l.unit("SER-2"); u == nil || !u.StepDone(StepCertificate) || u.StepDone(StepFlash) {
		t.Fatalf("SER-2 should be recorded half-done: %+v", u)
	}
	for _, serial := range []string{"SER-1", "SER-2"} {
		if _, err := l.provision(Request{Serial: serial, TPMAddr: b.Addr}); !errors.Is(err, ErrSerialOtherTPM) {
			t.Errorf("%s on another TPM: %v, want ErrSerialOtherTPM", serial, err)
		}
	}
	tpm, err := tpmops.Open(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	if p, err := tpm.Permanent(); err != nil || p.LockoutAuthSet {
		t.Errorf("the other TPM was changed: %+v %v", p, err)
	}
	if _, err := tpm.ReadPublic(0x81000010); !errors.Is(err, tpmops.ErrHandleEmpty) {
		t.Errorf("a device key was made on the other TPM: %v", err)
	}
}

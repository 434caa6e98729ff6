package station

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// verifyUnit is one provisioned unit on its own swtpm.
type verifyUnit struct {
	l     *testLine
	inst  *swtpmtest.Instance
	u     *store.Unit
	flash string // the unit's flash folder
}

func (l *testLine) provisionSwtpm(t *testing.T, serial string) *verifyUnit {
	t.Helper()
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	dir := filepath.Join(l.dir, "units", serial)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.provision(Request{Serial: serial, TPMAddr: inst.Addr, FlashSpec: "dir:" + dir}); err != nil {
		t.Fatalf("provisioning %s: %v", serial, err)
	}
	u := l.unit(serial)
	if u.FlashTarget != "dir:"+dir {
		t.Fatalf("unit %s flashed to %q, want dir:%s", serial, u.FlashTarget, dir)
	}
	return &verifyUnit{l: l, inst: inst, u: u, flash: dir}
}

// tool runs a tpm2-tools command on the unit's TPM, in a scratch folder.
func (v *verifyUnit) tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	return tpm2tools(t, v.inst, name, args...)
}

// flushTools flushes what tpm2-tools leave loaded (swtpm has no resource
// manager), so that only the intended breakage remains.
func (v *verifyUnit) flushTools(t *testing.T) {
	t.Helper()
	v.tool(t, "tpm2_flushcontext", "-t")
	v.tool(t, "tpm2_flushcontext", "-s")
}

// dpsHandle returns the TPM2B_PUBLIC at 0x81000100, nil when empty.
// replacePrimary evicts the key at the persistent handle and persists
// there, as another tool would, a fresh RSA primary of hierarchy ("e" for
// endorsement, "o" for owner) that station did not make.
func (v *verifyUnit) replacePrimary(t *testing.T, hierarchy, handle string) {
	t.Helper()
	v.tool(t, "tpm2_evictcontrol", "-C", "o", "-c", handle)
	ctx := filepath.Join(t.TempDir(), "primary.ctx")
	v.tool(t, "tpm2_createprimary", "-C", hierarchy, "-G", "rsa2048", "-c", ctx)
	v.tool(t, "tpm2_evictcontrol", "-C", "o", "-c", ctx, handle)
	v.flushTools(t)
}

func (v *verifyUnit) dpsHandle(t *testing.T) []byte {
	t.Helper()
	tpm, err := tpmops.Open(v.inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm.Close()
	k, err := tpm.ReadPublic(tpmops.DPSKeyHandle)
	if errors.Is(err, tpmops.ErrHandleEmpty) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return k.Public
}

func (v *verifyUnit) verify(t *testing.T) (*VerifyReport, error) {
	t.Helper()
	rep, err := Verify(context.Background(), v.l.env, VerifyRequest{Serial: v.u.Serial, TPM: v.inst.Addr})
	if rep == nil {
		t.Fatalf("Verify(%s) gave no report: %v", v.u.Serial, err)
	}
	return rep, err
}

// foreignEKCert is an EK certificate for pub from a CA no vendor root
// knows: the unit's TPM looks as if it came from another vendor.
func foreignEKCert(t *testing.T, pub any) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Other TPM Vendor EK CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(8),
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(20 * 365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, pub, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// replaceEKCert writes der as the RSA EK certificate (NV 0x01c00002) with
// tpm2-tools, in the platform hierarchy as the TPM vendor does.
func (v *verifyUnit) replaceEKCert(t *testing.T, der []byte) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ek.der")
	if err := os.WriteFile(f, der, 0o600); err != nil {
		t.Fatal(err)
	}
	v.tool(t, "tpm2_nvundefine", "-C", "p", "0x01c00002")
	v.tool(t, "tpm2_nvdefine", "-C", "p", "-s", strconv.Itoa(len(der)),
		"-a", "ppwrite|ppread|ownerread|authread|no_da|platformcreate", "0x01c00002")
	v.tool(t, "tpm2_nvwrite", "-C", "p", "-i", f, "0x01c00002")
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.RemoveAll(to); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyBreaks makes one unit per failure mode on swtpm by breaking a
// good unit with tpm2-tools, by editing its flash folder or its record, and
// requires exactly the expected checks to fail. Some breakages fail more
// than one check because the field would fail there too (a unit whose EK
// was swapped also fails DPS attestation; one whose owner auth was set
// cannot persist the DPS key).
func TestVerifyBreaks(t *testing.T) {
	first := swtpmtest.Start(t, swtpmtest.Options{})
	l := newTestLine(t, trustSwtpm(t, first.CA))
	otherUnit := l.provisionSwtpm(t, "V-OTHER")

	tests := []struct {
		name string
		brk  func(t *testing.T, v *verifyUnit)
		want []string
	}{
		{"good unit", nil, nil},
		{"EK swapped by a foreign key at 0x81010001", func(t *testing.T, v *verifyUnit) {
			v.replacePrimary(t, "e", "0x81010001")
		}, []string{CheckEK, CheckDPS}},
		{"SRK evicted and replaced", func(t *testing.T, v *verifyUnit) {
			v.replacePrimary(t, "o", "0x81000001")
		}, []string{CheckSRK}},
		{"device key evicted", func(t *testing.T, v *verifyUnit) {
			v.tool(t, "tpm2_evictcontrol", "-C", "o", "-c", "0x81000010")
		}, []string{CheckDeviceKey}},
		{"device key replaced by another key under the SRK", func(t *testing.T, v *verifyUnit) {
			d := t.TempDir()
			v.tool(t, "tpm2_evictcontrol", "-C", "o", "-c", "0x81000010")
			v.tool(t, "tpm2_create", "-C", "0x81000001", "-G", "ecc256", "-u", filepath.Join(d, "k.pub"), "-r", filepath.Join(d, "k.priv"))
			v.tool(t, "tpm2_load", "-C", "0x81000001", "-u", filepath.Join(d, "k.pub"), "-r", filepath.Join(d, "k.priv"), "-c", filepath.Join(d, "k.ctx"))
			v.tool(t, "tpm2_evictcontrol", "-C", "o", "-c", filepath.Join(d, "k.ctx"), "0x81000010")
			v.flushTools(t)
		}, []string{CheckDeviceKey}},
		{"endorsement auth set", func(t *testing.T, v *verifyUnit) {
			v.tool(t, "tpm2_changeauth", "-c", "e", "not-empty")
		}, []string{CheckOwnership, CheckDPS}}, // the EK is still proven by reading: its vendor certificate
		{"lockout auth cleared", func(t *testing.T, v *verifyUnit) {
			old := v.l.escrowed(v.u, "lockout")
			v.tool(t, "tpm2_changeauth", "-c", "l", "-p", "hex:"+hex.EncodeToString(old))
		}, []string{CheckOwnership}},
		{"owner auth set behind station's back", func(t *testing.T, v *verifyUnit) {
			v.tool(t, "tpm2_changeauth", "-c", "o", "not-the-policy")
		}, []string{CheckOwnership, CheckDPS}},
		{"certificate of another unit flashed", func(t *testing.T, v *verifyUnit) {
			copyDir(t, otherUnit.flash, v.flash)
		}, []string{CheckCertificate, CheckFlash}},
		{"firmware byte flipped", func(t *testing.T, v *verifyUnit) {
			p := filepath.Join(v.flash, flash.DirFirmware)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b[len(b)/2] ^= 0x01
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, []string{CheckFlash}},
		{"unit revoked", func(t *testing.T, v *verifyUnit) {
			err := v.l.env.DB.Update(func(tx *bolt.Tx) error {
				_, _, err := enroll.RevokeUnit(tx, v.u.Serial, enroll.NewRevocation("key compromise", "qa", time.Now()))
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}, []string{CheckCertificate}},
		{"TPM from another vendor CA", func(t *testing.T, v *verifyUnit) {
			pub, err := tpmops.PublicKey(v.u.EKPublic)
			if err != nil {
				t.Fatal(err)
			}
			v.replaceEKCert(t, foreignEKCert(t, pub))
		}, []string{CheckEKCert}},
		{"0x81000100 already holds a key (verify leaves it and persists elsewhere)", func(t *testing.T, v *verifyUnit) {
			ctx := filepath.Join(t.TempDir(), "dps.ctx")
			v.tool(t, "tpm2_createprimary", "-C", "o", "-G", "ecc256", "-c", ctx)
			v.tool(t, "tpm2_evictcontrol", "-C", "o", "-c", ctx, "0x81000100")
			v.flushTools(t)
		}, nil},
		// A transient a killed client left on a TPM without a resource
		// manager: verify flushes it first (and says so), then passes.
		{"transient object left in the TPM", func(t *testing.T, v *verifyUnit) {
			v.tool(t, "tpm2_createprimary", "-C", "o", "-G", "ecc256", "-c", filepath.Join(t.TempDir(), "left.ctx"))
		}, nil},
		// Last: it revokes the line intermediate every unit here chains to.
		{"issuing intermediate revoked", func(t *testing.T, v *verifyUnit) {
			line, err := certgen.ReadCertificate(l.cfg.Path(l.cfg.PKI.IssuerCert))
			if err != nil {
				t.Fatal(err)
			}
			err = l.env.DB.Update(func(tx *bolt.Tx) error {
				return store.RevokeCA(tx, certgen.Fingerprint(line), enroll.NewRevocation("line CA key leaked", "qa", time.Now()))
			})
			if err != nil {
				t.Fatal(err)
			}
		}, []string{CheckCertificate}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := l.provisionSwtpm(t, fmt.Sprintf("V-%04d", i))
			if tc.brk != nil {
				tc.brk(t, v)
			}
			before := v.dpsHandle(t)
			start := time.Now()
			rep, err := v.verify(t)
			t.Logf("verify: %v, %v", time.Since(start).Round(time.Millisecond), err)
			for _, c := range rep.Checks {
				t.Logf("  %-15s %-5v %s", c.Name, c.Passed, c.Detail)
			}
			got := rep.Failed()
			want := slices.Clone(tc.want)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("failed checks %v, want %v", got, want)
			}
			if len(rep.Checks) != len(VerifyChecks) {
				t.Errorf("%d checks reported, want %d", len(rep.Checks), len(VerifyChecks))
			}
			if rep.Passed != (len(tc.want) == 0) {
				t.Errorf("Passed = %v", rep.Passed)
			}
			switch {
			case len(tc.want) == 0 && err != nil:
				t.Errorf("Verify error %v for a good unit", err)
			case len(tc.want) > 0 && !errors.Is(err, ErrVerifyFailed):
				t.Errorf("Verify error %v, want ErrVerifyFailed", err)
			}
			// Verify changed nothing: 0x81000100 holds what it held before,
			// nothing transient is left (but what the breakage left).
			if after := v.dpsHandle(t); !bytes.Equal(after, before) {
				t.Errorf("0x81000100 holds %x after verify, %x before", after, before)
			}
			if cleaned := strings.Join(rep.Cleanup, "; "); strings.Contains(tc.name, "transient object left") != strings.Contains(cleaned, "flushed 1 transient") {
				t.Errorf("cleanup %q", cleaned)
			}
			if !slices.Contains(tc.want, CheckNoLeaks) {
				tpm, err := tpmops.Open(v.inst.Addr)
				if err != nil {
					t.Fatal(err)
				}
				noLeaks(t, tpm)
				tpm.Close()
			}
			// Every verify result is an audit record.
			checkVerifyAudited(t, l, v.u.Serial, rep)
		})
	}
}

// checkVerifyAudited finds the unit's last verify record and compares it
// with the report.
func checkVerifyAudited(t *testing.T, l *testLine, serial string, rep *VerifyReport) {
	t.Helper()
	proof, err := l.env.Log.Proof(serial)
	if err != nil {
		t.Fatal(err)
	}
	var p audit.UnitProof
	if err := json.Unmarshal(proof, &p); err != nil {
		t.Fatal(err)
	}
	var found *audit.Record
	for _, pr := range p.Records {
		r, err := audit.Parse([]byte(pr.Record))
		if err != nil {
			t.Fatal(err)
		}
		if r.Event == audit.EventVerify {
			found = r
		}
	}
	if found == nil {
		t.Fatal("no verify record in the audit log")
	}
	if !bytes.Contains(found.Payload, []byte(fmt.Sprintf(`"passed":%v`, rep.Passed))) {
		t.Errorf("audit payload %s does not carry the verdict", found.Payload)
	}
}

func TestVerifyUnknownUnit(t *testing.T) {
	l := newTestLine(t, nil)
	rep, err := Verify(context.Background(), l.env, VerifyRequest{Serial: "NOPE-1", TPM: "swtpm://127.0.0.1:1"})
	if !errors.Is(err, ErrVerifyFailed) {
		t.Fatalf("Verify = %v, want ErrVerifyFailed", err)
	}
	if rep.Passed || len(rep.Checks) != len(VerifyChecks) || len(rep.Failed()) != len(VerifyChecks) {
		t.Fatalf("report %+v: want every check failed", rep)
	}
	checkVerifyAudited(t, l, "NOPE-1", rep)
}

func TestVerifyTPMUnreachable(t *testing.T) {
	l := newTestLine(t, trustSwtpm(t, swtpmtest.Start(t, swtpmtest.Options{}).CA))
	v := l.provisionSwtpm(t, "U-1")
	v.inst.Stop()
	_, err := Verify(context.Background(), l.env, VerifyRequest{Serial: "U-1", TPM: v.inst.Addr})
	if !errors.Is(err, tpmops.ErrUnreachable) {
		t.Fatalf("Verify = %v, want ErrUnreachable", err)
	}
}

// TestVerifySimulator verifies a unit made on the in-process simulator
// (station demo's TPMs), through the open TPM.
func TestVerifySimulator(t *testing.T) {
	l := newTestLine(t, nil)
	tpm := l.simUnit()
	dir := filepath.Join(l.dir, "units", "SIM-1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.provision(Request{Serial: "SIM-1", TPM: tpm, TPMAddr: "sim", FlashSpec: "dir:" + dir}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), l.env, VerifyRequest{Serial: "SIM-1", Device: tpm})
	if err != nil {
		for _, c := range rep.Checks {
			t.Logf("%s %v %s", c.Name, c.Passed, c.Detail)
		}
		t.Fatal(err)
	}
	noLeaks(t, tpm)
	if _, err := tpm.ReadPublic(tpmops.DPSKeyHandle); !errors.Is(err, tpmops.ErrHandleEmpty) {
		t.Errorf("0x81000100 after verify: %v, want empty", err)
	}

	// An interrupted verify is no pass: the checks it did not run fail.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err = Verify(ctx, l.env, VerifyRequest{Serial: "SIM-1", Device: tpm})
	if !errors.Is(err, ErrVerifyFailed) || rep.Passed || len(rep.Failed()) != len(VerifyChecks) {
		t.Fatalf("cancelled verify: %v, failed %v", err, rep.Failed())
	}
}

// TestVerifyOwnerEscrowX509: with owner_auth escrow (allowed with x509
// attestation) the owner auth must be set, and the TPM DPS challenge does
// not apply.
func TestVerifyOwnerEscrowX509(t *testing.T) {
	first := swtpmtest.Start(t, swtpmtest.Options{})
	l := newTestLine(t, x509OwnerEscrow(t, first.CA))
	v := l.provisionSwtpm(t, "X-1")
	rep, err := v.verify(t)
	for _, c := range rep.Checks {
		t.Logf("%-15s %-5v %s", c.Name, c.Passed, c.Detail)
	}
	if err != nil {
		t.Fatal(err)
	}
	if c := rep.Checks[slices.IndexFunc(rep.Checks, func(c Check) bool { return c.Name == CheckDPS })]; !strings.HasPrefix(c.Detail, "not applicable") {
		t.Errorf("dps-attestation: %q", c.Detail)
	}
	// The owner auth cleared behind the station's back breaks the policy.
	v.tool(t, "tpm2_changeauth", "-c", "o", "-p", "hex:"+hex.EncodeToString(l.escrowed(v.u, "owner")))
	rep, _ = v.verify(t)
	if got := rep.Failed(); !slices.Equal(got, []string{CheckOwnership}) {
		t.Errorf("failed %v, want [ownership]", got)
	}
}

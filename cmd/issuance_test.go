package cmd

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
)

// issued reads the line intermediate's issuance counter (pki.max_issued).
func (l *line) issued() string {
	l.t.Helper()
	line, err := certgen.ReadCertificate(filepath.Join(l.dir, "pki", "line.crt"))
	if err != nil {
		l.t.Fatal(err)
	}
	sum := sha256.Sum256(line.Raw)
	db, err := store.Open(filepath.Join(l.dir, "station.db"), store.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		l.t.Fatal(err)
	}
	defer db.Close()
	var n []byte
	db.View(func(tx *bolt.Tx) error {
		n = store.GetMeta(tx, "issued:"+hex.EncodeToString(sum[:]))
		return nil
	})
	return string(n)
}

// TestRevokedIssuerNeverIssues: after `station revoke --ca-cert` of the
// line intermediate, provision refuses (exit 3) before it touches the TPM,
// names the certificate to replace, and issues nothing.
func TestRevokedIssuerNeverIssues(t *testing.T) {
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	l := newLine(t, vendor)
	if _, errOut, code := l.run("revoke", "--ca-cert", filepath.Join(l.dir, "pki", "line.crt"), "--reason", "line CA key leaked"); code != 0 {
		t.Fatalf("revoke --ca-cert: exit %d: %s", code, errOut)
	}
	before, issued := readTPMState(t, inst.Addr), l.issued()
	out, errOut, code := l.run("provision", "--serial", "REV-1", "--tpm", inst.Addr)
	if code != ExitPolicy {
		t.Fatalf("provision under a revoked intermediate: exit %d, want 3\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"unit REV-1: step certificate", "revoked", "pki.issuer_cert pki/line.crt", "line CA key leaked", "replace it", "hint: issue a new line intermediate"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if d := before.diff(readTPMState(t, inst.Addr)); d != "" {
		t.Errorf("the TPM changed: %s", d)
	}
	if got := l.issued(); got != issued {
		t.Errorf("issuance counter %q, was %q", got, issued)
	}
	if _, _, code := l.run("units", "show", "REV-1"); code == 0 {
		t.Error("the refused unit was recorded")
	}
	if _, errOut, code := l.run("audit", "verify"); code != 0 {
		t.Errorf("audit verify: exit %d: %s", code, errOut)
	}
}

// TestRegistrationIDCaseDuplicate: DPS compares registration IDs without
// regard to case, so in x509 mode the serials CASE-A and case-a are one
// registration ID; the second unit is refused (exit 3) before its TPM is
// touched or a certificate issued, and the export carries one create.
func TestRegistrationIDCaseDuplicate(t *testing.T) {
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	first := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	second := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	l := newLine(t, vendor)
	l.env = append(l.env, "STATION_DPS_ATTESTATION=x509", "STATION_DPS_REGISTRATION_ID={serial}")
	if out, errOut, code := l.run("provision", "--serial", "CASE-A", "--tpm", first.Addr); code != 0 {
		t.Fatalf("CASE-A: exit %d\n%s%s", code, out, errOut)
	}
	before, issued := readTPMState(t, second.Addr), l.issued()
	out, errOut, code := l.run("provision", "--serial", "case-a", "--tpm", second.Addr)
	if code != ExitPolicy || !strings.Contains(errOut, "duplicate registration ID") || !strings.Contains(errOut, "unit CASE-A") {
		t.Fatalf("case-a after CASE-A: exit %d, want 3 'duplicate registration ID' naming CASE-A\n%s%s", code, out, errOut)
	}
	if d := before.diff(readTPMState(t, second.Addr)); d != "" {
		t.Errorf("the second unit's TPM changed: %s", d)
	}
	if got := l.issued(); got != issued {
		t.Errorf("issuance counter %q after the refusal, was %q", got, issued)
	}
	dir := filepath.Join(t.TempDir(), "bulk")
	if _, errOut, code := l.run("enroll", "export", "--format", "dps-bulk", "--out", dir); code != 0 {
		t.Fatalf("enroll export: exit %d: %s", code, errOut)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "[0-9]*.json"))
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n += strings.Count(strings.Join(strings.Fields(strings.ToLower(string(b))), ""), `"registrationid":"case-a"`)
	}
	if n != 1 {
		t.Errorf("the bulk export names registration ID case-a %d times, want 1", n)
	}
}

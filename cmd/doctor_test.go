package cmd

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/station"
)

// doctorRun runs `station doctor -o json` on the line with extra
// environment and returns its checks by name and its exit code, after
// checking the document: snake_case keys, the process's exit code in
// exit_code, every check named, with a status of pass, warn or fail, a
// detail, and a hint unless it passed.
func (l *line) doctorRun(args []string, env ...string) (map[string]station.DoctorCheck, int) {
	l.t.Helper()
	c := l.cmd(append([]string{"-o", "json"}, args...)...)
	c.Env = append(c.Env, env...)
	out, errb, code := runExit(l.t, c)
	var doc struct {
		Checks   []station.DoctorCheck `json:"checks"`
		ExitCode *int                  `json:"exit_code"`
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		l.t.Fatalf("%v -o json: exit %d, %v\nstdout: %s\nstderr: %s", args, code, err, out, errb)
	}
	json.Unmarshal([]byte(out), &raw)
	checkSnakeCase(l.t, raw)
	if doc.ExitCode == nil || *doc.ExitCode != code {
		l.t.Fatalf("exit_code %v in the document, process exited %d", doc.ExitCode, code)
	}
	if errb != "" {
		l.t.Errorf("doctor wrote to stderr: %s", errb)
	}
	checks := map[string]station.DoctorCheck{}
	for _, ch := range doc.Checks {
		if ch.Name == "" || ch.Detail == "" || (ch.Status != station.CheckPass && (ch.Hint == "")) {
			l.t.Errorf("check without a name, detail or hint: %+v", ch)
		}
		switch ch.Status {
		case station.CheckPass, station.CheckWarn, station.CheckFail:
		default:
			l.t.Errorf("check %s: status %q", ch.Name, ch.Status)
		}
		checks[ch.Name] = ch
	}
	return checks, code
}

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkSnakeCase requires every key of a JSON document to be snake_case.
func checkSnakeCase(t testing.TB, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !snakeCase.MatchString(k) {
				t.Errorf("JSON key %q is not snake_case", k)
			}
			checkSnakeCase(t, x)
		}
	case []any:
		for _, x := range v {
			checkSnakeCase(t, x)
		}
	}
}

// want requires check name to have status, and its detail and hint to
// match the patterns ("" matches anything).
func want(t testing.TB, checks map[string]station.DoctorCheck, name, status, detail, hint string) {
	t.Helper()
	c, ok := checks[name]
	if !ok {
		t.Errorf("no %s check in %v", name, checks)
		return
	}
	if c.Status != status || !regexp.MustCompile(detail).MatchString(c.Detail) || !regexp.MustCompile(hint).MatchString(c.Hint) {
		t.Errorf("check %s = %s %q (hint %q); want %s, detail ~ %q, hint ~ %q", name, c.Status, c.Detail, c.Hint, status, detail, hint)
	}
}

// testPKI writes a root, a factory CA and a line CA valid from notBefore
// to notAfter into dir, with the line key as plain PKCS#8 PEM.
func testPKI(t testing.TB, dir string, notBefore, notAfter time.Time) (root, chain, line, key string, lineKey *ecdsa.PrivateKey) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rk, fk, lk := newKey(), newKey(), newKey()
	ca := func(cn string, nb, na time.Time, pub *ecdsa.PublicKey, parent *x509.Certificate, signer *ecdsa.PrivateKey) *x509.Certificate {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
			NotBefore: nb, NotAfter: na, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
		if parent == nil {
			parent = tmpl
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c
	}
	now := time.Now()
	r := ca("Test Root CA", now.Add(-5*365*24*time.Hour), now.Add(20*365*24*time.Hour), &rk.PublicKey, nil, rk)
	f := ca("Test Factory CA", now.Add(-5*365*24*time.Hour), now.Add(15*365*24*time.Hour), &fk.PublicKey, r, rk)
	l := ca("Test Line CA", notBefore, notAfter, &lk.PublicKey, f, fk)
	root, chain, line, key = filepath.Join(dir, "root.crt"), filepath.Join(dir, "chain.pem"), filepath.Join(dir, "line.crt"), filepath.Join(dir, "line.key")
	for p, c := range map[string]*x509.Certificate{root: r, chain: f, line: l} {
		if err := os.WriteFile(p, certgen.EncodeCertificates(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writePlainKey(t, key, lk)
	return root, chain, line, key, lk
}

func writePlainKey(t testing.TB, path string, k *ecdsa.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestDoctor breaks the station's setup one real way at a time and
// requires doctor to name the check that fails, with its hint, exit 1,
// and to leave the others passing; warnings alone exit 0.
func TestDoctor(t *testing.T) {
	b := newSimBatch(t, 3)
	l := b.line
	strict := "STATION_TPM_REQUIRE_EK_CERT=true"

	checks, code := l.doctorRun([]string{"doctor"}, strict)
	if code != 0 {
		t.Fatalf("a demo station: exit %d, %v", code, checks)
	}
	for _, name := range station.DoctorNames {
		want(t, checks, name, station.CheckPass, ".", "^$")
	}
	want(t, checks, "vendor-roots", station.CheckPass, `1 certificates .*first expiry`, "")
	want(t, checks, "issuer-chain", station.CheckPass, `Demo Line 1 CA -> Demo Factory CA -> pinned root "Demo Root CA": verifies; .* in \d+ days`, "")
	want(t, checks, "tpm", station.CheckPass, `^sim reachable .*provision would take it`, "")

	tmp := t.TempDir()
	t.Run("missing vendor roots folder", func(t *testing.T) {
		checks, code := l.doctorRun([]string{"doctor"}, strict, "STATION_TPM_VENDOR_ROOTS="+filepath.Join(tmp, "no-roots"))
		want(t, checks, "vendor-roots", station.CheckFail, `no-roots: no such file`, `docs/VENDOR-ROOTS.md`)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		// Optional EK certificates: a warning, exit 0.
		checks, code = l.doctorRun([]string{"doctor"}, "STATION_TPM_VENDOR_ROOTS="+filepath.Join(tmp, "no-roots"))
		want(t, checks, "vendor-roots", station.CheckWarn, `require_ek_cert is false`, `docs/VENDOR-ROOTS.md`)
		if code != 0 {
			t.Errorf("warnings only: exit %d, want 0", code)
		}
	})
	t.Run("wrong firmware hash", func(t *testing.T) {
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_FIRMWARE_SHA256="+strings.Repeat("ab", 32))
		want(t, checks, "firmware", station.CheckFail, `has SHA-256 [0-9a-f]{64}, the release's is (ab){32}`, `use the released image`)
		want(t, checks, "issuer-key", station.CheckPass, ".", "")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("expired issuer", func(t *testing.T) {
		dir := t.TempDir()
		root, chain, line, key, _ := testPKI(t, dir, time.Now().Add(-2*365*24*time.Hour), time.Now().Add(-24*time.Hour))
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_PKI_ROOT="+root, "STATION_PKI_CHAIN="+chain,
			"STATION_PKI_ISSUER_CERT="+line, "STATION_PKI_ISSUER_KEY=softkms:"+key)
		want(t, checks, "issuer-chain", station.CheckFail, `"Test Line CA" does not verify up to the pinned root "Test Root CA".*expired`, `pki.chain`)
		want(t, checks, "warehouse", station.CheckFail, `"Test Line CA" expires .* before the warehouse period ends`, `station ca issue-intermediate`)
		want(t, checks, "issuer-key", station.CheckPass, `signs for "Test Line CA"`, "")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("issuer dies in the warehouse", func(t *testing.T) {
		dir := t.TempDir()
		root, chain, line, key, _ := testPKI(t, dir, time.Now().Add(-time.Hour), time.Now().Add(60*24*time.Hour))
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_PKI_ROOT="+root, "STATION_PKI_CHAIN="+chain,
			"STATION_PKI_ISSUER_CERT="+line, "STATION_PKI_ISSUER_KEY=softkms:"+key)
		want(t, checks, "issuer-chain", station.CheckWarn, `verifies; the chain's first expiry is .* in (59|60) days`, `before this one expires`)
		want(t, checks, "warehouse", station.CheckFail, `expires .* before the warehouse period ends`, `shorten pki.warehouse`)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		// A shorter warehouse period fits, but leaves are cut short.
		checks, code = l.doctorRun([]string{"doctor"}, "STATION_PKI_ROOT="+root, "STATION_PKI_CHAIN="+chain,
			"STATION_PKI_ISSUER_CERT="+line, "STATION_PKI_ISSUER_KEY=softkms:"+key, "STATION_PKI_WAREHOUSE=720h")
		want(t, checks, "warehouse", station.CheckWarn, `leaves issued now get \d+ days of field life, not pki.validity's 1825`, `next line intermediate`)
		if code != 0 {
			t.Errorf("warnings only: exit %d", code)
		}
	})
	t.Run("mismatched issuer key", func(t *testing.T) {
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "other.key")
		writePlainKey(t, p, other)
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_PKI_ISSUER_KEY=softkms:"+p)
		want(t, checks, "issuer-key", station.CheckFail, `opens, but is not the key of "Demo Line 1 CA"`, `one intermediate's key and certificate`)
		want(t, checks, "issuer-chain", station.CheckPass, ".", "")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("encrypted issuer key", func(t *testing.T) {
		k := readPKCS8(t, filepath.Join(l.dir, "pki", "line.key"))
		enc := filepath.Join(t.TempDir(), "line.key")
		if err := certgen.WriteKeyPEM(enc, k.(*ecdsa.PrivateKey), []byte("correct horse battery"), false); err != nil {
			t.Fatal(err)
		}
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_PKI_ISSUER_KEY="+enc, "STATION_PKI_KEY_PASSWORD=")
		want(t, checks, "issuer-key", station.CheckWarn, `^not checked: no password`, `STATION_PKI_KEY_PASSWORD`)
		if code != 0 {
			t.Errorf("no password: exit %d, want 0 (a warning)", code)
		}
		checks, code = l.doctorRun([]string{"doctor"}, "STATION_PKI_ISSUER_KEY="+enc, "STATION_PKI_KEY_PASSWORD=wrong password")
		want(t, checks, "issuer-key", station.CheckFail, `cannot decrypt`, `check STATION_PKI_KEY_PASSWORD`)
		if code != 1 {
			t.Errorf("wrong password: exit %d", code)
		}
		checks, _ = l.doctorRun([]string{"doctor"}, "STATION_PKI_ISSUER_KEY="+enc, "STATION_PKI_KEY_PASSWORD=correct horse battery")
		want(t, checks, "issuer-key", station.CheckPass, `^encrypted PEM .* opens and signs for "Demo Line 1 CA"`, "")
		// The password is never shown, right or wrong.
		for _, pw := range []string{"correct horse battery", "tr0ub4dor-guess"} {
			c := l.cmd("doctor")
			c.Env = append(c.Env, "STATION_PKI_ISSUER_KEY="+enc, "STATION_PKI_KEY_PASSWORD="+pw)
			text, _ := c.CombinedOutput()
			if strings.Contains(string(text), pw) {
				t.Errorf("doctor printed the issuer key's password %q", pw)
			}
		}
	})
	t.Run("escrow key is a private key", func(t *testing.T) {
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_OWNERSHIP_ESCROW_PUBLIC_KEY="+filepath.Join(l.dir, "escrow.key.pem"))
		want(t, checks, "escrow-key", station.CheckFail, `never put a private key on the line`, `PUBLIC key`)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("unreachable TPM", func(t *testing.T) {
		addr := swtpmtest.ClosedAddr(t)
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_TPM_ADDRESS="+addr)
		want(t, checks, "tpm", station.CheckFail, regexp.QuoteMeta(addr)+`.*TPM unreachable.*connection refused`, `check the fixture's TPM connection`)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("another signing key", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "key.pem")
		if out, err := exec.Command("openssl", "genpkey", "-algorithm", "ed25519", "-out", p).CombinedOutput(); err != nil {
			t.Skipf("openssl: %v %s", err, out)
		}
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_STATION_SIGNING_KEY="+p)
		want(t, checks, "signing-key", station.CheckFail, `is not the key the audit log is signed with`, `started with`)
		want(t, checks, "audit-log", station.CheckWarn, `^not checked`, `signing key`)
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("no database", func(t *testing.T) {
		checks, code := l.doctorRun([]string{"--db", filepath.Join(tmp, "none.db"), "doctor"})
		want(t, checks, "database", station.CheckFail, `no database at`, "station init")
		want(t, checks, "audit-log", station.CheckWarn, `^not checked`, "database")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		if _, err := os.Stat(filepath.Join(tmp, "none.db")); err == nil {
			t.Error("doctor created a database")
		}
	})
	t.Run("invalid config", func(t *testing.T) {
		checks, code := l.doctorRun([]string{"doctor"}, "STATION_TPM_EK=rsa1024")
		want(t, checks, "config", station.CheckFail, `tpm.ek.*rsa1024`, ".")
		if code != 1 || len(checks) != 1 {
			t.Errorf("exit %d, %d checks", code, len(checks))
		}
	})
	t.Run("tampered audit record", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "station.db")
		data, err := os.ReadFile(b.db)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(db, data, 0o600)
		if out, err := exec.Command("audit-fixture", "flip", db, "3").CombinedOutput(); err != nil {
			t.Fatalf("audit-fixture: %v %s", err, out)
		}
		checks, code := l.doctorRun([]string{"--db", db, "doctor"})
		want(t, checks, "audit-log", station.CheckFail, `^record 3: `, `altered or damaged`)
		want(t, checks, "database", station.CheckPass, ".", "")
		want(t, checks, "signing-key", station.CheckPass, ".", "")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
	t.Run("locked database", func(t *testing.T) {
		cont := b.start() // a batch holds the database, stopped between units
		checks, code := l.doctorRun([]string{"doctor"})
		if c, _, _ := cont(); c != 0 {
			t.Errorf("the batch exited %d", c)
		}
		want(t, checks, "database", station.CheckFail, `in use by another process`, `another station command holds the database`)
		want(t, checks, "audit-log", station.CheckWarn, `^not checked`, "database")
		want(t, checks, "firmware", station.CheckPass, ".", "")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
	})
}

// TestDoctorTPMHolds: doctor says what a fixture's TPM holds, reading it
// only: the unit it was provisioned as, and a TPM someone else owns.
func TestDoctorTPMHolds(t *testing.T) {
	vendor := swtpmVendor(t)
	inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	l := newLine(t, vendor)
	if _, errOut, code := l.run("provision", "--serial", "SN-DOC", "--tpm", inst.Addr); code != 0 {
		t.Fatalf("provision: exit %d %s", code, errOut)
	}
	checks, code := l.doctorRun([]string{"doctor"}, "STATION_TPM_ADDRESS="+inst.Addr)
	want(t, checks, "tpm", station.CheckPass, `reachable .*: provisioned as SN-DOC`, "")
	if code != 0 {
		t.Errorf("exit %d", code)
	}

	other := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	tpmTool(t, other, false, "tpm2_changeauth", "-c", "owner", "someone-elses")
	checks, code = l.doctorRun([]string{"doctor"}, "STATION_TPM_ADDRESS="+other.Addr)
	want(t, checks, "tpm", station.CheckWarn, `owner auth is set: someone else owns it`, `set the unit aside`)
	if code != 0 {
		t.Errorf("a fixture holding someone else's TPM: exit %d, want 0 (a warning)", code)
	}
	if !strings.Contains(tpmTool(t, other, false, "tpm2_getcap", "properties-variable"), "ownerAuthSet:              1") {
		t.Error("the owner auth changed")
	}
}

// TestDoctorNamesTheSigningKeyByKeyID: doctor's signing-key check names the
// key by the key_id `audit pubkey` prints (and the audit documents and the
// enrollment manifest carry), not by a digest of its own an auditor cannot
// compare.
func TestDoctorNamesTheSigningKeyByKeyID(t *testing.T) {
	l := newSimBatch(t, 0).line
	out, _, code := l.run("-o", "json", "audit", "pubkey")
	var pub struct {
		KeyID string `json:"key_id"`
	}
	if err := json.Unmarshal([]byte(out), &pub); err != nil || code != ExitOK || len(pub.KeyID) != 64 {
		t.Fatalf("audit pubkey: exit %d, %v\n%s", code, err, out)
	}
	checks, _ := l.doctorRun([]string{"doctor"})
	if ch := checks["signing-key"]; ch.Status != station.CheckPass || !strings.Contains(ch.Detail, "key_id "+pub.KeyID) {
		t.Errorf("signing-key check %+v; want a pass naming key_id %s", ch, pub.KeyID)
	}
}

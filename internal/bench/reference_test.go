package bench

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
)

// TestReferenceScript runs scripts/bench/reference.sh on two fresh swtpm
// units and checks what it leaves: the keys persisted where station puts
// them, the lockout auth set, a leaf for the TPM's device key issued by the
// line intermediate, the unit's folder read back, a hash-chained log and
// one DPS enrollment line per unit. The benchmark times this script, so it
// must do the work it claims.
func TestReferenceScript(t *testing.T) {
	needTools(t, refTools...)
	needProvider(t)
	fixture := swtpmtest.Start(t, swtpmtest.Options{})
	vendor := fixture.CA
	l := newLine(t, fixture)
	for i, serial := range []string{"REF-1", "REF-2"} {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		steps := l.reference(t, inst, serial)
		for _, s := range []string{"ek", "srk", "device-key", "ownership", "certificate", "flash", "record"} {
			if _, ok := steps[s]; !ok {
				t.Errorf("%s: no time for step %s: %v", serial, s, steps)
			}
		}
		handles, err := exec.Command("tpm2_getcap", "handles-persistent", "-T", tcti(inst)).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{"0x81010001", "0x81000001", "0x81000010"} {
			if !strings.Contains(string(handles), h) {
				t.Errorf("%s: %s not persisted: %s", serial, h, handles)
			}
		}
		props, err := exec.Command("tpm2_getcap", "properties-variable", "-T", tcti(inst)).Output()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(props), "lockoutAuthSet:             1") && !strings.Contains(strings.Join(strings.Fields(string(props)), " "), "lockoutAuthSet: 1") {
			t.Errorf("%s: lockout auth not set:\n%s", serial, props)
		}
		unit := filepath.Join(l.dir, "ref-units", serial)
		leaf := readCert(t, filepath.Join(unit, "device.crt"))
		issuer := readCert(t, l.issuerCert)
		if leaf.Subject.CommonName != serial {
			t.Errorf("%s: leaf CN %q", serial, leaf.Subject.CommonName)
		}
		if err := leaf.CheckSignatureFrom(issuer); err != nil {
			t.Errorf("%s: leaf not issued by the line intermediate: %v", serial, err)
		}
		devPub := filepath.Join(t.TempDir(), "dev.pem")
		if b, err := exec.Command("tpm2_readpublic", "-c", "0x81000010", "-f", "pem", "-o", devPub, "-T", tcti(inst)).CombinedOutput(); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		pemBytes, _ := os.ReadFile(devPub)
		blk, _ := pem.Decode(pemBytes)
		if blk == nil || !bytes.Equal(blk.Bytes, leaf.RawSubjectPublicKeyInfo) {
			t.Errorf("%s: the leaf's key is not the TPM's device key at 0x81000010", serial)
		}
		for name, src := range map[string]string{"chain.pem": l.chain, "firmware.bin": l.firmware} {
			a, err := os.ReadFile(filepath.Join(unit, name))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(src) // the chain is empty: the line CA's issuer is the root
			if !bytes.Equal(a, b) {
				t.Errorf("%s: %s in the unit's folder (%d bytes) differs from %s (%d bytes)", serial, name, len(a), src, len(b))
			}
		}
		logLines := lines(t, filepath.Join(l.dir, "ref-log", "log.txt"))
		enrollLines := lines(t, filepath.Join(l.dir, "ref-log", "enrollments.jsonl"))
		if len(logLines) != i+1 || len(enrollLines) != i+1 {
			t.Fatalf("after %s: %d log lines, %d enrollment lines, want %d", serial, len(logLines), len(enrollLines), i+1)
		}
		prev := sha256.Sum256(nil)
		if i > 0 {
			prev = sha256.Sum256([]byte(logLines[i-1] + "\n"))
		}
		if !strings.HasSuffix(logLines[i], " prev="+hex.EncodeToString(prev[:])) || !strings.Contains(logLines[i], " "+serial+" ") {
			t.Errorf("log line %d is not chained to the one before: %q", i, logLines[i])
		}
		var e struct {
			RegistrationID string `json:"registrationId"`
			Attestation    struct {
				TPM struct {
					EndorsementKey string `json:"endorsementKey"`
				} `json:"tpm"`
			} `json:"attestation"`
		}
		if err := json.Unmarshal([]byte(enrollLines[i]), &e); err != nil || e.RegistrationID != serial || len(e.Attestation.TPM.EndorsementKey) < 300 {
			t.Errorf("enrollment line %d: %v %q", i, err, enrollLines[i])
		}
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/station"
)

// FuzzReadBatch: any file either parses into valid, unique serials with a
// TPM address each, or is refused as a usage error (exit 2).
func FuzzReadBatch(f *testing.F) {
	f.Add("serial,tpm\nA-1,sim\nA-2,swtpm://127.0.0.1:2321,dir:/mnt/u\n")
	f.Add("# tray 7\nB-1, /dev/tpmrm0\n\nB-2,unix:///run/swtpm.sock\n")
	f.Add("A-1,sim\nA-1,sim\n")
	f.Add("\"a\nb\",sim\n")
	f.Fuzz(func(t *testing.T, data string) {
		p := filepath.Join(t.TempDir(), "b.csv")
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		reqs, err := readBatch(p)
		if err != nil {
			if code(err) != ExitUsage {
				t.Fatalf("batch error %v maps to exit %d, want 2", err, code(err))
			}
			return
		}
		seen := map[string]bool{}
		for _, r := range reqs {
			if station.ValidateSerial(r.Serial) != nil || seen[r.Serial] || strings.TrimSpace(r.TPMAddr) == "" {
				t.Fatalf("accepted a bad row %+v", r)
			}
			seen[r.Serial] = true
		}
	})
}

// TestBatchTallyNamesFailedUnits: piped, a batch's closing tally names the
// units that failed, in the CSV's order (it used to give only the counts,
// leaving the operator to search the error lines above it).
func TestBatchTallyNamesFailedUnits(t *testing.T) {
	b := newSimBatch(t, 0)
	// DEMO-0001 is recorded with the demo's TPM: on another one it is refused.
	if err := os.WriteFile(b.csv, []byte("DEMO-0001,sim:41\nT-2,sim:42\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := b.run("provision", "--batch", b.csv)
	if code != ExitPolicy || !strings.Contains(stderr, "1 passed, 1 failed (DEMO-0001)\n") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit %d and the tally naming DEMO-0001", code, stderr, ExitPolicy)
	}
}

// TestProvisionOnAFreshTPMSaysNoEK: re-provisioning a recorded unit on a TPM
// with nothing at the EK handle (a fresh or cleared TPM) is refused saying
// there is no EK there, not that the EK there is another one.
func TestProvisionOnAFreshTPMSaysNoEK(t *testing.T) {
	l := newSimBatch(t, 0).line
	_, stderr, code := l.run("provision", "--serial", "DEMO-0001", "--tpm", "sim:43")
	if code != ExitPolicy || !strings.Contains(stderr, "this TPM has no EK persisted at 0x81010001") || strings.Contains(stderr, "not the one at") {
		t.Errorf("exit %d, stderr:\n%s\nwant exit %d saying the TPM has no EK persisted", code, stderr, ExitPolicy)
	}
}

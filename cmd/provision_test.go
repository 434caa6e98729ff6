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

package station

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A unit whose certificate went to its TPM's NV (tpm-nv) verifies: the
// flash check compares the index with the recorded certificate
// (credbundle.Expected), as it compares a dir: target with the recorded
// bundle digest.
func TestVerifyTPMNV(t *testing.T) {
	l := newTestLine(t, nil)
	tpm := l.simUnit()
	dir := filepath.Join(l.dir, "units", "SIM-NV")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.provision(Request{Serial: "SIM-NV", TPM: tpm, TPMAddr: "sim", FlashSpec: "dir:" + dir + ",tpm-nv"}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), l.env, VerifyRequest{Serial: "SIM-NV", Device: tpm})
	if err != nil {
		for _, c := range rep.Checks {
			t.Logf("%s %v %s", c.Name, c.Passed, c.Detail)
		}
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		if c.Name == CheckFlash && !strings.Contains(c.Detail, "tpm-nv") {
			t.Errorf("flash check: %s", c.Detail)
		}
	}
	noLeaks(t, tpm)
}

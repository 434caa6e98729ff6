package cmd

import (
	"bufio"
	"strings"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/store"
)

// TestResumeAfterTPMPowerCut pulls the TPM's plug (swtpm killed without
// TPM2_Shutdown, as a fixture losing power) as provision announces each TPM
// step, powers it up again and re-runs provision: the first run must fail
// without recording the unit as done, and the second must finish it with its
// escrowed lockout auth in force and an audit log that verifies.
func TestResumeAfterTPMPowerCut(t *testing.T) {
	vendor := swtpmVendor(t)
	for _, step := range []string{station.StepEK, station.StepSRK, station.StepDeviceKey, station.StepOwnership} {
		t.Run(step, func(t *testing.T) {
			inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
			l := newLine(t, vendor)
			serial := "CUT-" + step
			c := l.cmd("provision", "--serial", serial, "--tpm", inst.Addr, "--verbose")
			stderr, err := c.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			cut := false
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				if !cut && strings.HasSuffix(sc.Text(), " step="+step) {
					inst.Kill()
					cut = true
				}
			}
			err = c.Wait()
			if !cut {
				t.Fatalf("provision never announced step %s (%v)", step, err)
			}
			if err == nil {
				t.Logf("provision finished step %s before the power cut reached it", step)
			} else if code := c.ProcessState.ExitCode(); code != ExitEnvironment {
				t.Errorf("provision with the TPM's power cut at %s: exit %d, want 5 (TPM unreachable)", step, code)
			}
			if js, _, code := l.run("units", "show", serial, "-o", "json"); err != nil && code == 0 && strings.Contains(js, `"status":"provisioned"`) {
				t.Fatalf("a run that failed recorded %s as provisioned", serial)
			}

			inst.Restart() // power back on; the address may change
			out, errOut, code := l.run("provision", "--serial", serial, "--tpm", inst.Addr)
			if code != 0 || !strings.Contains(out, "PASS") {
				t.Fatalf("re-run after a power cut at %s: exit %d\n%s%s", step, code, out, errOut)
			}
			u := l.unit(serial)
			if u.Status != store.StatusProvisioned || len(u.Escrows) != 1 || u.Escrows[0].Pending {
				t.Fatalf("unit after the re-run: status %s, escrows %+v", u.Status, u.Escrows)
			}
			tpm := l.escrowedLockoutInForce(t, u, inst.Addr)
			defer tpm.Close()
			noTransients(t, tpm)
			if _, errOut, code := l.run("audit", "verify"); code != 0 {
				t.Errorf("audit verify: exit %d: %s", code, errOut)
			}
		})
	}
}

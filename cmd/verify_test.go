package cmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/station"
)

// TestVerifyCommand runs `station verify` on units provisioned by
// `station provision` on swtpm: text and JSON output, exit codes, batch.
func TestVerifyCommand(t *testing.T) {
	vendor := swtpmVendor(t)
	l := newLine(t, vendor)
	type unit struct {
		serial, addr, flash string
	}
	var units []unit
	for i := range 2 {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		u := unit{serial: fmt.Sprintf("CLI-%d", i), addr: inst.Addr, flash: filepath.Join(t.TempDir(), "unit")}
		if err := os.MkdirAll(u.flash, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, errOut, code := l.run("provision", "--serial", u.serial, "--tpm", u.addr, "--flash", "dir:"+u.flash); code != 0 {
			t.Fatalf("provision %s: exit %d\n%s%s", u.serial, code, out, errOut)
		}
		units = append(units, u)
	}
	good, bad := units[0], units[1]

	// Text: a line per check, then the verdict; exit 0.
	out, errOut, code := l.run("verify", "--serial", good.serial, "--tpm", good.addr)
	if code != 0 {
		t.Fatalf("verify good unit: exit %d\n%s%s", code, out, errOut)
	}
	for _, name := range station.VerifyChecks {
		if !strings.Contains(out, "PASS  "+name) {
			t.Errorf("no PASS line for %s in\n%s", name, out)
		}
	}
	t.Logf("station verify:\n%s", out)
	if !strings.Contains(out, "unit CLI-0: PASS (10/10 checks)") {
		t.Errorf("no verdict in\n%s", out)
	}

	// JSON: one document with the contract's fields.
	out, _, code = l.run("verify", "--serial", good.serial, "--tpm", good.addr, "-o", "json")
	var rep struct {
		Serial string `json:"serial"`
		Passed *bool  `json:"passed"`
		Checks []struct {
			Name   string `json:"name"`
			Passed *bool  `json:"passed"`
			Detail string `json:"detail"`
		} `json:"checks"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("verify -o json: exit %d, %v\n%s", code, err, out)
	}
	if rep.Serial != good.serial || rep.Passed == nil || !*rep.Passed || len(rep.Checks) != len(station.VerifyChecks) {
		t.Fatalf("verify -o json = %+v", rep)
	}

	// A broken unit: FAIL lines, exit 1.
	fw := filepath.Join(bad.flash, flash.DirFirmware)
	b, err := os.ReadFile(fw)
	if err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if err := os.WriteFile(fw, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code = l.run("verify", "--serial", bad.serial, "--tpm", bad.addr)
	if code != 1 || !strings.Contains(out, "FAIL  flash") || !strings.Contains(out, "unit CLI-1: FAIL (9/10 checks; failed: flash)") {
		t.Errorf("verify broken unit: exit %d\n%s", code, out)
	}

	// Batch: JSON lines, one per unit, exit 1; text ends with a summary.
	csv := filepath.Join(t.TempDir(), "tray.csv")
	body := "serial,tpm\n# the tray\n" + good.serial + "," + good.addr + "\n" + bad.serial + "," + bad.addr + "\n"
	if err := os.WriteFile(csv, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, code = l.run("verify", "--batch", csv, "-o", "json")
	if code != 1 {
		t.Errorf("verify --batch: exit %d, want 1", code)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	var verdicts []string
	for sc.Scan() {
		var r station.VerifyReport
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("batch line %q: %v", sc.Text(), err)
		}
		verdicts = append(verdicts, fmt.Sprintf("%s=%v", r.Serial, r.Passed))
	}
	if strings.Join(verdicts, " ") != "CLI-0=true CLI-1=false" {
		t.Errorf("batch JSON lines: %v", verdicts)
	}
	out, _, _ = l.run("verify", "--batch", csv)
	if !strings.Contains(out, "verified 2 units: 1 passed, 1 failed (CLI-1)") {
		t.Errorf("batch summary missing in\n%s", out)
	}

	// Usage, unknown unit, unreachable TPM.
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"verify"}, 2},
		{[]string{"verify", "--serial", good.serial, "--batch", csv}, 2},
		{[]string{"verify", "--serial", "NO-SUCH", "--tpm", good.addr}, 1},
		{[]string{"verify", "--serial", good.serial, "--tpm", "swtpm://127.0.0.1:1"}, 5},
	} {
		if _, errOut, code := l.run(tc.args...); code != tc.code {
			t.Errorf("station %v: exit %d, want %d\n%s", tc.args, code, tc.code, errOut)
		}
	}
	// -o json: the unreachable unit still gets its one object on stdout.
	out, _, code = l.run("-o", "json", "verify", "--serial", good.serial, "--tpm", "swtpm://127.0.0.1:1")
	var unreachable struct {
		Serial string
		Passed bool
		Error  string
	}
	if err := json.Unmarshal([]byte(out), &unreachable); err != nil || code != 5 || unreachable.Serial != good.serial || unreachable.Passed || unreachable.Error == "" {
		t.Errorf("-o json with an unreachable TPM: exit %d, stdout %q (%v)", code, out, err)
	}
}

// TestVerifyFailedHint: a verify whose checks fail (here a fresh TPM, not
// the unit's) carries the same hint in its -o json object as on the live
// screen, naming the unit; a serial the station does not know says so
// instead. Both used to be an empty hint in JSON.
func TestVerifyFailedHint(t *testing.T) {
	l := newSimBatch(t, 1).line
	for serial, want := range map[string]string{
		"DEMO-0001": "station units show DEMO-0001",
		"NOPE-7":    "station units list",
	} {
		out, _, code := l.run("-o", "json", "verify", "--serial", serial, "--tpm", "sim:77")
		var doc struct {
			Passed   bool   `json:"passed"`
			ExitCode int    `json:"exit_code"`
			Hint     string `json:"hint"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil || code != ExitFailed || doc.Passed || doc.ExitCode != ExitFailed || !strings.Contains(doc.Hint, want) {
			t.Errorf("verify %s -o json: exit %d, stdout %q (%v); want exit_code %d and a hint with %q", serial, code, out, err, ExitFailed, want)
		}
	}
}

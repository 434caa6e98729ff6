package cmd

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/factory-id/station/station"
)

// TestUnitsListResumable: a unit whose provision was killed mid-run is
// resumable, not failed (its journal holds no failed step).
func TestUnitsListResumable(t *testing.T) {
	l := newSimBatch(t, 1).line
	if !l.killAt("KILL-1", "sim:7", station.StepSRK, 0) {
		t.Fatal("provision finished before it could be killed at the srk step")
	}
	out, _, code := l.run("units", "list", "--status", "resumable")
	if code != 0 || !strings.Contains(out, "KILL-1") {
		t.Fatalf("resumable (exit %d):\n%s", code, out)
	}
	if out, _, _ := l.run("units", "list", "--status", "failed"); strings.Contains(out, "KILL-1") {
		t.Errorf("a killed unit is listed as failed:\n%s", out)
	}
	if out, _, _ := l.run("units", "list", "--status", "in-progress"); !strings.Contains(out, "KILL-1") {
		t.Errorf("in-progress lacks the killed unit:\n%s", out)
	}
}

// TestUnknownSerialHint: a serial the station does not know is exit 2 with
// a hint naming the fix, in text and in the JSON error document, for every
// command that looks a unit up (it used to be an empty hint).
func TestUnknownSerialHint(t *testing.T) {
	l := newSimBatch(t, 1).line
	for _, args := range [][]string{
		{"units", "show", "NOPE-9"},
		{"revoke", "--serial", "NOPE-9", "--reason", "test"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, stderr, code := l.run(args...)
			if code != ExitUsage || !strings.Contains(stderr, "NOPE-9") || !strings.Contains(stderr, "hint: ") || !strings.Contains(stderr, "station units list") {
				t.Errorf("exit %d, stderr %q; want exit %d naming the serial and a hint to `station units list`", code, stderr, ExitUsage)
			}
			out, _, code := l.run(append([]string{"-o", "json"}, args...)...)
			var doc struct {
				ExitCode int    `json:"exit_code"`
				Hint     string `json:"hint"`
			}
			if err := json.Unmarshal([]byte(out), &doc); err != nil || code != ExitUsage || doc.ExitCode != ExitUsage || !strings.Contains(doc.Hint, "station units list") {
				t.Errorf("-o json: exit %d, stdout %q (%v); want exit_code %d and a hint", code, out, err, ExitUsage)
			}
		})
	}
}

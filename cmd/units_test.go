package cmd

import (
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

package staletmp

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestStale(t *testing.T) {
	// A process that ran and ended: its pid no longer runs (unless reused
	// at once, which the check below would notice as a false negative).
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := strconv.Itoa(cmd.Process.Pid)
	dir := t.TempDir()
	names := map[string]bool{ // name -> stale
		".out.tmp-" + dead + "-123":     true,
		".out.tmp-" + dead + "-123.old": true,
		Prefix(".out.tmp-") + "456":     false, // ours
		".out.tmp-1-789":                false, // init runs
		".out.tmp-x-1":                  false,
		".other.tmp-" + dead + "-1":     false,
		"out":                           false,
	}
	for n := range names {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Clean(dir, ".out.tmp-")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for n, stale := range names {
		_, err := os.Stat(filepath.Join(dir, n))
		if stale {
			want = append(want, filepath.Join(dir, n))
			if err == nil {
				t.Errorf("%s kept", n)
			}
		} else if err != nil {
			t.Errorf("%s removed", n)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
}

package tpmops

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// sharedTestdata is the folder name of the team's shared test data beside
// the repository (real vendor CAs and EK certificates, never copied into
// the repository). It skips the test when the folder is absent, except
// under CI=true, where that is a failure.
func sharedTestdata(tb testing.TB, name string) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", "shared", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("shared test data %s missing (CI=true: cannot skip): %v", name, err)
		}
		tb.Skipf("shared test data %s not beside the repository: %v", name, err)
	}
	return p
}

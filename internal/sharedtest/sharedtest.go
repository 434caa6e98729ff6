// Package sharedtest finds the team's shared test data (real vendor CAs and
// EK certificates), kept in a folder beside the repository and never copied
// into it. Only tests use it.
package sharedtest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is the folder name of the shared test data. It skips the test when
// the folder is absent, except under CI=true, where that is a failure.
func Dir(tb testing.TB, name string) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..") // this repository
	p := filepath.Join(root, "..", "shared", "testdata", name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("shared test data %s missing (CI=true: cannot skip): %v", name, err)
		}
		tb.Skipf("shared test data %s not beside the repository: %v", name, err)
	}
	return p
}

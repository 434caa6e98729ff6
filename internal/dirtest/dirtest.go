// Package dirtest reads a folder's files for tests that compare what a
// command wrote (exports, bundles) file by file.
package dirtest

import (
	"os"
	"path/filepath"
	"testing"
)

// Read returns name -> contents of every entry of dir (which must all be
// files).
func Read(tb testing.TB, dir string) map[string][]byte {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

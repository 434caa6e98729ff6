// Package staletmp names the temporary files and folders a command writes
// beside its output after the process that writes them, so that a later run
// can tell the leftovers of a killed run (their process is gone) from the
// work of a run still going on, and remove them.
package staletmp

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Prefix is the start of a temporary name of this process: prefix, the
// process ID and "-" (os.CreateTemp and os.MkdirTemp add a random tail).
func Prefix(prefix string) string {
	return prefix + strconv.Itoa(os.Getpid()) + "-"
}

// Stale returns the paths of dir's entries named by Prefix(prefix) in a
// process that no longer runs. The current process's entries are never
// stale: it may still be using them.
func Stale(dir, prefix string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() || alive(pid) {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return out, nil
}

// Clean removes the stale entries (see Stale) and reports what it removed.
func Clean(dir, prefix string) ([]string, error) {
	stale, err := Stale(dir, prefix)
	if err != nil {
		return nil, err
	}
	for _, p := range stale {
		if err := os.RemoveAll(p); err != nil {
			return nil, err
		}
	}
	return stale, nil
}

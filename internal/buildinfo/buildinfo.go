// Package buildinfo says which build of a program is running: the version
// and commit stamped at build time with -ldflags (the Makefile's build
// target), or, for a plain `go build` or `go install`, what the Go toolchain
// recorded in the binary (runtime/debug.ReadBuildInfo: the module version,
// vcs.revision and vcs.modified).
//
// Stamping:
//
//	go build -ldflags "-X github.com/factory-id/station/internal/buildinfo.version=v1.2.0 \
//	    -X github.com/factory-id/station/internal/buildinfo.commit=$(git rev-parse HEAD)" ./cmd/station
package buildinfo

import (
	"runtime/debug"
	"strings"
	"time"
)

// Set with -ldflags -X (see the package documentation); empty otherwise.
var (
	version string
	commit  string
)

// Info is a program's build.
type Info struct {
	Version  string    // "v1.2.0", a pseudo-version, or "(devel)"
	Commit   string    // the full commit hash, "" when unknown
	Modified bool      // built from a work tree with uncommitted changes
	Time     time.Time // the commit's time (vcs.time), zero when unknown
}

// Read returns the running program's build: the stamped values where set,
// the toolchain's build information for the rest.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return from(version, commit, bi)
}

// from combines stamped values with the toolchain's build information (nil
// when the binary has none).
func from(stampedVersion, stampedCommit string, bi *debug.BuildInfo) Info {
	var i Info
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			i.Version = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Commit = s.Value
			case "vcs.modified":
				i.Modified = s.Value == "true"
			case "vcs.time":
				i.Time, _ = time.Parse(time.RFC3339, s.Value)
			}
		}
	}
	if stampedVersion != "" {
		i.Version = stampedVersion
		// git describe --dirty says it in the version
		i.Modified = strings.HasSuffix(stampedVersion, "-dirty")
	}
	if stampedCommit != "" {
		i.Commit = stampedCommit
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	return i
}

// String is the one line --version prints after the program's name:
// "v1.2.0 (commit 0123456789ab)", "(devel) (commit 0123456789ab, modified)"
// or "(devel) (commit unknown)".
func (i Info) String() string {
	c := i.Commit
	switch {
	case c == "":
		c = "unknown"
	case len(c) > 12:
		c = c[:12]
	}
	s := i.Version + " (commit " + c
	if i.Modified {
		s += ", modified"
	}
	return s + ")"
}

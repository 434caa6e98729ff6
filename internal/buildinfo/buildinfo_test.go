package buildinfo

import (
	"runtime/debug"
	"testing"
	"time"
)

func TestFrom(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/factory-id/station", Version: "(devel)"}}
		bi.Settings = []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
		return bi
	}
	const rev = "5986c8d0123456789abcdef0123456789abcdef0"
	for _, tc := range []struct {
		name            string
		version, commit string
		bi              *debug.BuildInfo
		want            Info
		wantString      string
	}{
		{"no information", "", "", nil, Info{Version: "(devel)"}, "(devel) (commit unknown)"},
		{"go build in a clean tree", "", "", vcs(rev, "false"), Info{Version: "(devel)", Commit: rev}, "(devel) (commit 5986c8d01234)"},
		{"go build in a changed tree", "", "", vcs(rev, "true"), Info{Version: "(devel)", Commit: rev, Modified: true}, "(devel) (commit 5986c8d01234, modified)"},
		{"go install module@version", "", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.4.0"}}, Info{Version: "v1.4.0"}, "v1.4.0 (commit unknown)"},
		{"stamped", "v1.5.0", rev, vcs("ffff", "true"), Info{Version: "v1.5.0", Commit: rev}, "v1.5.0 (commit 5986c8d01234)"},
		{"stamped dirty", "v1.5.0-3-g5986c8d-dirty", rev, nil, Info{Version: "v1.5.0-3-g5986c8d-dirty", Commit: rev, Modified: true}, "v1.5.0-3-g5986c8d-dirty (commit 5986c8d01234, modified)"},
		{"go build with the commit's time", "", "", func() *debug.BuildInfo {
			bi := vcs(rev, "false")
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.time", Value: "2026-12-05T07:22:25Z"})
			return bi
		}(), Info{Version: "(devel)", Commit: rev, Time: time.Date(2026, 12, 5, 7, 22, 25, 0, time.UTC)}, "(devel) (commit 5986c8d01234)"},
		{"stamped version only", "v1.5.0", "", vcs(rev, "false"), Info{Version: "v1.5.0", Commit: rev}, "v1.5.0 (commit 5986c8d01234)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := from(tc.version, tc.commit, tc.bi)
			if got != tc.want {
				t.Errorf("from = %+v, want %+v", got, tc.want)
			}
			if s := got.String(); s != tc.wantString {
				t.Errorf("String = %q, want %q", s, tc.wantString)
			}
		})
	}
}

// TestReadInTest: a test binary has build information (its module's
// version is empty or "(devel)"), and Read never returns an empty version.
func TestReadInTest(t *testing.T) {
	if i := Read(); i.Version == "" {
		t.Fatalf("Read() = %+v: empty version", i)
	}
}

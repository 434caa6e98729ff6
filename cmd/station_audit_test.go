package cmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/internal/auditcli"
	"github.com/factory-id/station/internal/hint"
)

// TestStationAuditExitCodes: station-audit (internal/auditcli) exits with
// station's code for every sentinel of the packages it links, bare or
// wrapped, and lists nothing station's table does not.
func TestStationAuditExitCodes(t *testing.T) {
	index := map[string]int{}
	for i, e := range tableEntries(t) {
		index[e[0]] = i
	}
	linked := sentinelsOf(t, "./cmd/station-audit")
	for _, name := range linked {
		i, ok := index[name]
		if !ok {
			t.Errorf("%s (linked by station-audit) has no class in cmd/errors.go", name)
			continue
		}
		c := classes[i]
		for _, err := range []error{c.target, fmt.Errorf("audit verify: %w", c.target), hint.Wrap(c.target, "h")} {
			if got := auditcli.Code(err); got != c.code {
				t.Errorf("station-audit's code for %v (%s) = %d, station's = %d", err, name, got, c.code)
			}
		}
	}
	if len(auditcli.Classes) != len(linked) {
		t.Errorf("auditcli.Classes has %d entries for the %d sentinels station-audit links", len(auditcli.Classes), len(linked))
	}
	for _, c := range auditcli.Classes {
		if got := code(c.Target); got != c.Code {
			t.Errorf("auditcli.Classes gives %v exit %d, station %d", c.Target, c.Code, got)
		}
	}
	if got := auditcli.Code(errors.New("anything")); got != code(errors.New("anything")) {
		t.Errorf("an unclassified error: station-audit %d, station %d", got, ExitFailed)
	}
}

// TestStationAuditBinary builds station-audit as an auditor would (no cgo,
// the version stamped) and runs it on the audit package's frozen exports:
// exit 0 and station's own report on a good export, 4 on a tampered one or
// with the wrong key, 2 for a usage mistake; each time the same exit code
// as `station audit verify --export`.
func TestStationAuditBinary(t *testing.T) {
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "station-audit")
	build := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/factory-id/station/internal/buildinfo.version=v0.0.0-test -X github.com/factory-id/station/internal/buildinfo.commit=0123456789abcdef",
		"./cmd/station-audit")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/station-audit: %v\n%s", err, out)
	}
	data := filepath.Join(root, "audit", "testdata")
	good := filepath.Join(data, "frozen-export-ed25519")
	key := filepath.Join(data, "test-ed25519.pub.pem")
	otherKey := filepath.Join(data, "test-p256.pub.pem")

	tampered := filepath.Join(t.TempDir(), "tampered")
	copyDir(t, good, tampered)
	records := filepath.Join(tampered, "records.jsonl")
	b, err := os.ReadFile(records)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), `"type":"`) + len(`"type":"`)
	b[i] ^= 0x01 // one bit of an event type in the first record
	if err := os.WriteFile(records, b, 0o600); err != nil {
		t.Fatal(err)
	}

	sa := func(args ...string) (string, string, int) {
		t.Helper()
		return runExit(t, exec.Command(bin, args...))
	}
	if out, _, code := sa("--version"); code != 0 || out != "station-audit v0.0.0-test (commit 0123456789ab)\n" {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	for _, tc := range []struct {
		name    string
		args    []string // station-audit's
		station []string // the same check with station
		want    int
		stderr  string
	}{
		{"good export", []string{"verify", good, "--key", key}, []string{"audit", "verify", "--export", good, "--key", key}, ExitOK, ""},
		{"good export, itself as anchor", []string{"verify", good, "--key", key, "--anchor", good}, []string{"audit", "verify", "--export", good, "--key", key, "--anchor", good}, ExitOK, ""},
		{"tampered export", []string{"verify", tampered, "--key", key}, []string{"audit", "verify", "--export", tampered, "--key", key}, ExitIntegrity, "record 1"},
		{"wrong key", []string{"verify", good, "--key", otherKey}, []string{"audit", "verify", "--export", good, "--key", otherKey}, ExitIntegrity, ""},
		{"no key", []string{"verify", good}, []string{"audit", "verify", "--export", good}, ExitUsage, "--key PUB.pem is required"},
		{"not an export", []string{"verify", t.TempDir(), "--key", key}, []string{"audit", "verify", "--export", t.TempDir(), "--key", key}, ExitUsage, ""},
		{"unknown command", []string{"nosuch"}, []string{"nosuch"}, ExitUsage, "unknown command"},
		{"stray argument", []string{"verify", good, "stray", "--key", key}, []string{"audit", "verify", "stray", "--export", good, "--key", key}, ExitUsage, ""},
		{"-v", []string{"-v"}, []string{"-v"}, ExitUsage, ""},
		{"enroll export: not a folder", []string{"export", "verify", filepath.Join(good, "records.jsonl"), "--key", key}, []string{"enroll", "verify-export", filepath.Join(good, "records.jsonl"), "--key", key}, ExitUsage, "not an export folder"},
		{"enroll export: no manifest", []string{"export", "verify", good, "--key", key}, []string{"enroll", "verify-export", good, "--key", key}, ExitIntegrity, "manifest.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := sa(tc.args...)
			if code != tc.want || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("station-audit %q: exit %d, want %d (%q in stderr)\n%s%s", tc.args, code, tc.want, tc.stderr, out, stderr)
			}
			sout, serr, scode := runRoot(t, tc.station...)
			if scode != code {
				t.Errorf("station %q: exit %d, station-audit %d\n%s", tc.station, scode, code, serr)
			}
			if code == ExitOK && sout != out {
				t.Errorf("reports differ:\nstation-audit: %s\nstation:       %s", out, sout)
			}
		})
	}
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.CopyFS(to, os.DirFS(from)); err != nil {
		t.Fatal(err)
	}
}

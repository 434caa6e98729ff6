package cmd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/storetest"
	"github.com/factory-id/station/store"
)

// runRoot runs the command tree in-process with args (in a temporary folder
// with no station.yaml) and returns its output and exit code.
func runRoot(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Chdir(t.TempDir())
	var out, errb bytes.Buffer
	code = Run(context.Background(), "v9.9.9 (commit 0123456789ab)", args, &out, &errb)
	return out.String(), errb.String(), code
}

// TestUsageMistakesAreExit2: an unknown command, a stray positional
// argument, -v and a bad --log-format are usage errors (exit 2) whichever
// validator found them: cobra's own, its Args helpers, station's.
func TestUsageMistakesAreExit2(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in stderr
	}{
		{[]string{"nosuch"}, `unknown command "nosuch" for "station"`},
		{[]string{"provsion"}, "did you mean provision?"},
		{[]string{"units", "nosuch"}, `unknown command "nosuch" for "station units"`},
		{[]string{"audit", "nosuch"}, `unknown command "nosuch" for "station audit"`},
		{[]string{"audit", "verify", "stray"}, `unknown command "stray" for "station audit verify"`}, // cobra.NoArgs
		{[]string{"enroll", "verify-export", "a", "b"}, "accepts 1 arg(s), received 2"},              // cobra.ExactArgs
		{[]string{"units", "list", "stray"}, "takes no arguments"},                                   // station's noArgs
		{[]string{"docs", "man", "stray"}, "takes no arguments"},
		{[]string{"-v"}, "unknown shorthand flag: 'v'"},
		{[]string{"--log-format", "xml", "units", "list"}, `--log-format "xml": want text or json`},
		{[]string{"-o", "yaml", "units", "list"}, `--output "yaml": want text or json`},
		{[]string{"units", "list", "--status", "lost"}, `--status "lost"`},
		{[]string{"help", "nosuch"}, `unknown command "nosuch" for "station"`},
		{[]string{"help", "provsion"}, "did you mean provision?"},
		{[]string{"help", "units", "nosuch"}, `unknown command "nosuch" for "station units"`},
		{[]string{"-o", "json", "units"}, "station units needs a command: one of list, show"}, // help is text: stdout holds JSON only
		{[]string{"-o", "json"}, "station needs a command"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			stdout, stderr, code := runRoot(t, tc.args...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, ExitUsage, tc.want)
			}
			if slices.Contains(tc.args, "json") && !json.Valid([]byte(stdout)) {
				t.Errorf("-o json: stdout is not JSON: %q", stdout)
			}
		})
	}
	// A group with no argument still shows its help (exit 0), and help
	// on a command that exists shows that command's.
	if out, _, code := runRoot(t, "units"); code != ExitOK || !strings.Contains(out, "Available Commands") {
		t.Errorf("station units: exit %d, output %q", code, out)
	}
	if out, _, code := runRoot(t, "help", "units", "list"); code != ExitOK || !strings.Contains(out, "station units list [flags]") {
		t.Errorf("station help units list: exit %d, output %q", code, out)
	}
}

// TestVersion: --version prints the version the program was given (its
// build's version and commit); there is no -v shorthand (above).
func TestVersion(t *testing.T) {
	out, _, code := runRoot(t, "--version")
	if code != ExitOK || out != "station v9.9.9 (commit 0123456789ab)\n" {
		t.Fatalf("--version: exit %d, %q", code, out)
	}
}

// TestLogFormatJSON: --log-format json --verbose logs one JSON object a
// line on stderr, each with a time, a level and a message, and never the
// CA key's password; without --verbose nothing is logged at info level.
func TestLogFormatJSON(t *testing.T) {
	const password = "root-password-log-1"
	t.Setenv(envCAKeyPassword, password)
	out, stderr, code := runRoot(t, "--verbose", "--log-format", "json", "ca", "init-root", "--subject", "Log Root", "--out", "root")
	if code != ExitOK {
		t.Fatalf("exit %d: %s%s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	var msgs []string
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("stderr line %q is not a JSON object: %v", l, err)
		}
		ts, _ := rec["time"].(string)
		if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
			t.Errorf("line %q: time %q: %v", l, ts, err)
		}
		if rec["level"] != "INFO" || rec["msg"] == "" {
			t.Errorf("line %q: want level INFO and a msg", l)
		}
		msgs = append(msgs, rec["msg"].(string))
	}
	if !slices.Contains(msgs, "creating root") {
		t.Errorf("no \"creating root\" record in %q", stderr)
	}
	if strings.Contains(stderr+out, password) {
		t.Errorf("the password was logged: %s%s", out, stderr)
	}

	// Without --verbose: warnings only, so nothing here; text is the default.
	_, stderr, code = runRoot(t, "ca", "init-root", "--subject", "Quiet Root", "--out", "root")
	if code != ExitOK || stderr != "" {
		t.Errorf("without --verbose: exit %d, stderr %q", code, stderr)
	}
	_, stderr, code = runRoot(t, "--verbose", "ca", "init-root", "--subject", "Text Root", "--out", "root")
	if code != ExitOK || !strings.HasPrefix(stderr, "time=") || !strings.Contains(stderr, `level=INFO msg="creating root" subject="Text Root"`) {
		t.Errorf("--log-format text: exit %d, stderr %q", code, stderr)
	}
}

// TestCompletionValues: cobra's __complete (what the shell scripts of
// `station completion` call) offers each flag's values.
func TestCompletionValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"units", "list", "--status", ""}, unitStatuses},
		{[]string{"units", "list", "--status", "re"}, []string{"resumable", "revoked"}},
		{[]string{"--output", ""}, []string{"text", "json"}},
		{[]string{"units", "list", "-o", ""}, []string{"text", "json"}},
		{[]string{"--log-format", ""}, []string{"text", "json"}},
		{[]string{"enroll", "export", "--format", ""}, []string{"dps-bulk", "dps-individual", "dps-group", "csv"}},
		{[]string{"audit", "export", "--format", ""}, []string{"jsonl", "csv"}},
		{[]string{"provision", "--serial", ""}, nil}, // no database here: nothing, and no error
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			got := complete(t, tc.args...)
			if !slices.Equal(got, tc.want) {
				t.Errorf("completions %q, want %q", got, tc.want)
			}
		})
	}
}

// complete runs `station __complete ARGS` and returns the suggestions (the
// lines before cobra's ":DIRECTIVE" line), requiring no file completion.
func complete(t *testing.T, args ...string) []string {
	t.Helper()
	out, stderr, code := runRoot(t, append([]string{"__complete"}, args...)...)
	if code != ExitOK {
		t.Fatalf("__complete %q: exit %d: %s", args, code, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if last := lines[len(lines)-1]; last != ":4" { // ShellCompDirectiveNoFileComp
		t.Fatalf("__complete %q: directive %q, want :4\n%s", args, last, out)
	}
	return lines[:len(lines)-1]
}

// TestDocsMan: station docs man writes a page per command; provision's
// names its flags.
func TestDocsMan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man")
	if _, stderr, code := runRoot(t, "docs", "man", "--out", dir); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	page, err := os.ReadFile(filepath.Join(dir, "station-provision.1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".TH \"STATION\" \"1\"", "station-provision", `\fB--serial\fP`, `\fB--batch\fP`, `\fB--tpm\fP`, `\fB--log-format\fP`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("station-provision.1 lacks %q", want)
		}
	}
	for _, name := range []string{"station.1", "station-audit-verify.1", "station-docs-man.1"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	if _, _, code := runRoot(t, "docs", "man"); code != ExitUsage {
		t.Errorf("docs man without --out: exit %d, want %d", code, ExitUsage)
	}
}

// TestCompletionSerials: --serial (and units show's argument) complete the
// serials of the database that --db names, opened read-only.
func TestCompletionSerials(t *testing.T) {
	cfg, err := configs.Load(filepath.Join(t.TempDir(), "station.yaml"), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "station.db")
	db, err := store.Create(path, store.Options{StationID: cfg.Station.ID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	storetest.PutUnits(t, db, &store.Unit{Serial: "SN-100"}, &store.Unit{Serial: "SN-101"}, &store.Unit{Serial: "XB-7"})
	db.Close()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--db", path, "provision", "--serial", ""}, []string{"SN-100", "SN-101", "XB-7"}},
		{[]string{"--db", path, "revoke", "--serial", "SN"}, []string{"SN-100", "SN-101"}},
		{[]string{"--db", path, "units", "show", "X"}, []string{"XB-7"}},
		{[]string{"--db", filepath.Join(t.TempDir(), "none.db"), "verify", "--serial", ""}, nil},
	} {
		t.Run(strings.Join(tc.args[2:], " "), func(t *testing.T) {
			if got := complete(t, tc.args...); !slices.Equal(got, tc.want) {
				t.Errorf("completions %q, want %q", got, tc.want)
			}
		})
	}
}

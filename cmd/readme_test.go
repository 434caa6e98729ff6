package cmd

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
)

// walkThroughSection is the README section whose sh blocks TestREADMEWalkThrough runs.
const walkThroughSection = "## A walk through the line with swtpm"

// readmeBlocks returns the fenced ```sh blocks of the README section that
// starts with heading, in order, as written.
func readmeBlocks(t *testing.T, readme, heading string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(readme, "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README.md has no %q section", heading)
	}
	var blocks []string
	var cur []string
	in := false
	for _, line := range strings.Split(rest, "\n") {
		switch {
		case !in && strings.HasPrefix(line, "## "):
			return blocks
		case !in && strings.TrimSpace(line) == "```sh":
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, line)
		}
	}
	if in {
		t.Fatalf("README.md: a ```sh block in %q is not closed", heading)
	}
	return blocks
}

// TestREADMEWalkThrough runs the README's walk-through as a new user pastes
// it: every ```sh block of the section, read from README.md now (so the two
// cannot drift), in order, in one bash -euo pipefail in an empty folder that
// has the repository's scripts/, with station on $PATH and SWTPM_BASE_PORT
// chosen free. Every command must succeed; both units pass, QA's verify
// passes, the auditor's verify passes, the tpm2-tools cross-check shows the
// auths station promises, the README's last block stops the TPMs (and the
// test stops them anyway when it fails), and everything the walk-through
// wrote is ignored by the repository's .gitignore.
func TestREADMEWalkThrough(t *testing.T) {
	for _, tool := range []string{"bash", "swtpm", "swtpm_setup", "swtpm_localca", "certtool", "tpm2_getcap", "tpm2_readpublic", "tpm2_shutdown", "openssl", "sha256sum", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (CI=true: the README walk-through cannot be skipped); run scripts/deps.sh", tool)
			}
			t.Skipf("%s not installed; run scripts/deps.sh", tool)
		}
	}
	root := repoRoot(t)
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := readmeBlocks(t, string(readme), walkThroughSection)
	script := strings.Join(blocks, "")
	if len(blocks) < 5 {
		t.Fatalf("found %d sh blocks in %q, want the whole walk-through:\n%s", len(blocks), walkThroughSection, script)
	}
	m := regexp.MustCompile(`scripts/swtpm\.sh start (\d+) (\S+)`).FindStringSubmatch(script)
	if m == nil {
		t.Fatal("the walk-through does not start its TPMs with scripts/swtpm.sh start N DIR")
	}
	tpms, stateDir := m[1], m[2]

	// Another process may take the ports between FreePorts and swtpm's
	// bind: swtpm.sh then says so, and the walk-through starts again afresh.
	var out, stderr string
	for attempt := 1; ; attempt++ {
		out, stderr, err = runWalkThrough(t, root, script, stateDir)
		if err == nil || attempt == 3 || !strings.Contains(stderr, "is in use") {
			break
		}
		t.Logf("attempt %d: a port was taken, trying other ports:\n%s", attempt, stderr)
	}
	if err != nil {
		t.Fatalf("the README walk-through failed: %v\nstdout:\n%s\nstderr (bash -x):\n%s", err, out, stderr)
	}

	for _, want := range []string{
		`(?m)^PASS\s+SN-0001\s`,                                               // provision
		`(?m)^PASS\s+SN-0002\s`,                                               // provision on the second TPM
		`(?m)^\d+ checks: (\d+) passed, 0 warnings, 0 failed$`,                // doctor, with the line key's password
		`(?m)^unit SN-0001: PASS \(`,                                          // QA verify
		`(?m)^exported 2 enrollments`,                                         // enroll export
		`(?m)^audit trail of station/line1-st01 verified: \d+ records`,        // the auditor's verify
		`lockoutAuthSet:\s+1`, `ownerAuthSet:\s+0`, `endorsementAuthSet:\s+0`, // tpm2-tools
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the walk-through's output lacks %s:\n%s", want, out)
		}
	}
	n, _ := strconv.Atoi(tpms)
	for i := range n {
		if !strings.Contains(out, "stopped tpm"+strconv.Itoa(i)+" ") {
			t.Errorf("the walk-through did not stop tpm%d:\n%s", i, out)
		}
	}
}

// runWalkThrough runs script in a new folder with free swtpm ports and
// returns its stdout and stderr. The TPMs in stateDir are stopped when the
// test ends, whatever happened.
func runWalkThrough(t *testing.T, root, script, stateDir string) (stdout, stderr string, err error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(root, "scripts"), filepath.Join(dir, "scripts")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".walk-through.sh"), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := swtpmtest.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	// Under -race every station process would sleep 1 s at exit
	// (atexit_sleep_ms); the walk-through runs some twenty of them.
	env := []string{"SWTPM_BASE_PORT=" + strconv.Itoa(base), "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STATION_") && !strings.HasPrefix(kv, "SWTPM_BASE_PORT=") && !strings.HasPrefix(kv, "GORACE=") {
			env = append(env, kv)
		}
	}
	t.Cleanup(func() {
		// swtpm.sh stop: TPM2_Shutdown(CLEAR), then the process by its pid;
		// nothing to do when the walk-through's own stop ran.
		c := exec.Command(filepath.Join(root, "scripts", "swtpm.sh"), "stop", stateDir)
		c.Dir, c.Env = dir, env
		if b, err := c.CombinedOutput(); err != nil {
			t.Errorf("scripts/swtpm.sh stop %s: %v\n%s", stateDir, err, b)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-x", ".walk-through.sh")
	c.Dir, c.Env = dir, env
	var o, e strings.Builder
	c.Stdout, c.Stderr = &o, &e
	err = c.Run()
	if err == nil {
		checkIgnored(t, root, dir)
	}
	return o.String(), e.String(), err
}

// checkIgnored requires every file the walk-through wrote in dir to be
// ignored by the repository's .gitignore, as if dir were the repository's
// root.
func checkIgnored(t *testing.T, root, dir string) {
	t.Helper()
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == "." || d.IsDir():
		case rel == "scripts" || rel == ".walk-through.sh":
			// the repository's own, and this test's
		default:
			paths = append(paths, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("the walk-through wrote no files")
	}
	c := exec.Command("git", "-C", root, "check-ignore", "--no-index", "--verbose", "--non-matching", "--stdin")
	c.Stdin = strings.NewReader(strings.Join(paths, "\n") + "\n")
	b, err := c.Output()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) { // 1: none ignored
		t.Fatalf("git check-ignore: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// "SOURCE:LINE:PATTERN\tPATH"; "::\tPATH" when nothing matched.
		if src, p, _ := strings.Cut(line, "\t"); src == "::" || strings.Contains(src, ":!") {
			t.Errorf("the walk-through writes %s, which .gitignore does not ignore", p)
		}
	}
}

package swtpmtest_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/tpmops"
)

// freeRun finds P such that P..P+n-1 are free on 127.0.0.1.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	p, err := swtpmtest.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// needScript skips (fails under CI=true) without swtpm, and returns the
// script's path.
func needScript(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"swtpm", "swtpm_setup", "swtpm_localca", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed", tool)
			}
			t.Skipf("%s not installed", tool)
		}
	}
	script, err := filepath.Abs("../../scripts/swtpm.sh")
	if err != nil {
		t.Fatal(err)
	}
	return script
}

// TestScript runs scripts/swtpm.sh as the README does: two TPMs with EK
// certificates from a CA in the folder, usable by tpmops, stopped cleanly.
func TestScript(t *testing.T) {
	script := needScript(t)
	dir := t.TempDir()
	var base int
	try := func(args ...string) (string, error) {
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "SWTPM_BASE_PORT="+strconv.Itoa(base))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := try(args...)
		if err != nil {
			t.Fatalf("swtpm.sh %v: %v\n%s", args, err, out)
		}
		return out
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			run("stop", dir)
		}
	})
	// Another program (another package's swtpm) may take a port between
	// freeRun and swtpm's bind: the script then says so, starts nothing,
	// and the test tries other ports.
	var out string
	for attempt := 1; ; attempt++ {
		base = freeRun(t, 4)
		var err error
		if out, err = try("start", "2", dir); err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(out, "is in use") {
			t.Fatalf("swtpm.sh start 2: %v\n%s", err, out)
		}
		t.Logf("attempt %d: a port was taken, trying other ports:\n%s", attempt, out)
		run("stop", dir) // a TPM started before the taken port, if any
	}
	roots, err := tpmops.LoadVendorRoots(filepath.Join(dir, "ca", "vendor-roots"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for i := 0; i < 2; i++ {
		addr := "swtpm://127.0.0.1:" + strconv.Itoa(base+2*i)
		if !strings.Contains(out, addr) {
			t.Fatalf("start output lacks %s:\n%s", addr, out)
		}
		tp, err := tpmops.Open(addr)
		if err != nil {
			t.Fatal(err)
		}
		ek, _, err := tp.EnsureEK(tpmops.RSA2048, nil)
		if err != nil {
			t.Fatal(err)
		}
		der, err := tp.ReadEKCert(tpmops.RSA2048)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tpmops.VerifyEKCert(der, ek.Pub, roots, nil, time.Now()); err != nil {
			t.Fatalf("tpm%d: %v", i, err)
		}
		tp.Close()
		b, err := os.ReadFile(filepath.Join(dir, "tpm"+strconv.Itoa(i), "pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		pids = append(pids, pid)
	}
	// Starting again is idempotent.
	if out := run("start", "2", dir); strings.Count(out, "already running") != 2 {
		t.Fatalf("second start:\n%s", out)
	}
	out = run("stop", dir)
	stopped = true
	if strings.Count(out, "stopped") != 2 || strings.Contains(out, "Shutdown failed") {
		t.Fatalf("stop:\n%s", out)
	}
	for _, pid := range pids {
		if syscallKill0(pid) == nil {
			t.Fatalf("pid %d still running", pid)
		}
	}
}

// TestScriptPortTaken: when another program holds one of the ports, start
// names that port and SWTPM_BASE_PORT on stderr, exits 1, and leaves no
// swtpm running (every port is checked before any TPM starts); a bad
// SWTPM_BASE_PORT, or a DIR swtpm cannot use, is refused the same way.
func TestScriptPortTaken(t *testing.T) {
	script := needScript(t)
	port := func(p int) string { return strconv.Itoa(p) }
	for _, tc := range []struct {
		name, basePort string // "": free ports found by the subtest
		sub            string // DIR's last element
		taken          int    // offset from base held by another program; -1 none
		bindOnly       bool   // held without listening: only swtpm's bind finds it
		want           func(base int) []string
	}{
		{"second TPM's command port", "", "line", 2, false, func(base int) []string {
			return []string{"tpm1: port " + port(base+2) + " on 127.0.0.1 is in use", "SWTPM_BASE_PORT", "now P=" + port(base)}
		}},
		{"first TPM's control port", "", "line", 1, false, func(base int) []string {
			return []string{"tpm0: port " + port(base+1) + " on 127.0.0.1 is in use", "SWTPM_BASE_PORT"}
		}},
		{"first TPM's command port bound only", "", "line", 0, true, func(base int) []string {
			return []string{"tpm0: port " + port(base) + " or " + port(base+1) + " on 127.0.0.1 is in use", "SWTPM_BASE_PORT"}
		}},
		{"a comma in DIR", "", "a,b", -1, false, func(int) []string { return []string{"a,b: swtpm cannot use a folder whose path has a comma"} }},
		{"not a port", "23x", "line", -1, false, func(int) []string { return []string{"SWTPM_BASE_PORT=23x"} }},
		{"past the last port", "65534", "line", -1, false, func(int) []string { return []string{"SWTPM_BASE_PORT=65534", "below 65536"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Free ports found here, just before the script checks them:
			// the shorter the time, the smaller the chance that another
			// program (another package's swtpm) takes one meanwhile and the
			// script names that one instead.
			base := freeRun(t, 4)
			basePort := tc.basePort
			if basePort == "" {
				basePort = port(base)
			}
			switch {
			case tc.bindOnly:
				defer bindOnly(t, base+tc.taken)()
			case tc.taken >= 0:
				l, err := net.Listen("tcp", "127.0.0.1:"+port(base+tc.taken))
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
			}
			dir := filepath.Join(t.TempDir(), tc.sub)
			cmd := exec.Command(script, "start", "2", dir)
			cmd.Env = append(os.Environ(), "SWTPM_BASE_PORT="+basePort)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			t.Cleanup(func() { _ = exec.Command(script, "stop", dir).Run() })
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("start: %v, want exit 1\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
			}
			for _, w := range tc.want(base) {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if stdout.Len() != 0 {
				t.Errorf("start printed %q: no TPM may start", stdout.String())
			}
			if pids, _ := filepath.Glob(filepath.Join(dir, "tpm*", "pid")); len(pids) != 0 {
				t.Errorf("pid files %v: no TPM may start", pids)
			}
		})
	}
}

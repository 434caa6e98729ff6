package swtpmtest_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/tpmops"
)

// freeRun finds P such that P..P+n-1 are free on 127.0.0.1.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		ok := true
		var ls []net.Listener
		for i := 1; i < n && ok; i++ {
			li, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, li)
		}
		l.Close()
		for _, li := range ls {
			li.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatal("no free port run")
	return 0
}

// TestScript runs scripts/swtpm.sh as the README does: two TPMs with EK
// certificates from a CA in the folder, usable by tpmops, stopped cleanly.
func TestScript(t *testing.T) {
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
	dir := t.TempDir()
	base := freeRun(t, 4)
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "SWTPM_BASE_PORT="+strconv.Itoa(base))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("swtpm.sh %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			run("stop", dir)
		}
	})
	out := run("start", "2", dir)
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

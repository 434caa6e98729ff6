package cmd

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/factory-id/station/internal/ptytest"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
)

// lineJSON is one object of station line's output.
type lineJSON struct {
	Serial     string `json:"serial"`
	Result     string `json:"result"`
	FailedStep string `json:"failed_step"`
	Error      string `json:"error"`
	Resumed    bool   `json:"resumed"`
	ExitCode   int    `json:"exit_code"`
}

func parseLines(t *testing.T, out string) []lineJSON {
	t.Helper()
	var rs []lineJSON
	for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
		if ln == "" {
			continue
		}
		var r lineJSON
		if err := json.Unmarshal([]byte(ln), &r); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", ln, err)
		}
		rs = append(rs, r)
	}
	return rs
}

// lineFixtures starts n swtpm fixtures and returns the variables naming
// them (f1, f2...) and a flash target folder per serial.
func (l *line) lineFixtures(t *testing.T, vendor *swtpmtest.CA, n int) (env []string, addrs []string) {
	t.Helper()
	var fx []string
	for i := 1; i <= n; i++ {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		addrs = append(addrs, inst.Addr)
		fx = append(fx, fmt.Sprintf("f%d=%s", i, inst.Addr))
	}
	os.MkdirAll(filepath.Join(l.dir, "units"), 0o700)
	return with(l.env, "STATION_LINE_FIXTURES="+strings.Join(fx, ","), "STATION_FLASH_TARGET=dir:"+filepath.Join(l.dir, "units", "{serial}")), addrs
}

// provisionDone counts a serial's provision.done records in the audit log.
func (l *line) provisionDone(t *testing.T, serial string) int {
	n := 0
	for _, r := range l.auditRecords(t, serial) {
		if r["event"] == "provision.done" {
			n++
		}
	}
	return n
}

// TestLineSession feeds scans through a pipe to three swtpm fixtures: each
// unit passes, a bad line is an error object and the session goes on, a
// serial scanned again is "already provisioned" without a second run, and
// the audit log verifies.
func TestLineSession(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("swtpm tests run on Linux")
	}
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	env, addrs := l.lineFixtures(t, vendor, 3)
	c := exec.Command(l.bin, "line")
	c.Env = env
	c.Stdin = strings.NewReader("LS-1\nLS-2,f2\n\nbad serial!\nLS-3,f9\nLS-1\n" + "LS-4," + addrs[2] + "\n")
	var out, errb strings.Builder
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitUsage {
		t.Fatalf("station line: %v (want exit 2: the failures were bad lines)\n%s%s", err, out.String(), errb.String())
	}
	got := map[string][]lineJSON{}
	for _, r := range parseLines(t, out.String()) {
		got[r.Serial] = append(got[r.Serial], r)
	}
	for _, sn := range []string{"LS-2", "LS-4"} {
		if rs := got[sn]; len(rs) != 1 || rs[0].Result != "pass" || rs[0].ExitCode != 0 {
			t.Errorf("%s: %+v", sn, rs)
		}
	}
	if rs := got["LS-1"]; len(rs) != 2 || rs[0].Result != "pass" || rs[1].Result != "already-provisioned" || rs[1].ExitCode != 0 {
		t.Errorf("LS-1 scanned twice: %+v", rs)
	}
	if rs := got["bad serial!"]; len(rs) != 1 || rs[0].Result != "fail" || rs[0].ExitCode != ExitUsage || !strings.Contains(rs[0].Error, "line 4") {
		t.Errorf("bad line: %+v", rs)
	}
	if rs := got["LS-3"]; len(rs) != 1 || rs[0].ExitCode != ExitUsage || !strings.Contains(rs[0].Error, `no fixture "f9"`) {
		t.Errorf("unknown fixture: %+v", rs)
	}
	if n := len(parseLines(t, out.String())); n != 6 {
		t.Errorf("%d objects for 6 non-blank lines:\n%s", n, out.String())
	}
	if !strings.Contains(errb.String(), "4 passed, 2 failed") || !strings.Contains(errb.String(), "hint: scan the unit's label again") {
		t.Errorf("stderr:\n%s", errb.String())
	}
	// LS-2 went on the fixture it named.
	js, _, _ := l.run("units", "show", "LS-2", "-o", "json")
	u, err := parseUnitShow(js)
	if err != nil || u.TPMAddress != addrs[1] {
		t.Errorf("LS-2 on %q, want f2 (%s): %v", u.TPMAddress, addrs[1], err)
	}
	if n := l.provisionDone(t, "LS-1"); n != 1 {
		t.Errorf("LS-1 provisioned %d times, want once", n)
	}
	if _, errOut, code := l.run("audit", "verify"); code != 0 {
		t.Errorf("audit verify after the session: exit %d: %s", code, errOut)
	}
}

// TestLineStopResumes: SIGTERM while a unit is on its fixture journals it
// (the step in progress finishes), the session says how to resume, and
// station provision then finishes the unit.
func TestLineStopResumes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("swtpm tests run on Linux")
	}
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	env, addrs := l.lineFixtures(t, vendor, 1)
	c := exec.Command(l.bin, "line", "--verbose")
	c.Env = env
	stdin, _ := c.StdinPipe()
	stderr, _ := c.StderrPipe()
	var out strings.Builder
	c.Stdout = &out
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	fmt.Fprintln(stdin, "ST-1") // stdin stays open: the session is mid-shift
	var errText strings.Builder
	sc := bufio.NewScanner(stderr)
	signalled := false
	for sc.Scan() {
		errText.WriteString(sc.Text() + "\n")
		if !signalled && strings.HasSuffix(sc.Text(), "serial=ST-1 step=ek") {
			c.Process.Signal(syscall.SIGTERM)
			signalled = true
		}
	}
	err := c.Wait()
	if !signalled {
		t.Fatalf("the unit never started:\n%s", errText.String())
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitFailed {
		t.Fatalf("station line after SIGTERM: %v\n%s%s", err, out.String(), errText.String())
	}
	rs := parseLines(t, out.String())
	if len(rs) != 1 || rs[0].Serial != "ST-1" || rs[0].Result != "fail" {
		t.Fatalf("output after SIGTERM: %+v", rs)
	}
	resume := "station provision --serial ST-1 --tpm " + addrs[0]
	if !strings.Contains(errText.String(), resume) {
		t.Errorf("no resume instruction %q in:\n%s", resume, errText.String())
	}
	js, _, _ := l.run("units", "show", "ST-1", "-o", "json")
	u, err := parseUnitShow(js)
	if err != nil || u.Status == store.StatusProvisioned || !u.StepDone("ek") {
		t.Fatalf("ST-1 after the stop: status %q, ek done %v (%v); want journaled and unfinished", u.Status, u.StepDone("ek"), err)
	}
	o, errOut, code := l.runEnv(env, "-o", "json", "provision", "--serial", "ST-1", "--tpm", addrs[0])
	if r := parseLines(t, o); code != 0 || len(r) != 1 || r[0].Result != "pass" || !r[0].Resumed {
		t.Fatalf("provision after the stop: exit %d: %s%s", code, o, errOut)
	}
	if _, errOut, code := l.run("audit", "verify"); code != 0 {
		t.Errorf("audit verify: exit %d: %s", code, errOut)
	}
}

// TestLineOnTerminal: on a terminal the line key's password is asked once
// (never echoed); with NO_COLOR units are plain lines naming their
// fixture; Ctrl-C ends the session.
func TestLineOnTerminal(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("swtpm tests run on Linux")
	}
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	env, _ := l.lineFixtures(t, vendor, 1)
	c := exec.Command(l.bin, "line")
	c.Env = append(without(env, "STATION_PKI_KEY_PASSWORD", "TERM"), l.encryptLineKey(t), "NO_COLOR=1") // plain lines (TestScreenLine: the live screen)
	term, err := ptytest.Start(c)
	if err != nil {
		t.Fatal(err)
	}
	const wait = time.Minute // a deadline against a hang, not a delay
	steps := []func() error{
		func() error { return term.Expect("Password of the line key", wait) },
		func() error { return term.Send(agentTestPassword) },
		func() error { return term.Expect("scan SERIAL[,FIXTURE]", wait) },
		func() error { return term.Send("PT-1") },
		func() error { return term.Expect("PASS  PT-1", wait) },
		func() error { return term.Send("PT-1") },
		func() error { return term.Expect("already provisioned", wait) },
		func() error { return term.Send("\x03") }, // Ctrl-C
	}
	for i, step := range steps {
		if err := step(); err != nil {
			term.Wait(time.Second)
			t.Fatalf("step %d: %v\nscreen:\n%s", i, err, term.Screen())
		}
	}
	if err := term.Wait(wait); err != nil {
		t.Fatalf("station line after Ctrl-C: %v\n%s", err, term.Screen())
	}
	screen := term.Screen()
	if strings.Contains(screen, agentTestPassword) || !strings.Contains(screen, "[f1] PASS  PT-1") || strings.Contains(screen, `{"serial"`) {
		t.Errorf("screen:\n%s", screen)
	}
}

// TestLineKilledResumesInLine: station line killed (SIGKILL, nothing
// journaled on the way out) in the middle of a unit; the next session
// finishes the unit when it is scanned again.
func TestLineKilledResumesInLine(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("swtpm tests run on Linux")
	}
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := newLine(t, vendor)
	env, _ := l.lineFixtures(t, vendor, 1)
	c := exec.Command(l.bin, "line", "--verbose")
	c.Env = env
	stdin, _ := c.StdinPipe()
	stderr, _ := c.StderrPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "KL-1")
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.HasSuffix(sc.Text(), "serial=KL-1 step=certificate") {
			c.Process.Kill()
			break
		}
	}
	for sc.Scan() {
	}
	c.Wait()
	c = exec.Command(l.bin, "line")
	c.Env = env
	c.Stdin = strings.NewReader("KL-1\n")
	out, err := c.Output()
	if rs := parseLines(t, string(out)); err != nil || len(rs) != 1 || rs[0].Result != "pass" || !rs[0].Resumed {
		t.Fatalf("the next session: %v: %s", err, out)
	}
	if n := l.provisionDone(t, "KL-1"); n != 1 {
		t.Errorf("KL-1 recorded done %d times", n)
	}
	if _, errOut, code := l.run("audit", "verify"); code != 0 {
		t.Errorf("audit verify: exit %d: %s", code, errOut)
	}
}

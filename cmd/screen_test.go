package cmd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/factory-id/station/internal/ptytest"
	"github.com/factory-id/station/internal/swtpmtest"
)

// The operator's screen, driven in a pseudo-terminal: station provision and
// verify on swtpm units whose flash tool (internal/fakeflasher in gate
// mode) works until the test opens the unit's gate, so every state of the
// screen can be waited for.

var (
	flasherOnce sync.Once
	flasherBin  string
	flasherErr  error
)

// gatedFlasher builds internal/fakeflasher once per test binary.
func gatedFlasher(t testing.TB) string {
	t.Helper()
	flasherOnce.Do(func() {
		dir, err := os.MkdirTemp("", "station-fakeflasher-")
		if err != nil {
			flasherErr = err
			return
		}
		flasherBin = filepath.Join(dir, "fakeflasher")
		if out, err := exec.Command("go", "build", "-o", flasherBin, "../internal/fakeflasher").CombinedOutput(); err != nil {
			flasherErr = fmt.Errorf("building fakeflasher: %v\n%s", err, out)
		}
	})
	if flasherErr != nil {
		t.Fatal(flasherErr)
	}
	return flasherBin
}

// screenLine is a station whose flash target exec:fake is the gated fake
// flasher, with one swtpm unit per serial.
type screenLine struct {
	*line
	vendor *swtpmtest.CA
	gates  string
	tpm    map[string]string
}

func newScreenLine(t *testing.T, serials ...string) *screenLine {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("swtpm tests run on Linux")
	}
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	l := &screenLine{line: newLine(t, vendor), vendor: vendor, gates: t.TempDir(), tpm: map[string]string{}}
	devs := t.TempDir()
	b, err := os.ReadFile(l.config)
	if err != nil {
		t.Fatal(err)
	}
	tools := fmt.Sprintf(`    tools:
        fake:
            command: %s
            args: [write, -device, "%s/{serial}.img", -firmware, "{firmware}", -bundle, "{bundle_file}", -serial, "{serial}"]
            readback: [read, -device, "%s/{serial}.img"]
            timeout: 2m
            env: [FAKEFLASHER_MODE, FAKEFLASHER_GATE]
`, gatedFlasher(t), devs, devs)
	cfg := strings.Replace(string(b), "    tools: {}\n", tools, 1)
	if cfg == string(b) {
		t.Fatal("the demo config has no empty flash.tools to replace")
	}
	if err := os.WriteFile(l.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	// The screen decides by the terminal and these variables alone.
	var env []string
	for _, kv := range l.env {
		if k, _, _ := strings.Cut(kv, "="); k != "NO_COLOR" && k != "TERM" && !strings.HasPrefix(k, "FAKEFLASHER_") {
			env = append(env, kv)
		}
	}
	l.env = append(env, "TERM=xterm-256color", "FAKEFLASHER_MODE=gate", "FAKEFLASHER_GATE="+l.gates, "STATION_FLASH_TARGET=exec:fake")
	for _, s := range serials {
		l.tpm[s] = swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor}).Addr
	}
	return l
}

// open lets serial's flash tool finish as mode ("ok", "fail").
func (l *screenLine) open(serial, mode string) {
	l.t.Helper()
	tmp := filepath.Join(l.gates, "."+serial)
	if err := os.WriteFile(tmp, []byte(mode), 0o600); err != nil {
		l.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(l.gates, serial)); err != nil {
		l.t.Fatal(err)
	}
}

// batch writes a batch file of serials, in that order.
func (l *screenLine) batch(serials ...string) string {
	l.t.Helper()
	var b strings.Builder
	b.WriteString("serial,tpm\n")
	for _, s := range serials {
		fmt.Fprintf(&b, "%s,%s\n", s, l.tpm[s])
	}
	p := filepath.Join(l.dir, "tray.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// pty starts station on a pseudo-terminal with extra environment.
func (l *screenLine) pty(env []string, args ...string) *ptytest.Term {
	l.t.Helper()
	c := l.cmd(args...)
	c.Env = append(append([]string{}, l.env...), env...)
	term, err := ptytest.Start(c)
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { term.Wait(time.Minute) })
	return term
}

const screenTimeout = 2 * time.Minute // a deadline against a hung program, not a delay

func onScreen(t *testing.T, term *ptytest.Term, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%v\nscreen so far:\n%s", err, term.Text())
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// spinning matches a step shown in progress: a spinner frame, the step,
// its time so far.
func spinning(step string) *regexp.Regexp {
	return regexp.MustCompile(`[⣾⣽⣻⢿⡿⣟⣯⣷] +` + regexp.QuoteMeta(step) + ` +(\d+\.\d) s`)
}

// TestScreenUnit: one unit on a terminal shows each step as it runs, the
// flash step with a spinner and a clock that moves, then a large green PASS
// with the registration ID; a failing unit ends in a large FAIL naming the
// step, with the hint; verify shows its checks the same way.
func TestScreenUnit(t *testing.T) {
	l := newScreenLine(t, "SCR-1", "SCR-2")

	term := l.pty(nil, "provision", "--serial", "SCR-1", "--tpm", l.tpm["SCR-1"])
	onScreen(t, term, term.Expect("provision SCR-1", screenTimeout))
	// The steps before flash are done (✓) while the tool is still at work.
	onScreen(t, term, term.WaitFor("certificate done and flash running", func(s string) bool {
		return strings.Contains(s, "✓ certificate") && spinning("flash").MatchString(s)
	}, screenTimeout))
	// The clock of the running step moves on screen.
	onScreen(t, term, term.WaitFor("flash's time past 0.5 s", func(s string) bool {
		m := spinning("flash").FindAllStringSubmatch(s, -1)
		if len(m) == 0 {
			return false
		}
		secs, _ := strconv.ParseFloat(m[len(m)-1][1], 64)
		return secs >= 0.5
	}, screenTimeout))
	if s := term.Text(); strings.Contains(s, "PASS") || strings.Contains(s, "ownership") {
		t.Fatalf("a verdict or a later step before the flash tool finished:\n%s", s)
	}
	l.open("SCR-1", "ok")
	onScreen(t, term, term.Expect("PASS  SCR-1", screenTimeout))
	onScreen(t, term, term.Expect("registration ID ", screenTimeout))
	if err := term.Wait(screenTimeout); err != nil {
		t.Fatalf("provision on a terminal: %v\n%s", err, term.Text())
	}
	raw := term.Screen()
	for _, want := range []string{"✓ ownership", "✓ record", "█████"} {
		if !strings.Contains(term.Text(), want) {
			t.Errorf("final screen lacks %q:\n%s", want, term.Text())
		}
	}
	if !hasSGR(raw, "32") {
		t.Errorf("the PASS is not green:\n%q", raw)
	}

	// A failing flash tool: FAIL at the flash step, with the hint, exit 1,
	// and the error shown once (on the screen, not again on stderr).
	term = l.pty(nil, "provision", "--serial", "SCR-2", "--tpm", l.tpm["SCR-2"])
	onScreen(t, term, term.WaitFor("flash running", spinning("flash").MatchString, screenTimeout))
	l.open("SCR-2", "fail")
	onScreen(t, term, term.Expect("FAIL  SCR-2  at step flash", screenTimeout))
	onScreen(t, term, term.Expect("→ check the flash target and re-run provision for this unit", screenTimeout))
	if code := exitCode(term.Wait(screenTimeout)); code != ExitFailed {
		t.Fatalf("failed flash: exit %d, want %d\n%s", code, ExitFailed, term.Text())
	}
	if n := strings.Count(term.Text(), "check the flash target"); n != 1 {
		t.Errorf("the hint is shown %d times, want once:\n%s", n, term.Text())
	}
	if !hasSGR(term.Screen(), "31") {
		t.Error("the FAIL is not red")
	}

	// verify: each check live, then the verdict.
	term = l.pty(nil, "verify", "--serial", "SCR-1", "--tpm", l.tpm["SCR-1"])
	onScreen(t, term, term.Expect("verify SCR-1", screenTimeout))
	onScreen(t, term, term.Expect("PASS  SCR-1", screenTimeout))
	if err := term.Wait(screenTimeout); err != nil {
		t.Fatalf("verify on a terminal: %v\n%s", err, term.Text())
	}
	for _, check := range []string{"✓ record", "✓ dps-attestation", "✓ no-leaks", "10/10 checks passed"} {
		if !strings.Contains(term.Text(), check) {
			t.Errorf("verify screen lacks %q:\n%s", check, term.Text())
		}
	}
}

// summaryRows returns the summary table's rows (serial → the row's text)
// in the order printed, from the last table on the screen.
func summaryRows(t *testing.T, text string) ([]string, map[string]string) {
	t.Helper()
	i := strings.LastIndex(text, "│ serial ")
	if i < 0 {
		t.Fatalf("no summary table:\n%s", text)
	}
	var order []string
	rows := map[string]string{}
	for _, line := range strings.Split(text[i:], "\n")[1:] {
		f := strings.Fields(strings.Trim(line, "│ "))
		if len(f) == 0 || !strings.HasPrefix(f[0], "B-") {
			continue
		}
		order = append(order, f[0])
		rows[f[0]] = line
	}
	return order, rows
}

// TestScreenBatch: a batch on a terminal shows a row per fixture and a
// progress bar with done and failed counts, a line per finished unit; the
// summary lists the units in the CSV's order (not the order they
// finished), the failed serial with its step and hint, and units/hour.
func TestScreenBatch(t *testing.T) {
	serials := []string{"B-1", "B-2", "B-3"}
	l := newScreenLine(t, serials...)
	tray := l.batch(serials...)
	term := l.pty(nil, "provision", "--batch", tray, "--parallel", "3")
	onScreen(t, term, term.WaitFor("all three fixtures flashing", func(s string) bool {
		for _, sn := range serials {
			if !regexp.MustCompile(`[⣾⣽⣻⢿⡿⣟⣯⣷] +` + sn + ` +flash `).MatchString(s) {
				return false
			}
		}
		return true
	}, screenTimeout))
	onScreen(t, term, term.Expect("0/3 done", screenTimeout))

	// They finish out of the CSV's order: B-2 (fails), B-3, then B-1.
	l.open("B-2", "fail")
	onScreen(t, term, term.Expect("1/3 done · 1 failed", screenTimeout))
	l.open("B-3", "ok")
	onScreen(t, term, term.Expect("2/3 done · 1 failed", screenTimeout))
	l.open("B-1", "ok")
	code := exitCode(term.Wait(screenTimeout))
	text := term.Text()
	if code != ExitFailed {
		t.Fatalf("batch with a failed unit: exit %d, want %d\n%s", code, ExitFailed, text)
	}
	if !regexp.MustCompile(`FAIL +B-2 .*at flash: check the flash target`).MatchString(text) {
		t.Errorf("no line for the failed unit as it finished:\n%s", text)
	}
	order, rows := summaryRows(t, text)
	if strings.Join(order, ",") != "B-1,B-2,B-3" {
		t.Errorf("summary order %v, want the CSV's B-1,B-2,B-3:\n%s", order, text)
	}
	if r := rows["B-2"]; !strings.Contains(r, "FAIL") || !strings.Contains(r, "flash") || !strings.Contains(r, "check the flash target") {
		t.Errorf("the failed unit's summary row lacks its step or hint: %q", r)
	}
	for _, sn := range []string{"B-1", "B-3"} {
		if !strings.Contains(rows[sn], "PASS") {
			t.Errorf("summary row of %s: %q", sn, rows[sn])
		}
	}
	if !regexp.MustCompile(`2 passed, 1 failed · \d+ units/hour`).MatchString(text) {
		t.Errorf("no tally with units/hour:\n%s", text)
	}
}

// TestScreenInterrupt: Ctrl-C in the middle of a batch stops it cleanly:
// the units in flight (their flash tools killed) are journaled as
// interrupted, not failed, the unit not yet started is said so, the summary
// says how to resume each (never "check the flash target"); the next run
// resumes the interrupted unit to PASS and finishes the batch.
func TestScreenInterrupt(t *testing.T) {
	serials := []string{"B-1", "B-2", "B-3"}
	l := newScreenLine(t, serials...)
	tray := l.batch(serials...)
	term := l.pty(nil, "provision", "--batch", tray, "--parallel", "2")
	onScreen(t, term, term.WaitFor("two fixtures flashing", func(s string) bool {
		return regexp.MustCompile(`B-1 +flash `).MatchString(s) && regexp.MustCompile(`B-2 +flash `).MatchString(s)
	}, screenTimeout))
	onScreen(t, term, term.Interrupt())
	code := exitCode(term.Wait(screenTimeout))
	text := term.Text()
	if code == 0 {
		t.Fatalf("an interrupted batch exited 0:\n%s", text)
	}
	if strings.Contains(text, "check the flash target") {
		t.Errorf("an interrupt is blamed on the flash target:\n%s", text)
	}
	_, rows := summaryRows(t, text)
	for _, sn := range []string{"B-1", "B-2"} {
		if r := rows[sn]; !strings.Contains(r, "INTERRUPTED") || !strings.Contains(r, "interrupted: re-run `station provision --serial "+sn+"` to resume") {
			t.Errorf("summary row of %s in flight: %q\n%s", sn, r, text)
		}
	}
	if r := rows["B-3"]; !strings.Contains(r, "NOT STARTED") {
		t.Errorf("summary row of the unit never started: %q", r)
	}
	if !strings.Contains(text, "re-run `station provision --batch "+tray+" --parallel 2` to finish the batch") {
		t.Errorf("the summary does not say how to finish the batch:\n%s", text)
	}

	// Journaled where they stopped: resumable (not failed), audited as
	// interrupted.
	out, errOut, code := l.run("units", "list", "--status", "resumable")
	if code != 0 || !strings.Contains(out, "B-1") || !strings.Contains(out, "B-2") || strings.Contains(out, "B-3") {
		t.Fatalf("units list --status resumable (exit %d):\n%s%s", code, out, errOut)
	}
	if out, _, _ := l.run("units", "list", "--status", "failed"); strings.Contains(out, "B-") {
		t.Errorf("an interrupted unit is listed as failed:\n%s", out)
	}
	for _, sn := range []string{"B-1", "B-2"} {
		var cause any
		for _, r := range l.auditRecords(t, sn) {
			if r["event"] == "provision.failed" {
				cause = r["payload"].(map[string]any)["cause"]
			}
		}
		if cause != "interrupted" {
			t.Errorf("audit cause of %s's interrupted attempt: %v", sn, cause)
		}
	}

	// The next run resumes the interrupted unit to PASS, then the batch.
	l.open("B-1", "ok")
	l.open("B-2", "ok")
	l.open("B-3", "ok")
	term = l.pty(nil, "provision", "--serial", "B-1", "--tpm", l.tpm["B-1"])
	onScreen(t, term, term.Expect("PASS  B-1", screenTimeout))
	onScreen(t, term, term.Expect("resumed", screenTimeout))
	if err := term.Wait(screenTimeout); err != nil {
		t.Fatalf("resuming B-1: %v\n%s", err, term.Text())
	}
	out, errOut, code = l.run("provision", "--batch", tray)
	if code != 0 || strings.Count(out, "PASS") != 3 {
		t.Fatalf("finishing the batch: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code := l.run("audit", "verify"); code != 0 {
		t.Errorf("audit verify after the interrupt: exit %d: %s", code, errOut)
	}
}

// TestScreenPlain: piped, and on a terminal with NO_COLOR or TERM=dumb,
// provision and verify print today's plain lines, failures and hints
// included, without a single escape sequence.
func TestScreenPlain(t *testing.T) {
	l := newScreenLine(t, "P-1", "P-2")
	l.open("P-1", "ok")
	l.open("P-2", "fail")
	tray := l.batch("P-1", "P-2")

	out, errOut, code := l.run("provision", "--batch", tray)
	if code != ExitFailed {
		t.Fatalf("piped batch: exit %d\n%s%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^PASS  P-1  \S+  \d+ ms$`).MatchString(out) || !strings.Contains(out, "FAIL  P-2  at step flash") {
		t.Errorf("piped stdout is not the plain lines:\n%s", out)
	}
	if !strings.Contains(errOut, "hint: check the flash target") || !strings.Contains(errOut, "1 passed, 1 failed") {
		t.Errorf("piped stderr lacks the hint or the tally:\n%s", errOut)
	}
	if strings.Contains(out+errOut, "\x1b") {
		t.Errorf("escape codes in piped output:\n%q\n%q", out, errOut)
	}

	for _, env := range [][]string{{"NO_COLOR=1"}, {"TERM=dumb"}} {
		for _, args := range [][]string{
			{"provision", "--batch", tray},
			{"provision", "--serial", "P-1", "--tpm", l.tpm["P-1"]},
			{"verify", "--serial", "P-1", "--tpm", l.tpm["P-1"]},
		} {
			term := l.pty(env, args...)
			err := term.Wait(screenTimeout)
			raw := term.Screen()
			if strings.Contains(raw, "\x1b") {
				t.Errorf("%v %v: escape codes on the terminal:\n%q", env, args, raw)
			}
			want := "PASS  P-1"
			if args[0] == "verify" {
				want = "unit P-1: PASS (10/10 checks)"
			}
			if !strings.Contains(raw, want) {
				t.Errorf("%v %v (%v): no plain %q line:\n%s", env, args, err, want, raw)
			}
		}
	}
}

// TestScreenLine: station line on a terminal is the operator's live
// screen. Serials typed on standard input (the scanner) reach the session
// while the screen runs; each fixture's row shows its unit's step with a
// spinner and the steps done; a unit ends in a large PASS or FAIL with the
// one thing to do; the tally counts done and failed with units/hour (no
// total: no progress bar). Ctrl-C journals the unit in flight and the
// screen says how to resume it; the next session resumes it, and ends at
// the end of input (Ctrl-D) with its summary. Piped, the session writes
// JSON lines without an escape code.
func TestScreenLine(t *testing.T) {
	l := newScreenLine(t, "LN-1", "LN-2", "LN-3")
	l.env = append(l.env, fmt.Sprintf("STATION_LINE_FIXTURES=f1=%s,f2=%s,f3=%s", l.tpm["LN-1"], l.tpm["LN-2"], l.tpm["LN-3"]))
	flashing := func(serial string) *regexp.Regexp {
		return regexp.MustCompile(`[⣾⣽⣻⢿⡿⣟⣯⣷] +` + serial + ` +flash +\d+\.\d s +f\d +✓ ek ✓ srk ✓ device-key ✓ certificate · unit \d+\.\d s`)
	}

	term := l.pty(nil, "line")
	onScreen(t, term, term.Expect("scan SERIAL[,FIXTURE]", screenTimeout))
	onScreen(t, term, term.Send("LN-1,f1"))
	onScreen(t, term, term.WaitFor("LN-1 flashing on its row", flashing("LN-1").MatchString, screenTimeout))
	onScreen(t, term, term.Expect("0 done · 0 failed", screenTimeout))
	if s := term.Text(); strings.Contains(s, "0/") || strings.Contains(s, "ETA") {
		t.Errorf("a progress bar or an ETA in a session without a total:\n%s", s)
	}
	// The next unit is scanned while LN-1 is still on its fixture.
	onScreen(t, term, term.Send("LN-2,f2"))
	onScreen(t, term, term.WaitFor("LN-2 flashing too", flashing("LN-2").MatchString, screenTimeout))
	l.open("LN-1", "ok")
	onScreen(t, term, term.Expect("PASS  LN-1", screenTimeout))
	onScreen(t, term, term.Expect("registration ID", screenTimeout))
	onScreen(t, term, term.WaitFor("the tally with units/hour", regexp.MustCompile(`1 done · 0 failed · \d+ units/hour`).MatchString, screenTimeout))
	if !strings.Contains(term.Text(), "█") || !hasSGR(term.Screen(), "32") {
		t.Errorf("no large green PASS:\n%s", term.Text())
	}
	l.open("LN-2", "fail")
	onScreen(t, term, term.Expect("FAIL  LN-2  at step flash", screenTimeout))
	onScreen(t, term, term.Expect("→ check the flash target", screenTimeout))
	onScreen(t, term, term.WaitFor("the tally with a failure", regexp.MustCompile(`2 done · 1 failed`).MatchString, screenTimeout))

	// Ctrl-C while LN-3 flashes: journaled, and how to resume it is shown.
	onScreen(t, term, term.Send("LN-3,f3"))
	onScreen(t, term, term.WaitFor("LN-3 flashing", flashing("LN-3").MatchString, screenTimeout))
	onScreen(t, term, term.Interrupt())
	code := exitCode(term.Wait(screenTimeout))
	text := term.Text()
	if code == 0 {
		t.Fatalf("an interrupted session with a failure exited 0:\n%s", text)
	}
	order, rows := lineRows(text)
	if strings.Join(order, ",") != "LN-1,LN-2,LN-3" {
		t.Errorf("summary rows %v, want LN-1,LN-2,LN-3:\n%s", order, text)
	}
	if !strings.Contains(rows["LN-1"], "PASS") || !strings.Contains(rows["LN-2"], "FAIL") || !strings.Contains(rows["LN-3"], "INTERRUPTED") {
		t.Errorf("summary rows: %q\n%s", rows, text)
	}
	resume := "station provision --serial LN-3 --tpm " + l.tpm["LN-3"]
	if !strings.Contains(text, "1 passed, 1 failed, 1 interrupted") || !strings.Contains(text, "units/hour") ||
		!strings.Contains(strings.Join(strings.Fields(text), " "), resume) {
		t.Errorf("the summary lacks the tally or how to resume LN-3 (%s):\n%s", resume, text)
	}
	if strings.Contains(text, "LN-3,f3") || strings.Contains(text, "LN-2,f2") || strings.Contains(text, "LN-1,f1") {
		t.Errorf("the scanned lines were echoed into the screen:\n%s", text)
	}
	if out, errOut, code := l.run("units", "list", "--status", "resumable"); code != 0 || !strings.Contains(out, "LN-3") {
		t.Fatalf("LN-3 not resumable after Ctrl-C (exit %d):\n%s%s", code, out, errOut)
	}

	// The next session resumes LN-3 and ends at the end of input.
	l.open("LN-3", "ok")
	term = l.pty(nil, "line")
	onScreen(t, term, term.Expect("scan SERIAL[,FIXTURE]", screenTimeout))
	onScreen(t, term, term.Send("LN-3,f3"))
	onScreen(t, term, term.Expect("PASS  LN-3", screenTimeout))
	onScreen(t, term, term.Expect("resumed", screenTimeout))
	onScreen(t, term, term.Send("\x04")) // Ctrl-D: end of input
	if err := term.Wait(screenTimeout); err != nil {
		t.Fatalf("session ended by Ctrl-D: %v\n%s", err, term.Text())
	}
	if text := term.Text(); !strings.Contains(text, "1 passed, 0 failed") {
		t.Errorf("no summary after the end of input:\n%s", text)
	}

	// Piped: JSON lines, no escape code.
	c := l.cmd("line")
	c.Stdin = strings.NewReader("LN-1\n")
	out, errOut, code := runExit(t, c)
	if code != 0 || !strings.Contains(out, `"result":"already-provisioned"`) {
		t.Errorf("piped session: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, "\x1b") {
		t.Errorf("escape codes in piped output:\n%q\n%q", out, errOut)
	}
}

// lineRows returns the summary table's LN- rows in order (serial → row).
func lineRows(text string) ([]string, map[string]string) {
	i := strings.LastIndex(text, "│ serial ")
	if i < 0 {
		return nil, nil
	}
	var order []string
	rows := map[string]string{}
	for _, line := range strings.Split(text[i:], "\n")[1:] {
		f := strings.Fields(strings.Trim(line, "│ "))
		if len(f) == 0 || !strings.HasPrefix(f[0], "LN-") {
			continue
		}
		if _, seen := rows[f[0]]; !seen {
			order = append(order, f[0])
		}
		rows[f[0]] += line
	}
	return order, rows
}

// sgr matches a Select Graphic Rendition sequence (CSI params m).
var sgr = regexp.MustCompile(`\x1b\[([0-9;:]*)m`)

// hasSGR reports whether raw sets the graphic rendition param (e.g. "32",
// green foreground) in any SGR sequence: alone or with others ("1;32"), as
// the renderer combines them with what the cell before already had.
func hasSGR(raw, param string) bool {
	for _, m := range sgr.FindAllStringSubmatch(raw, -1) {
		if slices.Contains(strings.Split(m[1], ";"), param) {
			return true
		}
	}
	return false
}

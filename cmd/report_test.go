package cmd

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/station"
)

// shiftLine is a demo station (DEMO-0001 passed) on which more units were
// provisioned on the simulator, with failures injected: R-1 passes, R-3's
// flash target is not mounted, R-4's TPM holds no EK certificate (and the
// policy requires one), R-5's TPM does not answer.
func shiftLine(t *testing.T) *line {
	t.Helper()
	l := newSimBatch(t, 1).line
	for _, u := range []struct {
		args []string
		env  string
		code int
	}{
		{[]string{"--serial", "R-1", "--tpm", "sim:11"}, "", 0},
		{[]string{"--serial", "R-3", "--tpm", "sim:13", "--flash", "dir:" + filepath.Join(l.dir, "not-mounted")}, "", 1},
		{[]string{"--serial", "R-4", "--tpm", "sim:14"}, "STATION_TPM_REQUIRE_EK_CERT=true", 3},
		{[]string{"--serial", "R-5", "--tpm", swtpmtest.ClosedAddr(t)}, "", 5},
	} {
		c := l.cmd(append([]string{"provision"}, u.args...)...)
		if u.env != "" {
			c.Env = append(c.Env, u.env)
		}
		out, err := c.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		if code != u.code {
			t.Fatalf("provision %v: exit %d, want %d\n%s", u.args, code, u.code, out)
		}
	}
	return l
}

// TestReportCommand checks station report's numbers as JSON and text, and
// its flags' refusals (exit 2).
func TestReportCommand(t *testing.T) {
	l := shiftLine(t)
	out, errOut, code := l.run("report", "-o", "json")
	if code != 0 {
		t.Fatalf("report -o json: exit %d %s", code, errOut)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	checkSnakeCase(t, raw)
	var rep station.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if got := []int{rep.Attempted, rep.Passed, rep.Failed, rep.Resumed, rep.Attempts, rep.FailedAttempts}; !slices.Equal(got, []int{5, 2, 3, 0, 5, 3}) {
		t.Errorf("attempted, passed, failed, resumed, attempts, failed attempts = %v", got)
	}
	if got := counts(rep.FailuresByStep); got != "ek 2, flash 1" {
		t.Errorf("failures by step: %s", got)
	}
	if got := counts(rep.FailuresByCause); got != "flash-target 1, no-ek-cert 1, tpm-unreachable 1" {
		t.Errorf("failures by cause: %s", got)
	}
	if len(rep.StepTimes) != len(station.Steps) || rep.Expiry.Units != 2 || rep.To.Sub(rep.From) != 8*time.Hour {
		t.Errorf("step times %v, expiry %+v, window %s to %s", rep.StepTimes, rep.Expiry, rep.From, rep.To)
	}

	out, _, code = l.run("report")
	for _, re := range []string{
		`units: 5 attempted, 2 passed \(0 after a resume\), 3 failed; 5 attempts, 3 failed`,
		`failed attempts by step: ek 2, flash 1`,
		`(?m)^  R-3 +flash +flash-target +\S+ +dir:.*not-mounted`,
		`(?m)^  R-5 +ek +tpm-unreachable `,
		`(?m)^  srk +3 +[0-9.]+ +[0-9.]+ +[0-9.]+$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) || code != 0 {
			t.Errorf("report text (exit %d) lacks %q:\n%s", code, re, out)
		}
	}

	// A window before any of it.
	out, _, code = l.run("report", "--from", "2001-01-01", "--to", "2001-01-01T08:00:00Z", "-o", "json")
	if code != 0 || !strings.Contains(out, `"units_attempted":0`) || !strings.Contains(out, `"from":"2001-01-01T00:00:00Z"`) {
		t.Errorf("an empty window: exit %d %s", code, out)
	}
	for _, args := range [][]string{
		{"--since", "8h", "--from", "2001-01-01"},
		{"--since", "yesterday"},
		{"--since", "-1h"},
		{"--to", "2001-01-01"},
		{"--from", "01/02/2003"},
		{"--from", "2001-01-02", "--to", "2001-01-01"},
	} {
		if _, errOut, code := l.run(append([]string{"report"}, args...)...); code != 2 || errOut == "" {
			t.Errorf("report %v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
}

// TestReportHTML renders the report page in headless Chromium and reads
// the DOM it built: the numbers are there, every chart is an inline SVG
// with its bars, and the page loads nothing (no script, stylesheet, image
// or font from anywhere).
func TestReportHTML(t *testing.T) {
	browser := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			browser = p
			break
		}
	}
	if browser == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium not installed (CI=true: cannot skip; scripts/deps.sh installs it)")
		}
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	l := shiftLine(t)
	page := filepath.Join(l.dir, "shift", "report.html")
	os.MkdirAll(filepath.Dir(page), 0o755)
	out, errOut, code := l.run("report", "--out", page)
	if code != 0 || !strings.Contains(out, "5 units attempted, 2 passed, 3 failed") {
		t.Fatalf("report --out: exit %d %s%s", code, out, errOut)
	}
	src, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", "<link", "<img", "<iframe", "@import", "url(", "src=", "@font-face"} {
		if strings.Contains(strings.ToLower(string(src)), bad) {
			t.Errorf("the page holds %q: it must be self-contained", bad)
		}
	}
	// The only URL is the SVG namespace name, which nothing fetches.
	if urls := regexp.MustCompile(`https?://[^"\s]+`).FindAllString(string(src), -1); len(urls) != strings.Count(string(src), "http://www.w3.org/2000/svg") {
		t.Errorf("the page names URLs %v", urls)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// --no-sandbox: tests may run as root; a profile of its own per run.
	c := exec.CommandContext(ctx, browser, "--headless", "--no-sandbox", "--disable-gpu", "--user-data-dir="+t.TempDir(),
		"--dump-dom", "file://"+page)
	var stderr strings.Builder
	c.Stderr = &stderr
	dom, err := c.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	d := string(dom)
	for _, re := range []string{
		`id="units-attempted">5<`, `id="units-passed">2<`, `id="units-failed">3<`, `id="units-resumed">0<`,
		`id="attempts">5<`, `id="failed-attempts">3<`, `id="expiry-units">2<`,
		`<tr data-serial="R-3"><td>R-3</td><td>flash</td><td>flash-target</td>`,
		`<tr data-serial="R-4"><td>R-4</td><td>ek</td><td>no-ek-cert</td>`,
		`<tr data-serial="R-5"><td>R-5</td><td>ek</td><td>tpm-unreachable</td>`,
		`<tr data-step="ek"><td>ek</td><td class="num">3</td>`,
	} {
		if !regexp.MustCompile(re).MatchString(d) {
			t.Errorf("the rendered page lacks %s", re)
		}
	}
	// Each chart is an <svg> in the DOM with its bars.
	svgs := regexp.MustCompile(`(?s)<svg id="([a-z-]+)"[^>]*>(.*?)</svg>`).FindAllStringSubmatch(d, -1)
	bars := map[string][]string{}
	for _, s := range svgs {
		for _, r := range regexp.MustCompile(`<rect class="([a-z0-9]+)" data-name="([^"]+)"`).FindAllStringSubmatch(s[2], -1) {
			bars[s[1]] = append(bars[s[1]], r[1]+":"+r[2])
		}
	}
	if len(svgs) != 4 {
		t.Errorf("%d charts in the DOM, want 4", len(svgs))
	}
	if got := strings.Join(bars["failures-by-step"], " "); got != "failed:ek failed:flash" {
		t.Errorf("failures-by-step bars: %s", got)
	}
	if got := len(bars["step-times"]); got != 2*len(station.Steps) {
		t.Errorf("step-times: %d bars, want p50 and p95 for each of %d steps: %v", got, len(station.Steps), bars["step-times"])
	}
	if got := len(bars["failures-by-cause"]); got != 3 {
		t.Errorf("failures-by-cause: %d bars", got)
	}
	if !strings.Contains(strings.Join(bars["throughput"], " "), "passed:") || !strings.Contains(strings.Join(bars["throughput"], " "), "failed:") {
		t.Errorf("throughput bars: %v", bars["throughput"])
	}
}

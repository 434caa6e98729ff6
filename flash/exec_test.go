package flash

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
)

var (
	flasherOnce sync.Once
	flasherPath string
	flasherErr  error
	flasherDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if flasherDir != "" {
		os.RemoveAll(flasherDir)
	}
	os.Exit(code)
}

// fakeFlasher builds internal/fakeflasher once per test binary.
func fakeFlasher(t *testing.T) string {
	t.Helper()
	flasherOnce.Do(func() {
		flasherDir, flasherErr = os.MkdirTemp("", "fakeflasher-")
		if flasherErr != nil {
			return
		}
		flasherPath = filepath.Join(flasherDir, "fakeflasher")
		out, err := exec.Command("go", "build", "-o", flasherPath, "../internal/fakeflasher").CombinedOutput()
		if err != nil {
			flasherErr = fmt.Errorf("building the fake flasher: %v\n%s", err, out)
		}
	})
	if flasherErr != nil {
		t.Fatal(flasherErr)
	}
	return flasherPath
}

// rig is a fake flasher wired to a "device" file, with its logs.
type rig struct {
	dev, argvLog, envLog, pids, state string
	tool                              configs.FlashTool
}

func newRig(t *testing.T, mode string) *rig {
	t.Helper()
	dir := t.TempDir()
	r := &rig{dev: filepath.Join(dir, "device.img"), argvLog: filepath.Join(dir, "argv.log"),
		envLog: filepath.Join(dir, "env.log"), pids: filepath.Join(dir, "pids"), state: filepath.Join(dir, "state")}
	r.tool = configs.FlashTool{
		Command: fakeFlasher(t),
		Args: []string{"write", "-device", r.dev, "-firmware", "{firmware}", "-bundle", "{bundle_file}",
			"-serial", "{serial}", "-port", "{port}"},
		Readback: []string{"read", "-device", r.dev},
		Timeout:  configs.Duration(10 * time.Second),
		Port:     "/dev/ttyFAKE0",
		Env:      []string{"FAKEFLASHER_MODE", "FAKEFLASHER_ARGV_LOG", "FAKEFLASHER_ENV_LOG", "FAKEFLASHER_PIDS", "FAKEFLASHER_STATE", "FAKEFLASHER_FLAKY_N", "FAKEFLASHER_CHATTY"},
	}
	t.Setenv("FAKEFLASHER_MODE", mode)
	t.Setenv("FAKEFLASHER_ARGV_LOG", r.argvLog)
	t.Setenv("FAKEFLASHER_ENV_LOG", r.envLog)
	t.Setenv("FAKEFLASHER_PIDS", r.pids)
	t.Setenv("FAKEFLASHER_STATE", r.state)
	return r
}

func (r *rig) target(t *testing.T, spec string) *execTarget {
	t.Helper()
	tg := openOne(t, spec, configs.Flash{Tools: map[string]configs.FlashTool{"ff": r.tool}}, nil).(*execTarget)
	tg.backoff = 20 * time.Millisecond
	return tg
}

// argvs returns every argv the fake flasher was started with.
func (r *rig) argvs(t *testing.T) [][]string {
	t.Helper()
	f, err := os.Open(r.argvLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var a []string
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func (r *rig) writes(t *testing.T) [][]string {
	var w [][]string
	for _, a := range r.argvs(t) {
		if len(a) > 0 && a[0] == "write" {
			w = append(w, a)
		}
	}
	return w
}

func TestExecOK(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "ok")
	tg := r.target(t, "exec:ff")
	j := f.job(t, "SN-0200")
	res, err := tg.Write(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if res.Detail["readback"] != "bundle byte-for-byte" || res.Detail["write.attempts"] != "1" ||
		!strings.Contains(res.Detail["write.output"], "flashing unit SN-0200 on port /dev/ttyFAKE0") {
		t.Errorf("detail: %v", res.Detail)
	}
	w := r.writes(t)
	if len(w) != 1 {
		t.Fatalf("writes: %v", w)
	}
	var recorded []string
	if err := json.Unmarshal([]byte(res.Detail["write.argv"]), &recorded); err != nil || len(recorded) != 1+len(w[0]) || recorded[1] != "write" {
		t.Errorf("write.argv %q (%v)", res.Detail["write.argv"], err)
	}
	want := []string{"write", "-device", r.dev, "-firmware", "", "-bundle", "", "-serial", "SN-0200", "-port", "/dev/ttyFAKE0"}
	for i, a := range w[0] {
		if want[i] != "" && a != want[i] {
			t.Errorf("argv[%d] = %q, want %q", i, a, want[i])
		}
	}
	// The staging folder (with the bundle in it) is gone.
	if _, err := os.Stat(filepath.Dir(w[0][4])); !os.IsNotExist(err) {
		t.Errorf("staging folder left behind: %v", err)
	}
	j.StationKey = f.Key.Public()
	if err := tg.ReadBack(context.Background(), j); err != nil {
		t.Errorf("ReadBack: %v", err)
	}
	// Re-running provision on the same unit rewrites it.
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0200")); err != nil {
		t.Errorf("rewrite: %v", err)
	}
}

func TestExecReadbackFiles(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "ok")
	r.tool.Readback = []string{"read", "-device", r.dev, "-out", "{readback_bundle}", "-fw-out", "{readback_firmware}"}
	tg := r.target(t, "exec:ff")
	j := f.job(t, "SN-0201")
	res, err := tg.Write(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	if res.Detail["readback"] != "bundle and firmware byte-for-byte" {
		t.Errorf("detail: %v", res.Detail)
	}
	if err := tg.ReadBack(context.Background(), j); err != nil {
		t.Errorf("ReadBack: %v", err)
	}
	// The unit's firmware is swapped behind the station's back: QA sees it.
	fw, bd := readDevice(t, r.dev)
	writeDevice(t, r.dev, append(fw, 'X'), bd)
	if err := tg.ReadBack(context.Background(), j); !errors.Is(err, ErrReadback) {
		t.Errorf("ReadBack after firmware swap: %v", err)
	}
}

// readDevice/writeDevice speak the fake flasher's device format.
func readDevice(t *testing.T, path string) (fw, bd []byte) {
	t.Helper()
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img = img[8:]
	n := int(img[0])<<24 | int(img[1])<<16 | int(img[2])<<8 | int(img[3])
	fw, img = bytes.Clone(img[4:4+n]), img[4+n:]
	n = int(img[0])<<24 | int(img[1])<<16 | int(img[2])<<8 | int(img[3])
	return fw, bytes.Clone(img[4 : 4+n])
}

func writeDevice(t *testing.T, path string, fw, bd []byte) {
	t.Helper()
	img := []byte("FAKEDEV1")
	img = append(img, byte(len(fw)>>24), byte(len(fw)>>16), byte(len(fw)>>8), byte(len(fw)))
	img = append(img, fw...)
	img = append(img, byte(len(bd)>>24), byte(len(bd)>>16), byte(len(bd)>>8), byte(len(bd)))
	img = append(img, bd...)
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestExecFailRetries(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "fail")
	r.tool.Retries = 2
	tg := r.target(t, "exec:ff")
	start := time.Now()
	res, err := tg.Write(context.Background(), f.job(t, "SN-0202"))
	if !errors.Is(err, ErrTool) {
		t.Fatalf("got %v, want ErrTool", err)
	}
	if n := len(r.writes(t)); n != 3 {
		t.Errorf("tool ran %d times, want 3 (1 + 2 retries)", n)
	}
	// Backoff: 20 ms then 40 ms between the attempts.
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("three attempts in %v: no backoff", d)
	}
	if res.Detail["write.attempts"] != "3" || !strings.Contains(res.Detail["write.output"], "device not responding") ||
		!strings.Contains(res.Detail["write.attempt.3"], "exit status 1") {
		t.Errorf("detail: %v", res.Detail)
	}
	if _, err := os.Stat(r.dev); !os.IsNotExist(err) {
		t.Error("the failed tool stored something")
	}
}

func TestExecFlaky(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		retries int
		ok      bool
	}{{2, true}, {1, false}} {
		t.Run(strconv.Itoa(tc.retries), func(t *testing.T) {
			r := newRig(t, "flaky")
			t.Setenv("FAKEFLASHER_FLAKY_N", "2")
			r.tool.Retries = tc.retries
			tg := r.target(t, "exec:ff")
			res, err := tg.Write(context.Background(), f.job(t, "SN-0203"))
			if tc.ok && err != nil {
				t.Fatalf("with %d retries: %v", tc.retries, err)
			}
			if !tc.ok && !errors.Is(err, ErrTool) {
				t.Fatalf("with %d retries: %v, want ErrTool", tc.retries, err)
			}
			if got := res.Detail["write.attempts"]; got != strconv.Itoa(tc.retries+1) {
				t.Errorf("attempts %s", got)
			}
		})
	}
}

// A hanging tool is killed at its timeout with every process it started.
// The timeout leaves the tool time to start its helper even on a loaded
// machine (the test counts both); the bound on the whole only tells a
// kill at the timeout from waiting for the helper's hour-long sleep.
func TestExecHangKilled(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "hang")
	r.tool.Timeout = configs.Duration(2 * time.Second)
	r.tool.Retries = 1
	tg := r.target(t, "exec:ff")
	start := time.Now()
	res, err := tg.Write(context.Background(), f.job(t, "SN-0204"))
	elapsed := time.Since(start)
	if !errors.Is(err, ErrTool) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("got %v, want ErrTool timing out", err)
	}
	if elapsed > time.Minute {
		t.Errorf("took %v for two attempts of 2 s: waited for the helper?", elapsed)
	}
	if !strings.Contains(res.Detail["write.attempt.2"], "timed out") {
		t.Errorf("detail: %v", res.Detail)
	}
	b, _ := os.ReadFile(r.pids)
	pids := strings.Fields(string(b))
	if len(pids) != 4 {
		t.Fatalf("want 4 pids (tool + helper, twice), got %q", pids)
	}
	for _, p := range pids {
		pid, _ := strconv.Atoi(p)
		if !gone(pid, 30*time.Second) { // a deadline against a survivor, not a delay
			t.Errorf("process %d survived the timeout", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	t.Logf("two timed-out attempts with backoff: %v", elapsed)
}

// gone waits until pid no longer runs (absent, or a zombie awaiting its reaper).
func gone(pid int, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The caller gives up while the tool runs (cancelled once the tool and its
// helper have written their pids, not after a fixed time that a loaded
// machine may spend starting the tool): no retry, the caller's error.
func TestExecContextCancel(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "hang")
	r.tool.Retries = 5
	tg := r.target(t, "exec:ff")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled atomic.Int64 // UnixNano of the cancel
	go func() {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if b, _ := os.ReadFile(r.pids); len(strings.Fields(string(b))) >= 2 {
				break
			}
		}
		cancelled.Store(time.Now().UnixNano())
		cancel()
	}()
	_, err := tg.Write(ctx, f.job(t, "SN-0205"))
	if !errors.Is(err, ErrTool) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(time.Unix(0, cancelled.Load())); d > time.Minute {
		t.Errorf("cancel took %v: waited for the helper?", d)
	}
	if n := len(r.writes(t)); n != 1 {
		t.Errorf("retried %d times after the caller gave up", n-1)
	}
}

func TestExecCorruptCaught(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "corrupt")
	tg := r.target(t, "exec:ff")
	j := f.job(t, "SN-0206")
	if _, err := tg.Write(context.Background(), j); !errors.Is(err, ErrReadback) {
		t.Fatalf("got %v, want ErrReadback", err)
	}
	if err := tg.ReadBack(context.Background(), j); err == nil {
		t.Fatal("QA read-back accepted the corrupted unit")
	}
}

func TestExecToolThatLies(t *testing.T) {
	f := newFixture(t)
	t.Run("with readback", func(t *testing.T) {
		r := newRig(t, "noop")
		tg := r.target(t, "exec:ff")
		if _, err := tg.Write(context.Background(), f.job(t, "SN-0207")); !errors.Is(err, ErrReadback) {
			t.Fatalf("got %v, want ErrReadback", err)
		}
	})
	t.Run("without readback", func(t *testing.T) {
		r := newRig(t, "noop")
		r.tool.Readback = nil
		tg := r.target(t, "exec:ff")
		j := f.job(t, "SN-0207")
		res, err := tg.Write(context.Background(), j)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(res.Detail["readback"], "trusted") {
			t.Errorf("the record does not say the exit status was trusted: %v", res.Detail)
		}
		if err := tg.ReadBack(context.Background(), j); !errors.Is(err, ErrNoReadback) {
			t.Errorf("ReadBack: %v, want ErrNoReadback", err)
		}
	})
}

func TestExecOutputBounded(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "chatty")
	t.Setenv("FAKEFLASHER_CHATTY", strconv.Itoa(4<<20))
	tg := r.target(t, "exec:ff")
	res, err := tg.Write(context.Background(), f.job(t, "SN-0208"))
	if err != nil {
		t.Fatal(err)
	}
	out := res.Detail["write.output"]
	if len(out) > outputHead+outputTail+100 || !strings.Contains(out, "END-OF-OUTPUT") ||
		!strings.HasPrefix(out, "flashing unit") || !strings.Contains(out, "bytes not kept") {
		t.Errorf("output of %d bytes: %.200q ... %.200q", len(out), out, out[max(0, len(out)-200):])
	}
}

// A tool that prints the bundle it writes (key included) does not get the
// key into the record.
func TestExecOutputRedacted(t *testing.T) {
	f := newFixture(t)
	key := []byte("0123456789abcdef-DEVICE-KEY-fedcba9876543210")
	{
		{
			r := newRig(t, "echo")
			tg := r.target(t, "exec:ff")
			j := f.symJob(t, "SN-0209", key[:40])
			res, err := tg.Write(context.Background(), j)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(res.Detail["write.output"], credbundle.Redacted) {
				t.Errorf("nothing was redacted: %q", res.Detail["write.output"])
			}
			for k, v := range res.Detail {
				for n := 8; n <= 40; n++ {
					// no 8-byte piece of the key, raw or hex
					for i := 0; i+n <= 40; i += 8 {
						if strings.Contains(v, string(key[i:i+n])) {
							t.Fatalf("detail %s holds key bytes %q", k, key[i:i+n])
						}
					}
				}
				bundletest.AssertNoSecret(t, v, j.Bundle.SymmetricKey)
			}
		}
	}
}

// A key cut in two by the gap in a huge output leaves no piece behind.
func TestBoundedOutputCutsKeys(t *testing.T) {
	key := credbundle.Secret("0123456789abcdef-DEVICE-KEY-fedcba9876543210")
	red := newRedactor(key)
	for _, split := range []int{1, 5, 10, 20, len(key) - 1} {
		for _, form := range red {
			var b boundedBuffer
			b.Write(bytes.Repeat([]byte{'.'}, rawKeep-split))
			b.Write(form)
			b.Write(bytes.Repeat([]byte{','}, 2*rawKeep))
			b.Write(form[:split]) // and a key cut at the very end
			b.Write(bytes.Repeat([]byte{','}, rawKeep-split))
			b.Write(form)
			out := b.text(red)
			for n := 4; n <= len(form); n++ {
				if i := strings.Index(out, string(form[:n])); i >= 0 && n > 5 {
					t.Fatalf("split %d: %q survives", split, form[:n])
				}
				if strings.Contains(out, string(form[len(form)-n:])) && n > 5 {
					t.Fatalf("split %d: %q survives", split, form[len(form)-n:])
				}
			}
		}
	}
}

func TestExecEnvironmentFiltered(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "ok")
	t.Setenv("STATION_PKI_KEY_PASSWORD", "hunter2")
	t.Setenv("STATION_CA_KEY_PASSWORD", "hunter3")
	t.Setenv("DPS_GROUP_KEY", "group-key-under-any-name") // a secret under a name no denylist knows
	tg := r.target(t, "exec:ff")
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0210")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(r.envLog)
	if strings.Contains(string(b), "STATION_") || strings.Contains(string(b), "group-key-under-any-name") {
		t.Fatalf("the tool saw station secrets:\n%s", b)
	}
	if !strings.Contains(string(b), "FAKEFLASHER_MODE=") {
		t.Fatalf("a variable the tool's config names did not reach it:\n%s", b)
	}
	if !strings.Contains(string(b), "--") {
		t.Fatal("the env log is empty: the check proves nothing")
	}
}

func TestExecOtherUnit(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "ok")
	tg := r.target(t, "exec:ff")
	if _, err := tg.Write(context.Background(), f.job(t, "SN-A")); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(r.dev)
	jb := f.job(t, "SN-B")
	if _, err := tg.Write(context.Background(), jb); !errors.Is(err, ErrOtherUnit) {
		t.Fatalf("got %v, want ErrOtherUnit", err)
	}
	after, _ := os.ReadFile(r.dev)
	if !bytes.Equal(before, after) || len(r.writes(t)) != 1 {
		t.Fatal("the refused job reached the unit")
	}
	jb.Force = true
	if _, err := tg.Write(context.Background(), jb); err != nil {
		t.Fatalf("forced: %v", err)
	}
}

// Unit data goes to the tool as argv entries, verbatim, one each: no shell
// ever sees it, and serials that could pose as options or paths are refused
// before the tool runs.
func TestExecInjection(t *testing.T) {
	f := newFixture(t)
	t.Run("serials", func(t *testing.T) {
		r := newRig(t, "ok")
		tg := r.target(t, "exec:ff")
		good := f.job(t, "SN-0211")
		for _, s := range []string{`"; rm -rf /`, "$(id)", "`id`", "../../etc", "-rf", "--device=/etc/passwd", "a b", "a\nb", "SN|id", "SN;id", "SN&id", "SN>x"} {
			j := good
			j.Serial = s
			if _, err := tg.Write(context.Background(), j); !errors.Is(err, ErrUnsafeInput) {
				t.Errorf("serial %q: got %v, want ErrUnsafeInput", s, err)
			}
			if err := tg.ReadBack(context.Background(), j); !errors.Is(err, ErrUnsafeInput) {
				t.Errorf("ReadBack serial %q: got %v, want ErrUnsafeInput", s, err)
			}
		}
		if a := r.argvs(t); len(a) != 0 {
			t.Fatalf("the tool ran: %v", a)
		}
	})
	t.Run("paths and port with shell characters", func(t *testing.T) {
		r := newRig(t, "ok")
		tmp := filepath.Join(t.TempDir(), "tmp dir $(touch pwned) `id`; echo x\nline2")
		if err := os.Mkdir(tmp, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Setenv("TMPDIR", tmp)
		r.dev = filepath.Join(tmp, "dev ice.img")
		r.tool.Args[2], r.tool.Readback[2] = r.dev, r.dev
		port := "/dev/tty USB0; touch pwned {serial}"
		tg := r.target(t, "exec:ff@"+port)
		if _, err := tg.Write(context.Background(), f.job(t, "SN-0212")); err != nil {
			t.Fatal(err)
		}
		w := r.writes(t)
		if len(w) != 1 || len(w[0]) != 11 {
			t.Fatalf("argv: %q", w)
		}
		if w[0][10] != port || w[0][2] != r.dev || !strings.HasPrefix(w[0][4], tmp+"/") || !strings.HasPrefix(w[0][6], tmp+"/") {
			t.Errorf("argv changed on the way: %q", w[0])
		}
		for _, p := range []string{"pwned", filepath.Join(tmp, "pwned")} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s exists: a shell ran", p)
			}
		}
	})
}

func TestTemplates(t *testing.T) {
	vals := map[string]string{"serial": "SN1", "port": "{serial}", "firmware": "/tmp/f w.bin"}
	for _, tc := range []struct{ in, out string }{
		{"--port={port}", "--port={serial}"},
		{"{firmware}", "/tmp/f w.bin"},
		{"write_flash 0x1000 {firmware}", "write_flash 0x1000 /tmp/f w.bin"},
		{"{{literal}} {serial}", "{literal} SN1"},
		{"", ""},
	} {
		tp, err := parseTemplate(tc.in, writePlaceholders)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		got, err := tp.expand(vals)
		if err != nil || got != tc.out {
			t.Errorf("%q -> %q (%v), want %q", tc.in, got, err, tc.out)
		}
	}
	for _, bad := range []string{"{nope}", "{serial", "serial}", "{readback_bundle}", "{}"} {
		if _, err := parseTemplate(bad, writePlaceholders); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	tools := map[string]configs.FlashTool{
		"noport":   {Command: "x", Args: []string{"{port}"}},
		"badrb":    {Command: "x", Readback: []string{"{firmware}"}},
		"cmdtmpl":  {Command: "{serial}"},
		"retries":  {Command: "x", Retries: 99},
		"noportrb": {Command: "x", Readback: []string{"-p", "{port}"}},
	}
	for name := range tools {
		var ce *configs.Error
		if _, err := Open("exec:"+name, configs.Flash{Tools: tools}, nil); !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want *configs.Error", name, err)
		}
	}
}

func TestExecMissingTool(t *testing.T) {
	f := newFixture(t)
	tools := map[string]configs.FlashTool{"gone": {Command: filepath.Join(t.TempDir(), "no-such-tool"), Retries: 1}}
	tg := openOne(t, "exec:gone", configs.Flash{Tools: tools}, nil).(*execTarget)
	tg.backoff = time.Millisecond
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0213")); !errors.Is(err, ErrTool) {
		t.Fatalf("got %v, want ErrTool", err)
	}
}

// A unit whose flash was corrupted is retried by re-running provision (no
// --force needed); a damaged bundle of another unit is still refused.
func TestExecRetryAfterCorruption(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "corrupt")
	tg := r.target(t, "exec:ff")
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0600")); !errors.Is(err, ErrReadback) {
		t.Fatalf("got %v, want ErrReadback", err)
	}
	t.Setenv("FAKEFLASHER_MODE", "ok")
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0600")); err != nil {
		t.Fatalf("re-run after a corrupted flash: %v", err)
	}
	// Damage the bundle on the unit (not its serial record): another unit is refused.
	fw, bd := readDevice(t, r.dev)
	bd[len(bd)-10] ^= 0xff
	writeDevice(t, r.dev, fw, bd)
	if _, err := tg.Write(context.Background(), f.job(t, "SN-0601")); !errors.Is(err, ErrOtherUnit) {
		t.Fatalf("damaged bundle of another unit: %v, want ErrOtherUnit", err)
	}
}

// QA verify from the record alone, with a readback that needs the image size.
func TestExecReadBackFromRecord(t *testing.T) {
	f := newFixture(t)
	r := newRig(t, "ok")
	r.tool.Readback = []string{"read", "-device", r.dev, "-size", "{bundle_size}", "-out", "{readback_bundle}"}
	tg := r.target(t, "exec:ff")
	j := f.job(t, "SN-0800")
	res, err := tg.Write(context.Background(), j)
	if err != nil {
		t.Fatal(err)
	}
	size, _ := strconv.Atoi(res.Detail["image_size"])
	exp, err := credbundle.Expected(credbundle.Recorded{Serial: "SN-0800", Digest: res.Detail["bundle_digest"], CertDER: j.Bundle.CertDER()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tg.ReadBack(context.Background(), Job{Serial: "SN-0800", Bundle: exp, ImageSize: size, StationKey: f.Key.Public()}); err != nil {
		t.Fatal(err)
	}
	// A wrong size (a dump of the wrong region) is caught.
	if err := tg.ReadBack(context.Background(), Job{Serial: "SN-0800", Bundle: exp, ImageSize: size - 1}); err == nil {
		t.Fatal("a truncated dump passed")
	}
}

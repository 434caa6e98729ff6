package flash

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/credbundle"
)

// Defaults and bounds of the exec target.
const (
	DefaultToolTimeout = 5 * time.Minute
	maxRetries         = 10
	outputHead         = 2048 // bytes of a tool's output kept from the start
	outputTail         = 2048 // and from the end
)

// execTarget runs an external flashing tool, argv only.
type execTarget struct {
	spec     string
	name     string
	tool     configs.FlashTool
	args     []argTemplate
	readback []argTemplate
	timeout  time.Duration
	backoff  time.Duration // first retry delay, doubled each time, capped at 10s
}

func newExecTarget(spec, name string, tool configs.FlashTool) (*execTarget, error) {
	bad := func(format string, a ...any) error {
		return &configs.Error{Key: "flash.tools." + name, Err: fmt.Errorf(format, a...)}
	}
	if tool.Command == "" {
		return nil, bad("no command")
	}
	if strings.ContainsAny(tool.Command, "{}") {
		return nil, bad("command %q: the command is not a template", tool.Command)
	}
	if tool.Retries < 0 || tool.Retries > maxRetries {
		return nil, bad("retries %d: want 0 to %d", tool.Retries, maxRetries)
	}
	if strings.HasPrefix(tool.Port, "-") || strings.ContainsAny(tool.Port, "\x00\n\r") {
		return nil, bad("port %q", tool.Port)
	}
	args, err := parseTemplates(tool.Args, writePlaceholders)
	if err != nil {
		return nil, bad("args: %v", err)
	}
	rb, err := parseTemplates(tool.Readback, readbackPlaceholders)
	if err != nil {
		return nil, bad("readback: %v", err)
	}
	if tool.Port == "" && (anyUses(args, "port") || anyUses(rb, "port")) {
		return nil, bad("the templates use {port} but no port is set (flash.tools.%s.port, or exec:%s@PORT)", name, name)
	}
	t := &execTarget{spec: spec, name: name, tool: tool, args: args, readback: rb,
		timeout: tool.Timeout.D(), backoff: time.Second}
	if t.timeout <= 0 {
		t.timeout = DefaultToolTimeout
	}
	return t, nil
}

func (e *execTarget) Name() string { return e.spec }

// stage writes what the tool reads into a private folder: the firmware
// bytes that were checked (not the configured path again), the bundle
// image and the bundle folder.
type stage struct {
	dir, firmware, bundle, bundleFile string
	image                             []byte
}

func newStage(j Job) (*stage, error) {
	dir, err := os.MkdirTemp("", "station-flash-")
	if err != nil {
		return nil, err
	}
	s := &stage{dir: dir, firmware: filepath.Join(dir, DirFirmware),
		bundle: filepath.Join(dir, DirBundle), bundleFile: filepath.Join(dir, DirImage)}
	fail := func(err error) (*stage, error) { s.remove(); return nil, err }
	if s.image, err = j.Bundle.MarshalBinary(); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(s.firmware, j.Firmware.Data, 0o600); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(s.bundleFile, s.image, 0o600); err != nil {
		return fail(err)
	}
	folder, err := j.Bundle.Folder()
	if err != nil {
		return fail(err)
	}
	if err := os.Mkdir(s.bundle, 0o700); err != nil {
		return fail(err)
	}
	for n, b := range folder {
		if err := os.WriteFile(filepath.Join(s.bundle, n), b, 0o600); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

func (s *stage) remove() { os.RemoveAll(s.dir) }

func (e *execTarget) values(j Job, s *stage) map[string]string {
	return map[string]string{
		"firmware": s.firmware, "bundle": s.bundle, "bundle_file": s.bundleFile,
		"serial": j.Serial, "port": e.tool.Port, "registration_id": j.Bundle.RegistrationID,
		"firmware_sha256": j.Firmware.SHA256, "firmware_size": strconv.Itoa(len(j.Firmware.Data)),
		"bundle_size":       strconv.Itoa(len(s.image)),
		"readback_firmware": filepath.Join(s.dir, "readback-firmware.bin"),
		"readback_bundle":   filepath.Join(s.dir, "readback-bundle.bin"),
	}
}

func (e *execTarget) Write(ctx context.Context, j Job) (Result, error) {
	res := Result{Target: e.spec, Detail: map[string]string{"tool": e.name}}
	if err := checkJob(j); err != nil {
		return res, err
	}
	s, err := newStage(j)
	if err != nil {
		return res, fmt.Errorf("%s: staging: %w", e.spec, err)
	}
	defer s.remove()
	red := newRedactor(j.Bundle.SealedKey, j.Bundle.SymmetricKey)
	vals := e.values(j, s)

	// What does the unit hold now? Another unit's bundle is refused.
	if len(e.readback) > 0 {
		if img, _, err := e.readOnce(ctx, vals); err == nil {
			serial, _ := credbundle.PeekSerial(img)
			if err := otherUnit(j, serial, e.spec); err != nil {
				return res, err
			}
		}
	}

	argv, err := expandAll(e.args, vals)
	if err != nil {
		return res, fmt.Errorf("%s: %w", e.spec, err)
	}
	if cmdline, err := json.Marshal(append([]string{e.tool.Command}, argv...)); err == nil {
		res.Detail["write.argv"] = string(cmdline)
	}
	if err := e.withRetries(ctx, "write", res.Detail, func(ctx context.Context, out *boundedBuffer) error {
		return e.run(ctx, argv, out, out)
	}, red); err != nil {
		return res, err
	}

	if len(e.readback) == 0 {
		res.Detail["readback"] = "none configured: the tool's exit status was trusted"
	} else {
		var rbImage, rbFirmware []byte
		if err := e.withRetries(ctx, "readback", res.Detail, func(ctx context.Context, out *boundedBuffer) error {
			var err error
			rbImage, rbFirmware, err = e.readInto(ctx, vals, out)
			return err
		}, red); err != nil {
			return res, fmt.Errorf("%w: %w (the read-back could not run: is the unit blank?)", err, ErrReadback)
		}
		if !bytes.Equal(rbImage, s.image) {
			return res, fmt.Errorf("%s: the bundle read back from the unit differs (%d bytes, wrote %d; sha256 %s): %w",
				e.spec, len(rbImage), len(s.image), sha256Hex(rbImage), ErrReadback)
		}
		if rbFirmware != nil && !bytes.Equal(rbFirmware, j.Firmware.Data) {
			return res, fmt.Errorf("%s: the firmware read back from the unit differs (%d bytes, sha256 %s): %w",
				e.spec, len(rbFirmware), sha256Hex(rbFirmware), ErrReadback)
		}
		what := "bundle"
		if rbFirmware != nil {
			what = "bundle and firmware"
		}
		res.Detail["readback"] = what + " byte-for-byte"
	}
	res.Detail["firmware_sha256"] = j.Firmware.SHA256
	res.Detail["image_sha256"] = sha256Hex(s.image)
	res.Detail["image_size"] = strconv.Itoa(len(s.image))
	res.Detail["bundle_digest"] = j.Bundle.DigestHex()
	return res, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readOnce runs the readback once with its own bounded log.
func (e *execTarget) readOnce(ctx context.Context, vals map[string]string) ([]byte, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	var log boundedBuffer
	return e.readInto(ctx, vals, &log)
}

// readInto runs the readback template: the bundle image comes from
// {readback_bundle} when the template names it, else from stdout; the
// firmware from {readback_firmware} when named (nil otherwise).
func (e *execTarget) readInto(ctx context.Context, vals map[string]string, log *boundedBuffer) ([]byte, []byte, error) {
	// Nothing from an earlier attempt may pass for this one's output.
	os.Remove(vals["readback_bundle"])
	os.Remove(vals["readback_firmware"])
	argv, err := expandAll(e.readback, vals)
	if err != nil {
		return nil, nil, err
	}
	toFile := anyUses(e.readback, "readback_bundle")
	var stdout limitedBuffer
	stdout.limit = credbundle.MaxImageSize
	var w io.Writer = &stdout
	if toFile {
		w = log
	}
	if err := e.run(ctx, argv, w, log); err != nil {
		return nil, nil, err
	}
	if stdout.over {
		return nil, nil, fmt.Errorf("readback printed more than %d bytes", credbundle.MaxImageSize)
	}
	img := stdout.Bytes()
	if toFile {
		if img, err = readFileLimited(vals["readback_bundle"], credbundle.MaxImageSize); err != nil {
			return nil, nil, fmt.Errorf("readback left no bundle: %w", err)
		}
	}
	var fw []byte
	if anyUses(e.readback, "readback_firmware") {
		if fw, err = readFileLimited(vals["readback_firmware"], MaxFirmwareSize); err != nil {
			return nil, nil, fmt.Errorf("readback left no firmware: %w", err)
		}
		if fw == nil {
			fw = []byte{}
		}
	}
	return img, fw, nil
}

// withRetries runs op up to 1+Retries times, each under the tool's timeout,
// waiting backoff, 2×backoff... (capped at 10 s) between attempts. Each
// attempt's status and the last attempt's output (bounded, redacted) go
// into detail under the phase's name.
func (e *execTarget) withRetries(ctx context.Context, phase string, detail map[string]string,
	op func(context.Context, *boundedBuffer) error, red redactor) error {
	delay := e.backoff
	var err error
	attempts := 1 + e.tool.Retries
	for i := 1; i <= attempts; i++ {
		var out boundedBuffer
		actx, cancel := context.WithTimeout(ctx, e.timeout)
		start := time.Now()
		err = op(actx, &out)
		timedOut := errors.Is(actx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		status := "ok"
		switch {
		case timedOut:
			status = fmt.Sprintf("timed out after %s (process group killed)", e.timeout)
			err = fmt.Errorf("timed out after %s", e.timeout)
		case err != nil:
			status = string(red.apply([]byte(err.Error())))
		}
		detail[fmt.Sprintf("%s.attempt.%d", phase, i)] = fmt.Sprintf("%s in %s", status, time.Since(start).Round(time.Millisecond))
		detail[phase+".output"] = out.text(red)
		detail[phase+".attempts"] = strconv.Itoa(i)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || i == attempts {
			break
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
		}
		if delay *= 2; delay > 10*time.Second {
			delay = 10 * time.Second
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %s: %w: %w", e.spec, phase, ErrTool, ctx.Err())
	}
	return fmt.Errorf("%s: %s failed after %d attempt(s): %s: %w", e.spec, phase, attempts, red.apply([]byte(err.Error())), ErrTool)
}

// run starts the tool in its own process group with argv (never a shell),
// only the basic environment plus the variables its config names (never the
// station's passwords or group key, whatever they are called), and kills the whole group when ctx ends or the tool exits, so
// no helper process it forked survives it.
func (e *execTarget) run(ctx context.Context, argv []string, stdout, stderr io.Writer) error {
	cmd := exec.CommandContext(ctx, e.tool.Command, argv...)
	cmd.Env = toolEnv(e.tool.Env)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return err
	}
	err := cmd.Wait()
	// Helpers left behind in the tool's group go too.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	return err
}

// baseEnv is what every tool sees of the station's environment.
var baseEnv = []string{"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "TERM"}

// toolEnv is an allowlist: the base variables, LC_*, and those the tool's
// config names. A denylist would leak any secret held under a name nobody
// thought of (a group key in $DPS_GROUP_KEY), and a tool's output goes into
// the audit trail.
func toolEnv(extra []string) []string {
	allowed := map[string]bool{}
	for _, n := range append(slices.Clone(baseEnv), extra...) {
		allowed[n] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if (allowed[name] || strings.HasPrefix(name, "LC_")) && !strings.HasPrefix(name, "STATION_") {
			env = append(env, kv)
		}
	}
	return env
}

func (e *execTarget) ReadBack(ctx context.Context, j Job) error {
	if err := safeSerial(j.Serial); err != nil {
		return err
	}
	if len(e.readback) == 0 {
		return fmt.Errorf("%s: %w", e.spec, ErrNoReadback)
	}
	dir, err := os.MkdirTemp("", "station-readback-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	vals := map[string]string{"serial": j.Serial, "port": e.tool.Port,
		"readback_firmware": filepath.Join(dir, "readback-firmware.bin"),
		"readback_bundle":   filepath.Join(dir, "readback-bundle.bin")}
	if j.Bundle != nil {
		vals["registration_id"] = j.Bundle.RegistrationID
	}
	if j.Firmware != nil {
		vals["firmware_size"] = strconv.Itoa(len(j.Firmware.Data))
	}
	if j.Bundle != nil && len(j.Bundle.Signature) > 0 {
		if img, err := j.Bundle.MarshalBinary(); err == nil {
			vals["bundle_size"] = strconv.Itoa(len(img))
		}
	} else if j.ImageSize > 0 {
		vals["bundle_size"] = strconv.Itoa(j.ImageSize)
	}
	var red redactor
	if j.Bundle != nil {
		red = newRedactor(j.Bundle.SealedKey, j.Bundle.SymmetricKey)
	}
	detail := map[string]string{}
	var img, fw []byte
	if err := e.withRetries(ctx, "readback", detail, func(ctx context.Context, out *boundedBuffer) error {
		var err error
		img, fw, err = e.readInto(ctx, vals, out)
		return err
	}, red); err != nil {
		return fmt.Errorf("%w: %w", err, ErrReadback)
	}
	found, err := credbundle.ParseImage(img)
	if err != nil {
		return fmt.Errorf("%s: the unit's bundle: %w", e.spec, err)
	}
	if err := checkFound(j, found, e.spec); err != nil {
		return err
	}
	if fw != nil {
		want := found.FirmwareSHA256
		if j.Firmware != nil {
			want = j.Firmware.SHA256
		}
		if got := sha256Hex(fw); got != want {
			return fmt.Errorf("%s: firmware on the unit has SHA-256 %s, expected %s: %w", e.spec, got, want, ErrReadback)
		}
	}
	return nil
}

// boundedBuffer captures a tool's output: up to rawKeep bytes from the
// start and from the end (the middle of a huge output is dropped). text
// redacts the secrets from it first and then cuts it down to outputHead and
// outputTail bytes (far less than rawKeep), so a cut never leaves part of a
// key behind.
type boundedBuffer struct {
	head    []byte
	tail    []byte
	dropped int64
}

const rawKeep = 256 << 10

func (b *boundedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := rawKeep - len(b.head); room > 0 {
		k := min(room, len(p))
		b.head = append(b.head, p[:k]...)
		p = p[k:]
	}
	if len(p) > 0 {
		b.tail = append(b.tail, p...)
		if over := len(b.tail) - rawKeep; over > 0 {
			b.dropped += int64(over)
			b.tail = append(b.tail[:0], b.tail[over:]...)
		}
	}
	return n, nil
}

func (b *boundedBuffer) text(red redactor) string {
	var all []byte
	if b.dropped == 0 {
		all = red.apply(append(append([]byte{}, b.head...), b.tail...))
	} else {
		// Each side is rawKeep long: the partial secrets a gap can leave
		// at their inner edges are far inside what the cut below drops.
		all = append(red.apply(b.head), red.apply(b.tail)...)
	}
	if len(all) <= outputHead+outputTail && b.dropped == 0 {
		return string(all)
	}
	var h, t []byte = all, nil
	dropped := b.dropped
	if len(all) > outputHead+outputTail {
		dropped += int64(len(all) - outputHead - outputTail)
		h, t = all[:outputHead], all[len(all)-outputTail:]
	}
	return fmt.Sprintf("%s\n[... %d bytes not kept ...]\n%s", h, dropped, t)
}

// limitedBuffer holds up to limit bytes and notes an overflow.
type limitedBuffer struct {
	bytes.Buffer
	limit int
	over  bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.limit {
		b.over = true
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

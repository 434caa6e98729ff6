package tpmops

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/google/go-tpm/tpm2"
)

func TestOpenBadAddress(t *testing.T) {
	for _, addr := range []string{"", "tpm", "swtpm://", "swtpm://127.0.0.1", "sim:seven", "unix://", "http://127.0.0.1:2321"} {
		if _, err := Open(addr); !errors.Is(err, ErrBadAddress) || errors.Is(err, ErrUnreachable) {
			t.Errorf("Open(%q) = %v, want ErrBadAddress", addr, err)
		}
	}
}

func TestOpenUnreachable(t *testing.T) {
	for _, addr := range []string{
		swtpmtest.ClosedAddr(t), // held by the test: no other program can listen there meanwhile
		"unix://" + filepath.Join(t.TempDir(), "none.sock"),
		"/dev/station-no-such-tpm",
	} {
		if _, err := Open(addr); !errors.Is(err, ErrUnreachable) {
			t.Errorf("Open(%q) = %v, want ErrUnreachable", addr, err)
		}
	}
}

// A TPM that goes away mid-session gives ErrUnreachable, not a hang.
func TestSwtpmGoneIsUnreachable(t *testing.T) {
	sw := swtpmtest.Start(t, swtpmtest.Options{})
	tp, err := Open(sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if _, err := tp.Permanent(); err != nil {
		t.Fatal(err)
	}
	sw.Kill()
	if _, err := tp.Permanent(); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("after swtpm died: %v, want ErrUnreachable", err)
	}
	sw.Restart() // orderly stop at cleanup
}

// fakeTPM answers with the given response codes, then success.
type fakeTPM struct {
	codes []uint32
	calls int
}

func (f *fakeTPM) Send(cmd []byte) ([]byte, error) {
	rc := uint32(0)
	if f.calls < len(f.codes) {
		rc = f.codes[f.calls]
	}
	f.calls++
	rsp := []byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(rsp[6:], rc)
	return rsp, nil
}

func TestRetryTransport(t *testing.T) {
	for _, tc := range []struct {
		name      string
		codes     []uint32
		wantCalls int
		wantRC    uint32
		wantBusy  bool // ErrTPMBusy (retryable) instead of a response
	}{
		{"success", nil, 1, 0, false},
		{"retry then yielded then testing", []uint32{rcRetry, rcYielded, rcTesting}, 4, 0, false},
		{"not retried: bad auth", []uint32{uint32(tpm2.TPMRCBadAuth)}, 1, uint32(tpm2.TPMRCBadAuth), false},
		{"bounded", repeat(rcRetry, 100), retryAttempts, rcRetry, true},
		{"object memory", []uint32{0x902}, 1, 0x902, true},
		{"session memory", []uint32{0x903}, 1, 0x903, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTPM{codes: tc.codes}
			var slept time.Duration
			r := &retryTransport{inner: f, sleep: func(d time.Duration) { slept += d }}
			rsp, err := r.Send([]byte{0x80, 0x01, 0, 0, 0, 10, 0, 0, 1, 0x7b})
			if f.calls != tc.wantCalls {
				t.Fatalf("%d sends, want %d", f.calls, tc.wantCalls)
			}
			if tc.wantBusy {
				if !errors.Is(err, ErrTPMBusy) || !errors.Is(err, tpm2.TPMRC(tc.wantRC)) || errors.Is(err, ErrUnreachable) {
					t.Fatalf("err = %v, want ErrTPMBusy and TPM_RC %#x", err, tc.wantRC)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rc := binary.BigEndian.Uint32(rsp[6:]); rc != tc.wantRC {
				t.Fatalf("rc %#x, want %#x", rc, tc.wantRC)
			}
			if slept > 5*time.Second {
				t.Fatalf("retrying would sleep %v", slept)
			}
			t.Logf("slept %v", slept)
		})
	}
}

// The same code runs over swtpm's Unix socket.
func TestUnixSocket(t *testing.T) {
	if _, err := exec.LookPath("swtpm"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("swtpm not installed (CI=true: no skipping)")
		}
		t.Skip("swtpm not installed")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "tpm.sock")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
		"--server", "type=unixio,path="+sock, "--ctrl", "type=unixio,path="+sock+".ctrl",
		"--flags", "startup-clear")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	// Wait for swtpm to listen: poll the socket until it answers, with a
	// deadline only against a swtpm that never comes up.
	var tp *TPM
	var err error
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if tp, err = Open("unix://" + sock); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	e := &env{name: "unix", tpm: tp}
	ek, persisted, err := e.tpm.EnsureEK(ECCP256, nil)
	if err != nil || !persisted {
		t.Fatalf("EnsureEK over the unix socket: %v", err)
	}
	if _, err := e.tpm.ReadPublic(ek.Handle); err != nil {
		t.Fatal(err)
	}
	if hs, err := tp.Transients(); err != nil || len(hs) != 0 {
		t.Fatalf("transients %v, %v", hs, err)
	}
	if _, err := (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(tp.Transport()); err != nil {
		t.Fatal(err)
	}
	tp.Close()
}

func repeat(v uint32, n int) []uint32 {
	out := make([]uint32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// A swtpm busy with another client queues us silently: the first command
// must come back as ErrUnreachable (retryable, exit 5) within the first-answer
// deadline instead of hanging until the other client leaves.
func TestOpenBusyTPM(t *testing.T) {
	inst := swtpmtest.Start(t, swtpmtest.Options{})
	holder, err := Open(inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.Permanent(); err != nil { // the holder is being served
		t.Fatal(err)
	}
	defer func(d time.Duration) { firstAnswerDeadline = d }(firstAnswerDeadline)
	firstAnswerDeadline = 300 * time.Millisecond
	second, err := Open(inst.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	start := time.Now()
	_, err = second.Permanent()
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("second client: %v, want ErrUnreachable saying busy", err)
	}
	// The holder never leaves: a bound only tells "reported" from "hangs"
	// (generous, as a loaded machine fires timers late).
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("took %s to report a busy TPM", d)
	}
}

package cmd

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
)

// killProxy stands between a station process and a swtpm (raw command
// stream) and SIGKILLs the station at its first TPM2_HierarchyChangeAuth of
// the lockout hierarchy: before the command reaches the TPM, or (after) once
// the TPM has executed it but before the station hears the answer. That is
// exactly the window between the pending escrow's commit and its settling.
type killProxy struct {
	addr   string
	after  bool
	victim chan *os.Process
	fired  chan struct{}
}

const (
	ccHierarchyChangeAuth = 0x00000129
	rhLockout             = 0x4000000A
)

func startKillProxy(t *testing.T, inst *swtpmtest.Instance, after bool) *killProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	p := &killProxy{addr: "swtpm://" + ln.Addr().String(), after: after, victim: make(chan *os.Process, 1), fired: make(chan struct{})}
	upstream := strings.TrimPrefix(inst.Addr, "swtpm://")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c, upstream)
		}
	}()
	return p
}

func readFrame(r io.Reader) ([]byte, error) {
	hdr := make([]byte, 6)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[2:6])
	if n < 6 || n > 1<<20 {
		return nil, errors.New("bad frame size")
	}
	b := make([]byte, n)
	copy(b, hdr)
	_, err := io.ReadFull(r, b[6:])
	return b, err
}

func (p *killProxy) serve(c net.Conn, upstream string) {
	defer c.Close()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer u.Close()
	for {
		cmd, err := readFrame(c)
		if err != nil {
			return
		}
		target := len(cmd) >= 14 && binary.BigEndian.Uint32(cmd[6:10]) == ccHierarchyChangeAuth &&
			binary.BigEndian.Uint32(cmd[10:14]) == rhLockout
		if target && !p.after {
			p.kill()
			return
		}
		if _, err := u.Write(cmd); err != nil {
			return
		}
		rsp, err := readFrame(u)
		if err != nil {
			return
		}
		if target {
			p.kill()
			return
		}
		if _, err := c.Write(rsp); err != nil {
			return
		}
	}
}

func (p *killProxy) kill() {
	proc := <-p.victim
	proc.Kill()
	close(p.fired)
}

// provisionKilled runs provision through the proxy and waits for the kill.
func (l *line) provisionKilled(p *killProxy, serial string) {
	l.t.Helper()
	c := l.cmd("provision", "--serial", serial, "--tpm", p.addr)
	if err := c.Start(); err != nil {
		l.t.Fatal(err)
	}
	p.victim <- c.Process
	err := c.Wait()
	select {
	case <-p.fired:
	default:
		l.t.Fatalf("provision finished (%v) without reaching HierarchyChangeAuth(lockout)", err)
	}
	if c.ProcessState.Success() {
		l.t.Fatal("the killed provision exited 0")
	}
}

func (l *line) unit(serial string) *store.Unit {
	l.t.Helper()
	js, errOut, code := l.run("units", "show", serial, "-o", "json")
	if code != 0 {
		l.t.Fatalf("units show %s: exit %d: %s", serial, code, errOut)
	}
	u, err := parseUnitShow(js)
	if err != nil {
		l.t.Fatal(err)
	}
	return u
}

// pendingSeals counts the sealed pending auths left in the database.
func (l *line) pendingSeal(serial string) []byte {
	l.t.Helper()
	db, err := store.Open(filepath.Join(l.dir, "station.db"), store.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		l.t.Fatal(err)
	}
	defer db.Close()
	var b []byte
	db.View(func(tx *bolt.Tx) error {
		b = store.PendingSeal(tx, serial, "lockout")
		return nil
	})
	return b
}

// tool runs a tpm2-tools command against a swtpm; it returns the combined
// output and the error.
func tool(t *testing.T, inst *swtpmtest.Instance, name string, args ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed", name)
		}
		t.Skipf("%s not installed", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := inst.Addr[strings.LastIndex(inst.Addr, ":")+1:]
	out, err := exec.CommandContext(ctx, name, append(args, "-T", "swtpm:host=127.0.0.1,port="+port)...).CombinedOutput()
	return string(out), err
}

// TestResumeNeverAdoptsAStrangersAuth kills a real provision between the
// commit of its pending lockout escrow and HierarchyChangeAuth, lets someone
// else set the lockout auth, and resumes: the unit is refused as owned by
// someone else (exit 3), its escrow stays pending and unapplied, and the
// station never presents its value twice. The control case kills it after
// the TPM applied the value: the resumed run proves the TPM holds it and
// passes with that escrow in force.
func TestResumeNeverAdoptsAStrangersAuth(t *testing.T) {
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA

	t.Run("stranger set the lockout auth", func(t *testing.T) {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		l := newLine(t, vendor)
		const serial = "OWN-STRANGER"
		l.provisionKilled(startKillProxy(t, inst, false), serial)
		u := l.unit(serial)
		if len(u.Escrows) != 1 || !u.Escrows[0].Pending || l.pendingSeal(serial) == nil {
			t.Fatalf("after the kill: escrows %+v, sealed copy %v; want one pending lockout escrow and its sealed copy", u.Escrows, l.pendingSeal(serial) != nil)
		}
		if out, err := tool(t, inst, "tpm2_changeauth", "-c", "lockout", "stranger-lockout-auth"); err != nil {
			t.Fatalf("the stranger's tpm2_changeauth: %v\n%s", err, out)
		}

		out, errOut, code := l.run("provision", "--serial", serial, "--tpm", inst.Addr)
		if code != ExitPolicy || !strings.Contains(errOut, "owned by someone else") || !strings.Contains(errOut, "unit "+serial+": step ownership") {
			t.Fatalf("resume after a stranger set the lockout auth: exit %d, want 3 'owned by someone else' naming the unit and step\n%s%s", code, out, errOut)
		}
		t.Logf("refusal: %s", strings.TrimSpace(errOut))
		u = l.unit(serial)
		if u.Status == store.StatusProvisioned || len(u.Escrows) != 1 || !u.Escrows[0].Pending {
			t.Fatalf("after the refusal: status %s, escrows %+v (want not provisioned, the escrow still pending)", u.Status, u.Escrows)
		}
		if l.pendingSeal(serial) != nil {
			t.Error("the refused value's sealed copy is still there: a later resume would present it again")
		}
		// The DA state the refused proof left: no DA lockout, no failure
		// counted, but the lockout hierarchy takes no authorization (not even
		// the stranger's) until its lockout recovery time passes.
		caps, _ := tool(t, inst, "tpm2_getcap", "properties-variable")
		for _, want := range []string{"lockoutAuthSet:            1", "inLockout:                 0", "TPM2_PT_LOCKOUT_COUNTER: 0x0"} {
			if !strings.Contains(caps, want) {
				t.Errorf("tpm2_getcap properties-variable lacks %q:\n%s", want, caps)
			}
		}
		if out, err := tool(t, inst, "tpm2_dictionarylockout", "-c", "-p", "stranger-lockout-auth"); err == nil || !strings.Contains(out, "0x921") {
			t.Errorf("the stranger's lockout auth right after the refused proof: %v %s (want TPM_RC_LOCKOUT 0x921)", err, out)
		}
		// A second resume refuses at once: nothing left to present.
		_, errOut, code = l.run("provision", "--serial", serial, "--tpm", inst.Addr)
		if code != ExitPolicy || !strings.Contains(errOut, "no sealed copy") {
			t.Fatalf("second resume: exit %d, want 3 'no sealed copy'\n%s", code, errOut)
		}
		if _, errOut, code := l.run("audit", "verify"); code != 0 {
			t.Errorf("audit verify: exit %d: %s", code, errOut)
		}
	})

	t.Run("own value applied before the kill", func(t *testing.T) {
		inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
		l := newLine(t, vendor)
		const serial = "OWN-APPLIED"
		l.provisionKilled(startKillProxy(t, inst, true), serial)
		if u := l.unit(serial); len(u.Escrows) != 1 || !u.Escrows[0].Pending {
			t.Fatalf("after the kill: escrows %+v, want one pending", u.Escrows)
		}
		out, errOut, code := l.run("provision", "--serial", serial, "--tpm", inst.Addr)
		if code != 0 || !strings.Contains(out, "PASS") {
			t.Fatalf("resume after a kill past HierarchyChangeAuth: exit %d\n%s%s", code, out, errOut)
		}
		u := l.unit(serial)
		if u.Status != store.StatusProvisioned || len(u.Escrows) != 1 || u.Escrows[0].Pending {
			t.Fatalf("after resume: status %s, escrows %+v", u.Status, u.Escrows)
		}
		if l.pendingSeal(serial) != nil {
			t.Error("the sealed copy outlived the escrow's settling")
		}
		tpm := l.escrowedLockoutInForce(t, u, inst.Addr)
		defer tpm.Close()
		noTransients(t, tpm)
	})
}

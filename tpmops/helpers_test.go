package tpmops

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
)

// env is one TPM under test.
type env struct {
	tpm  *TPM
	sw   *swtpmtest.Instance // nil on the simulator
	name string
}

// tcli is the tpm2-tools TCTI for the instance.
func (e *env) tcti() string {
	return "swtpm:host=127.0.0.1,port=" + e.sw.Addr[len("swtpm://127.0.0.1:"):]
}

// tool runs a tpm2-tools command against the swtpm instance.
func (e *env) tool(t testing.TB, name string, args ...string) string {
	t.Helper()
	if e.sw == nil {
		t.Fatalf("%s needs swtpm", name)
	}
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
	// swtpm serves one connection at a time: step aside while the tool runs.
	var (
		out []byte
		err error
	)
	e.reconnect(t, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		out, err = exec.CommandContext(ctx, name, append(args, "-T", e.tcti())...).CombinedOutput()
	})
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// reconnect closes the TPM connection, runs fn, and opens it again.
func (e *env) reconnect(t testing.TB, fn func()) {
	t.Helper()
	if err := e.tpm.Close(); err != nil {
		t.Fatal(err)
	}
	fn()
	tp, err := Open(e.sw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	e.tpm = tp
}

// open opens the TPM at addr, and on cleanup checks that nothing transient
// is left loaded (like go-tpm-tools client.CheckedClose), then closes it.
func openChecked(t testing.TB, e *env, addr string) {
	t.Helper()
	tp, err := Open(addr)
	if err != nil {
		t.Fatalf("Open(%s): %v", addr, err)
	}
	e.tpm = tp
	t.Cleanup(func() {
		noTransients(t, e.tpm, t.Errorf)
		if err := e.tpm.Close(); err != nil {
			t.Errorf("closing: %v", err)
		}
	})
}

// noTransients reports through fail (t.Errorf or t.Fatalf) any transient
// handle or session left loaded on tp.
func noTransients(t testing.TB, tp *TPM, fail func(format string, args ...any)) {
	t.Helper()
	if hs, err := tp.Transients(); err != nil {
		fail("listing transients: %v", err)
	} else if len(hs) != 0 {
		fail("leaked transient handles/sessions: %v", hs)
	}
}

// eachTPM runs fn on the in-process simulator and on a fresh swtpm.
// Subtests do not run in parallel: one simulator per process.
func eachTPM(t *testing.T, opts swtpmtest.Options, fn func(t *testing.T, e *env)) {
	t.Helper()
	t.Run("sim", func(t *testing.T) {
		e := &env{name: "sim"}
		openChecked(t, e, "sim")
		fn(t, e)
	})
	t.Run("swtpm", func(t *testing.T) {
		e := &env{name: "swtpm"}
		e.sw = swtpmtest.Start(t, opts)
		openChecked(t, e, e.sw.Addr)
		fn(t, e)
	})
}

// standardEK returns the EK the standard template gives on this TPM
// (CreatePrimary in the endorsement hierarchy, flushed at once) with Handle
// set to the standard persistent handle, and persists nothing.
func (t *TPM) standardEK(alg Alg) (Key, error) {
	tmpl, handle, err := EKTemplate(alg)
	if err != nil {
		return Key{}, err
	}
	k, err := t.createPrimary(tpm2.TPMRHEndorsement, nil, tmpl)
	if err != nil {
		return Key{}, fmt.Errorf("creating the %s EK: %w", alg, err)
	}
	t.flush(k.Handle)
	return persistedAs(k, handle), nil
}

// persistDeviceKey makes what provisioning makes: the SRK of alg, a device
// key created under it and persisted at DefaultDeviceKeyHandle. It returns
// the SRK, the key's TPM2B_PUBLIC and TPM2B_PRIVATE, and the persisted key.
func persistDeviceKey(t testing.TB, tp *TPM, alg Alg) (srk Key, pub, priv []byte, dev Key) {
	t.Helper()
	srk, _, err := tp.EnsureSRK(alg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pub, priv, err = tp.CreateDeviceKey(srk); err != nil {
		t.Fatal(err)
	}
	if dev, err = tp.PersistDeviceKey(srk, pub, priv, DefaultDeviceKeyHandle, nil); err != nil {
		t.Fatal(err)
	}
	return srk, pub, priv, dev
}

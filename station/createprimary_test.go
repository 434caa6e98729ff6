package station

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// An RSA-2048 CreatePrimary is key generation: seconds on a discrete TPM
// (internal/tpmlatency), against milliseconds for every other command of a
// unit. These counts are what a unit costs on a real line, so they are
// pinned here:
//
//   - a fresh unit whose EK is persisted and certified by its vendor: 1,
//     the SRK, which no TPM holds before station creates it; the EK is
//     proven by reading (its shape and the certified key). Its secrets
//     (the lockout value sealed, then set) share one salted session: one
//     StartAuthSession, an RSA decryption in the TPM;
//   - a fresh unit whose EK is not persisted (a TPM straight from the
//     reel, its certificate in NV): 2, the EK (derived to be persisted)
//     and the SRK;
//   - a resumed unit whose EK and SRK steps are done: 0;
//   - station verify of a provisioned unit: 0 (the dps-attestation check
//     loads a key under the SRK: Import and Load, not CreatePrimary).
func TestRSACreatePrimaryPerUnit(t *testing.T) {
	l := newTestLine(t, nil)
	t.Run("fresh, EK persisted", func(t *testing.T) {
		tpm := l.simUnit()
		defer tpm.Close()
		before := tpm.Stats()
		l.mustProvision(t, context.Background(), tpm, "CP-1")
		d := tpm.Stats().Since(before)
		if got := d.Count(tpmops.CreatePrimaryRSA); got != 1 {
			t.Errorf("provision ran %d RSA CreatePrimary, want 1 (the SRK)", got)
		}
		// The lockout value is sealed under the SRK and then set: both
		// through one session salted to the SRK, one RSA decryption.
		if got := d.Count(tpmops.CommandKind{Code: tpm2.TPMCCStartAuthSession, Alg: tpm2.TPMAlgRSA}); got != 1 {
			t.Errorf("provision started %d sessions salted to an RSA key, want 1 (%v)", got, d.ByKind)
		}
		noLeaks(t, tpm)
		if got := rsaPrimaries(t, tpm, func() { l.mustVerify(t, tpm, "CP-1") }); got != 0 {
			t.Errorf("verify ran %d RSA CreatePrimary, want 0", got)
		}
		if p := l.ekProof(t, "CP-1"); p != "read, certified" {
			t.Errorf("ek_proof %q, want read, certified", p)
		}
	})
	t.Run("fresh, EK not persisted", func(t *testing.T) {
		tpm := l.simUnit()
		defer tpm.Close()
		evictAt(t, tpm, tpmops.EKHandleRSA)
		if got := rsaPrimaries(t, tpm, func() { l.mustProvision(t, context.Background(), tpm, "CP-2") }); got != 2 {
			t.Errorf("provision ran %d RSA CreatePrimary, want 2 (EK, SRK)", got)
		}
		if k, err := tpm.ReadEK(tpmops.RSA2048); err != nil {
			t.Errorf("the EK was not persisted: %v", err)
		} else if got := rsaPrimaries(t, tpm, func() { l.mustVerify(t, tpm, "CP-2") }); got != 0 || k.Handle != tpmops.EKHandleRSA {
			t.Errorf("verify ran %d RSA CreatePrimary, want 0", got)
		}
	})
	t.Run("resumed", func(t *testing.T) {
		tpm := l.simUnit()
		defer tpm.Close()
		// Stop the run once the SRK step has run: the next step fails on
		// the cancelled context and the unit is left in progress.
		ctx, cancel := context.WithCancel(context.Background())
		req := l.request(t, tpm, "CP-3")
		req.Observer = ObserverFuncs{Done: func(_, step string, _ time.Duration, _ error) {
			if step == StepSRK {
				cancel()
			}
		}}
		if _, err := l.prov.Provision(ctx, req); !errors.Is(err, context.Canceled) {
			t.Fatalf("interrupted provision: %v", err)
		}
		if u := l.unit("CP-3"); u == nil || !u.StepDone(StepSRK) || u.Status == store.StatusProvisioned {
			t.Fatal("the interrupted unit is not in progress past its SRK step")
		}
		if got := rsaPrimaries(t, tpm, func() {
			res := l.mustProvision(t, context.Background(), tpm, "CP-3")
			if !res.Resumed {
				t.Error("the second run did not resume")
			}
		}); got != 0 {
			t.Errorf("the resumed run ran %d RSA CreatePrimary, want 0", got)
		}
	})
	t.Run("swtpm", func(t *testing.T) {
		inst := swtpmtest.Start(t, swtpmtest.Options{}) // swtpm_setup: EK persisted, certificate in NV
		l := newTestLine(t, trustSwtpm(t, inst.CA))
		tpm, err := tpmops.Open(inst.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer tpm.Close()
		if got := rsaPrimaries(t, tpm, func() { l.mustProvision(t, context.Background(), tpm, "CP-4") }); got != 1 {
			t.Errorf("provision ran %d RSA CreatePrimary, want 1 (the SRK)", got)
		}
		if got := rsaPrimaries(t, tpm, func() { l.mustVerify(t, tpm, "CP-4") }); got != 0 {
			t.Errorf("verify ran %d RSA CreatePrimary, want 0", got)
		}
	})
}

// Reading proves the EK only with a certificate for the very key at the
// handle. A key of the standard EK's shape but another key (the template
// with another unique, as some SDKs create it), beside the genuine EK's
// certificate in NV, is not the EK: provision derives the EK, refuses with
// ErrEKMismatch and leaves the key where it is. In verify the same key,
// recorded by an edited database, fails the ek check.
func TestEKSameShapeOtherKeyRefused(t *testing.T) {
	l := newTestLine(t, nil)
	tpm := l.simUnit() // the standard EK's certificate is in NV
	defer tpm.Close()
	evictAt(t, tpm, tpmops.EKHandleRSA)
	other := tpm2.RSAEKTemplate
	other.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	foreign := persistPrimary(t, tpm, tpm2.TPMRHEndorsement, other, tpmops.EKHandleRSA)
	if _, err := tpm.ReadEK(tpmops.RSA2048); err != nil {
		t.Fatalf("test setup: the foreign key does not have the EK's shape: %v", err)
	}

	_, err := l.provision(l.request(t, tpm, "SHAPE-1"))
	if !errors.Is(err, tpmops.ErrEKMismatch) {
		t.Fatalf("provision over a same-shaped foreign key: %v, want ErrEKMismatch", err)
	}
	if u := l.unit("SHAPE-1"); u != nil {
		t.Error("a unit was recorded")
	}
	if k, err := tpm.ReadPublic(tpmops.EKHandleRSA); err != nil || !bytes.Equal(k.Name, foreign.Name) {
		t.Fatalf("the foreign key at 0x81010001 was touched: %v", err)
	}
	noLeaks(t, tpm)

	// Verify: provision a unit on a good TPM, then point its record at the
	// foreign key's TPM with the record edited to hold that key.
	evictAt(t, tpm, tpmops.EKHandleRSA)
	if _, _, err := tpm.EnsureEK(tpmops.RSA2048, nil); err != nil {
		t.Fatal(err)
	}
	l.mustProvision(t, context.Background(), tpm, "SHAPE-2")
	evictAt(t, tpm, tpmops.EKHandleRSA)
	foreign = persistPrimary(t, tpm, tpm2.TPMRHEndorsement, other, tpmops.EKHandleRSA)
	if err := l.env.DB.Update(func(tx *bolt.Tx) error {
		u, err := store.GetUnit(tx, "SHAPE-2")
		if err != nil {
			return err
		}
		u.EKPublic = foreign.Public
		return store.PutUnit(tx, u)
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), l.env, VerifyRequest{Serial: "SHAPE-2", Device: tpm, Flash: l.request(t, tpm, "SHAPE-2").FlashSpec})
	if !errors.Is(err, ErrVerifyFailed) {
		t.Fatalf("verify of a record holding a same-shaped foreign key: %v, want ErrVerifyFailed", err)
	}
	if c := findCheck(rep, CheckEK); c.Passed || !strings.Contains(c.Detail, "not the standard") {
		t.Fatalf("the ek check: %+v, want failed: not the standard EK", c)
	}
}

// rsaPrimaries returns how many RSA CreatePrimary commands fn sent on tpm.
func rsaPrimaries(t *testing.T, tpm *tpmops.TPM, fn func()) int {
	t.Helper()
	before := tpm.Stats()
	fn()
	return tpm.Stats().Since(before).Count(tpmops.CreatePrimaryRSA)
}

func (l *testLine) request(t testing.TB, tpm *tpmops.TPM, serial string) Request {
	t.Helper()
	d := filepath.Join(l.dir, "units", serial)
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return Request{Serial: serial, TPM: tpm, TPMAddr: tpm.Addr(), FlashSpec: "dir:" + d}
}

func (l *testLine) mustProvision(t *testing.T, ctx context.Context, tpm *tpmops.TPM, serial string) *Result {
	t.Helper()
	res, err := l.prov.Provision(ctx, l.request(t, tpm, serial))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (l *testLine) mustVerify(t *testing.T, tpm *tpmops.TPM, serial string) {
	t.Helper()
	rep, err := Verify(context.Background(), l.env, VerifyRequest{Serial: serial, Device: tpm, Flash: l.request(t, tpm, serial).FlashSpec})
	if err != nil {
		for _, c := range rep.Checks {
			t.Logf("%-15s %-5v %s", c.Name, c.Passed, c.Detail)
		}
		t.Fatal(err)
	}
}

// ekProof is how the unit's EK step proved its EK, from the audit log.
func (l *testLine) ekProof(t *testing.T, serial string) string {
	t.Helper()
	var proof string
	if err := l.env.DB.View(func(tx *bolt.Tx) error {
		recs, err := audit.UnitRecords(tx, serial)
		for _, r := range recs {
			if r.Event == "provision.ek" {
				var p struct {
					Proof string `json:"ek_proof"`
				}
				if err := json.Unmarshal(r.Payload, &p); err != nil {
					return err
				}
				proof = p.Proof
			}
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return proof
}

// evictAt removes the persistent object at h (test setup: the tests play
// a TPM's past, as another tool would have left it).
func evictAt(t testing.TB, tpm *tpmops.TPM, h tpm2.TPMHandle) {
	t.Helper()
	k, err := tpm.ReadPublic(h)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: h, Name: tpm2.TPM2BName{Buffer: k.Name}},
		PersistentHandle: h,
	}).Execute(tpm.Transport()); err != nil {
		t.Fatalf("evicting %#x: %v", uint32(h), err)
	}
}

// persistPrimary persists a primary made from tmpl at h, as another tool
// would.
func persistPrimary(t *testing.T, tpm *tpmops.TPM, hierarchy tpm2.TPMHandle, tmpl tpm2.TPMTPublic, h tpm2.TPMHandle) tpmops.Key {
	t.Helper()
	cp, err := tpm2.CreatePrimary{PrimaryHandle: hierarchy, InPublic: tpm2.New2B(tmpl)}.Execute(tpm.Transport())
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: cp.ObjectHandle}.Execute(tpm.Transport())
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: cp.ObjectHandle, Name: cp.Name},
		PersistentHandle: h,
	}).Execute(tpm.Transport()); err != nil {
		t.Fatal(err)
	}
	k, err := tpm.ReadPublic(h)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

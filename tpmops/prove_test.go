package tpmops

import (
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
)

// TestProveAuth: the TPM proves it holds a hierarchy's auth without the
// value crossing the bus, and refuses another value. The cost of a wrong
// guess is measured, not assumed: a wrong owner auth costs nothing; a wrong
// lockout auth disables lockout authorization (even the right value is then
// TPM_RC_LOCKOUT) while the DA counter, the owner and endorsement
// hierarchies and DA-protected keys are unaffected.
func TestProveAuth(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		srk, _, err := e.tpm.EnsureSRK(ECCP256, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.tpm.SetDAParams(nil, DAParams{MaxTries: 3, RecoverySeconds: 1000, LockoutRecoverySeconds: 1000}); err != nil {
			t.Fatal(err)
		}
		owner := []byte("owner-0123456789abcdef0123456789")
		lockout := []byte("lockout-0123456789abcdef01234567")
		wrong := []byte("someone-else-0123456789abcdef012")
		for h, v := range map[Hierarchy][]byte{Owner: owner, Lockout: lockout} {
			if err := e.tpm.ChangeAuth(h, nil, v, srk); err != nil {
				t.Fatal(err)
			}
		}
		bus := &spy{next: e.tpm.tr.inner}
		e.tpm.tr.inner = bus
		if err := e.tpm.ProveAuth(Owner, owner, srk); err != nil {
			t.Fatalf("proving the owner auth it holds: %v", err)
		}
		if err := e.tpm.ProveAuth(Lockout, lockout, srk); err != nil {
			t.Fatalf("proving the lockout auth it holds: %v", err)
		}
		// A wrong owner auth: refused, free of consequences.
		for i := 0; i < 5; i++ {
			if err := e.tpm.ProveAuth(Owner, wrong, srk); !errors.Is(err, ErrBadAuth) {
				t.Fatalf("proving a wrong owner auth (#%d): %v, want ErrBadAuth", i+1, err)
			}
		}
		if err := e.tpm.ProveAuth(Owner, owner, srk); err != nil {
			t.Fatalf("owner auth after 5 wrong guesses: %v", err)
		}
		// A wrong lockout auth: refused once, then the lockout hierarchy
		// takes no authorization, not even the right one.
		if err := e.tpm.ProveAuth(Lockout, wrong, srk); !errors.Is(err, ErrBadAuth) {
			t.Fatalf("proving a wrong lockout auth: %v, want ErrBadAuth", err)
		}
		if err := e.tpm.ProveAuth(Lockout, lockout, srk); !errors.Is(err, ErrLockout) {
			t.Fatalf("the right lockout auth after a wrong one: %v, want ErrLockout (lockout hierarchy disabled)", err)
		}
		e.tpm.tr.inner = bus.next
		for _, v := range [][]byte{owner, lockout, wrong} {
			if bus.sawBytes(v) {
				t.Fatal("an auth value crossed the bus in clear")
			}
		}
		p, err := e.tpm.Permanent()
		if err != nil || p.InLockout || !p.LockoutAuthSet || !p.OwnerAuthSet {
			t.Fatalf("after the failed lockout proof: %+v, %v (want no DA lockout, auths still set)", p, err)
		}
		if n, err := e.tpm.property(tpm2.TPMPTLockoutCounter); err != nil || n != 0 {
			t.Fatalf("DA failure counter %d (%v) after the proofs, want 0", n, err)
		}
		// The owner hierarchy and the SRK still work.
		if err := e.tpm.ChangeAuth(Owner, owner, nil, srk); err != nil {
			t.Fatalf("owner hierarchy after the failed lockout proof: %v", err)
		}
		if _, err := e.tpm.Seal(srk, []byte("x")); err != nil {
			t.Fatalf("SRK after the failed lockout proof: %v", err)
		}
		t.Logf("%s: wrong lockout auth: lockout hierarchy disabled for lockoutRecovery (1000 s here), DA counter untouched", e.name)
	})
}

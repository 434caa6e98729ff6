package tpmops

import (
	"bytes"
	"errors"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
)

// TestSecretsOneSession: a unit's secrets (a value sealed under the SRK,
// then set as the lockout auth) travel through one salted session, one
// StartAuthSession (one RSA decryption in the TPM) for both, never in clear
// on the bus; the sealed value unseals, the auth is in force, and Close
// leaves nothing loaded. A failed command retires the session.
func TestSecretsOneSession(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		srk, _, err := e.tpm.EnsureSRK(RSA2048, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		secret := []byte("lockout-0123456789abcdef01234567")
		bus := &spy{next: e.tpm.tr.inner}
		e.tpm.tr.inner = bus
		before := e.tpm.Stats()
		s, err := e.tpm.Secrets(srk)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := s.Seal(srk, secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ChangeAuth(Lockout, nil, secret); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("a second Close: %v", err)
		}
		e.tpm.tr.inner = bus.next
		if bus.sawBytes(secret) {
			t.Fatal("the secret crossed the bus in clear")
		}
		d := e.tpm.Stats().Since(before)
		if got := d.Count(CommandKind{tpm2.TPMCCStartAuthSession, tpm2.TPMAlgRSA}); got != 1 {
			t.Errorf("%d StartAuthSession salted to the RSA SRK for two secrets, want 1 (%v)", got, d.ByKind)
		}
		if got, err := e.tpm.Unseal(srk, blob); err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Unseal = %x, %v", got, err)
		}
		if p, err := e.tpm.Permanent(); err != nil || !p.LockoutAuthSet {
			t.Fatalf("lockout auth not set: %+v %v", p, err)
		}
		if err := e.tpm.ProveAuth(Lockout, secret, srk); err != nil {
			t.Fatalf("the TPM does not hold the value set through the session: %v", err)
		}
		if hs, err := e.tpm.Transients(); err != nil || len(hs) != 0 {
			t.Fatalf("after Close: loaded %v, %v", hs, err)
		}

		// A failed command (an owner auth change with a wrong old auth)
		// flushes the session and every later call is refused.
		s, err = e.tpm.Secrets(srk)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.ChangeAuth(Owner, []byte("not the owner auth"), secret); !errors.Is(err, ErrBadAuth) {
			t.Fatalf("ChangeAuth with a wrong old auth: %v, want ErrBadAuth", err)
		}
		if !s.Closed() {
			t.Fatal("the session outlived a failed command")
		}
		if _, err := s.Seal(srk, secret); !errors.Is(err, errSecretsClosed) {
			t.Fatalf("Seal after a failed command: %v, want errSecretsClosed", err)
		}
		if hs, err := e.tpm.Transients(); err != nil || len(hs) != 0 {
			t.Fatalf("after a failed command: loaded %v, %v", hs, err)
		}
	})
}

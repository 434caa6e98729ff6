package tpmops

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/google/go-tpm/tpm2"
)

// TestLockout drives the TPM into dictionary-attack lockout with wrong
// authorizations of a DA-protected key, checks that the package reports it
// as ErrLockout, and recovers with the lockout auth.
func TestLockout(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		_, _, _, dev := persistDeviceKey(t, e.tpm, ECCP256)
		if err := e.tpm.SetDAParams(nil, DAParams{MaxTries: 2, RecoverySeconds: 1000, LockoutRecoverySeconds: 1000}); err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("x"))
		wrongSign := func() error {
			_, err := tpm2.Sign{
				KeyHandle:  tpm2.AuthHandle{Handle: dev.Handle, Name: tpm2.TPM2BName{Buffer: dev.Name}, Auth: tpm2.PasswordAuth([]byte("guess"))},
				Digest:     tpm2.TPM2BDigest{Buffer: digest[:]},
				InScheme:   tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgECDSA, Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: tpm2.TPMAlgSHA256})},
				Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
			}.Execute(e.tpm.Transport())
			return classify(err)
		}
		for i := 0; i < 2; i++ {
			if err := wrongSign(); !errors.Is(err, ErrBadAuth) {
				t.Fatalf("wrong auth #%d: %v, want ErrBadAuth", i+1, err)
			}
		}
		p, err := e.tpm.Permanent()
		if err != nil || !p.InLockout {
			t.Fatalf("after 2 failures with maxTries 2: %+v, %v", p, err)
		}
		signer, err := e.tpm.Signer(dev)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, ErrLockout) {
			t.Fatalf("signing in lockout: %v, want ErrLockout", err)
		}
		if err := e.tpm.resetDALockout(nil); err != nil {
			t.Fatal(err)
		}
		if p, err := e.tpm.Permanent(); err != nil || p.InLockout {
			t.Fatalf("after resetDALockout: %+v, %v", p, err)
		}
		if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			t.Fatalf("signing after the reset: %v", err)
		}
	})
}

// rcSpy records response codes below the retrying layer.
type rcSpy struct {
	next interface{ Send([]byte) ([]byte, error) }
	rcs  []uint32
}

func (s *rcSpy) Send(cmd []byte) ([]byte, error) {
	rsp, err := s.next.Send(cmd)
	if err == nil && len(rsp) >= 10 {
		s.rcs = append(s.rcs, binary.BigEndian.Uint32(rsp[6:10]))
	}
	return rsp, err
}

// TestFirstDAAuthAfterStartup: libtpms answers TPM_RC_RETRY to the first
// authorization of a DA-protected object after a startup; Open's transport
// retries it, so the first signature after a restart just works.
func TestFirstDAAuthAfterStartup(t *testing.T) {
	sw := swtpmtest.Start(t, swtpmtest.Options{})
	e := &env{name: "swtpm", sw: sw}
	openChecked(t, e, sw.Addr)
	_, _, _, dev := persistDeviceKey(t, e.tpm, RSA2048)
	e.reconnect(t, sw.Restart)
	spy := &rcSpy{next: e.tpm.tr.inner}
	e.tpm.tr.inner = spy
	s, err := e.tpm.Signer(dev)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("first after startup"))
	if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
		t.Fatalf("first DA-protected authorization after startup: %v", err)
	}
	retries := 0
	for _, rc := range spy.rcs {
		if rc == rcRetry {
			retries++
		}
	}
	t.Logf("TPM_RC_RETRY answers absorbed by the transport: %d (response codes %#x)", retries, spy.rcs)
}

// resetDALockout runs TPM2_DictionaryAttackLockReset (lockout auth): the
// failure counter goes to zero and the TPM leaves lockout.
func (t *TPM) resetDALockout(lockoutAuth []byte) error {
	if err := t.lockoutCommand(ccDictionaryAttackLockReset, lockoutAuth, nil); err != nil {
		return fmt.Errorf("resetting dictionary-attack lockout: %w", err)
	}
	return nil
}

package tpmops

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
)

// spy records every command sent to the TPM.
type spy struct {
	mu   sync.Mutex
	next interface{ Send([]byte) ([]byte, error) }
	cmds [][]byte
}

func (s *spy) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	s.cmds = append(s.cmds, bytes.Clone(cmd))
	s.mu.Unlock()
	return s.next.Send(cmd)
}

func (s *spy) sawBytes(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cmds {
		if bytes.Contains(c, b) {
			return true
		}
	}
	return false
}

func TestOwnership(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		ek, _, err := e.tpm.EnsureEK(RSA2048, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.tpm.Permanent()
		if err != nil {
			t.Fatal(err)
		}
		if p.OwnerAuthSet || p.LockoutAuthSet || p.EndorsementAuthSet || p.InLockout {
			t.Fatalf("fresh TPM: %+v", p)
		}
		if empty, err := e.tpm.ownerAuthIsEmpty(); err != nil || !empty {
			t.Fatalf("ownerAuthIsEmpty on a fresh TPM = %v, %v", empty, err)
		}
		da, err := e.tpm.DAParams()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: default DA params %+v", e.name, da)

		ownerAuth := []byte("owner-secret-0123456789abcdefgh!")
		lockoutAuth := []byte("lockout-secret-0123456789abcdef")
		// Watch the bus: the new secrets must never cross it in clear.
		bus := &spy{next: e.tpm.tr.inner}
		e.tpm.tr.inner = bus
		if err := e.tpm.ChangeAuth(Owner, nil, ownerAuth, ek); err != nil {
			t.Fatal(err)
		}
		if err := e.tpm.ChangeAuth(Lockout, nil, lockoutAuth, ek); err != nil {
			t.Fatal(err)
		}
		if bus.sawBytes(ownerAuth) || bus.sawBytes(lockoutAuth) {
			t.Fatal("a new hierarchy auth crossed the bus in clear")
		}
		e.tpm.tr.inner = bus.next

		p, err = e.tpm.Permanent()
		if err != nil {
			t.Fatal(err)
		}
		if !p.OwnerAuthSet || !p.LockoutAuthSet || p.EndorsementAuthSet || p.InLockout {
			t.Fatalf("after ChangeAuth: %+v (raw %#x)", p, p.Raw)
		}
		if e.sw != nil {
			out := e.tool(t, "tpm2_getcap", "properties-variable")
			for _, want := range []string{"ownerAuthSet:              1", "lockoutAuthSet:            1", "endorsementAuthSet:        0"} {
				if !strings.Contains(out, want) {
					t.Fatalf("tpm2_getcap properties-variable lacks %q:\n%s", want, out)
				}
			}
		}
		if empty, err := e.tpm.ownerAuthIsEmpty(); err != nil || empty {
			t.Fatalf("ownerAuthIsEmpty after taking ownership = %v, %v", empty, err)
		}
		// The new owner auth works, the old (empty) one does not.
		if _, _, err := e.tpm.EnsureSRK(RSA2048, nil, nil); !errors.Is(err, ErrBadAuth) {
			t.Fatalf("EnsureSRK with the old owner auth: %v, want ErrBadAuth", err)
		}
		if _, persisted, err := e.tpm.EnsureSRK(RSA2048, ownerAuth, nil); err != nil || !persisted {
			t.Fatalf("EnsureSRK with the new owner auth: persisted=%v err=%v", persisted, err)
		}
		if err := e.tpm.ChangeAuth(Owner, []byte("wrong"), nil, ek); !errors.Is(err, ErrBadAuth) {
			t.Fatalf("ChangeAuth with a wrong old owner auth: %v, want ErrBadAuth", err)
		}
		// The new lockout auth works: set the DA parameters with it.
		want := DAParams{MaxTries: 32, RecoverySeconds: 600, LockoutRecoverySeconds: 86400}
		if err := e.tpm.SetDAParams(lockoutAuth, want); err != nil {
			t.Fatal(err)
		}
		got, err := e.tpm.DAParams()
		if err != nil || got != want {
			t.Fatalf("DA params read back %+v, %v; want %+v", got, err, want)
		}
		// The endorsement hierarchy still takes the empty auth (DPS needs it).
		if _, _, err := e.tpm.EnsureEK(RSA2048, ownerAuth); err != nil {
			t.Fatalf("EnsureEK (empty endorsement auth) after taking ownership: %v", err)
		}
		// The owner auth can be given back (e.g. a unit returned to stock).
		if err := e.tpm.ChangeAuth(Owner, ownerAuth, nil, ek); err != nil {
			t.Fatal(err)
		}
		if empty, err := e.tpm.ownerAuthIsEmpty(); err != nil || !empty {
			t.Fatalf("ownerAuthIsEmpty after clearing = %v, %v", empty, err)
		}
	})
}

func TestChangeAuthRefusesLongAuth(t *testing.T) {
	e := &env{name: "sim"}
	openChecked(t, e, "sim")
	ek, _, err := e.tpm.EnsureEK(ECCP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.tpm.ChangeAuth(Owner, nil, make([]byte, 33), ek); err == nil {
		t.Fatal("a 33-byte auth was accepted")
	}
	// Salting to the ECC EK works too.
	if err := e.tpm.ChangeAuth(Lockout, nil, []byte("l"), ek); err != nil {
		t.Fatal(err)
	}
	if p, err := e.tpm.Permanent(); err != nil || !p.LockoutAuthSet {
		t.Fatalf("Permanent = %+v, %v", p, err)
	}
}

// probeTemplate is a keyed-hash primary: deriving it costs the TPM a KDF,
// not a key search, so it makes a cheap owner-authorised probe.
var probeTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM: true, FixedParent: true, SensitiveDataOrigin: true, UserWithAuth: true, SignEncrypt: true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{
			Scheme:  tpm2.TPMAlgHMAC,
			Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC, &tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
		},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: []byte("station owner-auth probe")}),
}

// ownerAuthIsEmpty reports whether an owner-authorised command succeeds with
// an empty password (a keyed-hash CreatePrimary, flushed at once). A set
// owner auth gives TPM_RC_BAD_AUTH, which the owner hierarchy does not count
// against the dictionary-attack counter. The lockout auth is never probed.
func (t *TPM) ownerAuthIsEmpty() (bool, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(probeTemplate),
	}.Execute(t.tr)
	if err == nil {
		t.flush(rsp.ObjectHandle)
		return true, nil
	}
	err = classify(err)
	if errors.Is(err, ErrBadAuth) {
		return false, nil
	}
	return false, fmt.Errorf("probing the owner auth: %w", err)
}

package tpmops

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/google/go-tpm/tpm2"
)

// dpsUnit makes sure the TPM has the standard EK and SRK persisted (as a
// provisioned unit has) and returns their TPM2B_PUBLIC bytes.
func dpsUnit(t *testing.T, e *env, ecc bool) (d DPSDevice, ekPub, srkPub []byte) {
	t.Helper()
	ekT, srkT, ekH, srkH := tpm2.RSAEKTemplate, tpm2.RSASRKTemplate, EKHandleRSA, SRKHandleRSA
	if ecc {
		ekT, srkT, ekH, srkH = tpm2.ECCEKTemplate, tpm2.ECCSRKTemplate, EKHandleECC, SRKHandleECC
	}
	ekPub = dpsPersistPrimary(t, e.tpm, tpm2.TPMRHEndorsement, ekT, ekH)
	srkPub = dpsPersistPrimary(t, e.tpm, tpm2.TPMRHOwner, srkT, srkH)
	return DPSDevice{EK: ekH, SRK: srkH, Persist: DPSKeyHandle}, ekPub, srkPub
}

// dpsPersistPrimary returns the public of the key at handle, creating and
// persisting the primary there first when the handle is empty.
func dpsPersistPrimary(t *testing.T, tp *TPM, hierarchy tpm2.TPMHandle, tmpl tpm2.TPMTPublic, handle tpm2.TPMHandle) []byte {
	t.Helper()
	if rp, err := (tpm2.ReadPublic{ObjectHandle: handle}).Execute(tp.tr); err == nil {
		return tpm2.Marshal(rp.OutPublic)
	}
	cp, err := tpm2.CreatePrimary{PrimaryHandle: hierarchy, InPublic: tpm2.New2B(tmpl)}.Execute(tp.tr)
	if err != nil {
		t.Fatalf("CreatePrimary: %v", err)
	}
	defer tp.flush(cp.ObjectHandle)
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.TPMRHOwner,
		ObjectHandle:     tpm2.NamedHandle{Handle: cp.ObjectHandle, Name: cp.Name},
		PersistentHandle: handle,
	}).Execute(tp.tr); err != nil {
		t.Fatalf("EvictControl to %#x: %v", uint32(handle), err)
	}
	return tpm2.Marshal(cp.OutPublic)
}

// foreignPublic is the TPM2B_PUBLIC of a key made in software with tmpl's
// parameters: another TPM's EK or SRK, as far as the challenge goes.
func foreignPublic(t testing.TB, tmpl tpm2.TPMTPublic) []byte {
	t.Helper()
	switch tmpl.Type {
	case tpm2.TPMAlgRSA:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: k.N.Bytes()})
	case tpm2.TPMAlgECC:
		k, err := ecdh.P256().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b := k.PublicKey().Bytes() // 0x04 || X || Y
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: b[1:33]}, Y: tpm2.TPM2BECCParameter{Buffer: b[33:]},
		})
	}
	return tpm2.Marshal(tpm2.New2B(tmpl))
}

func newHMACKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// sasToSign is the SAS string-to-sign of a registration, as the SDK signs it.
func sasToSign(ekPub []byte) []byte {
	_, s := enroll.SASStringToSign("0ne00000000", enroll.RegistrationID(ekPub), time.Now().Add(time.Hour).Unix())
	return []byte(s)
}

func softHMAC(key, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(data)
	return m.Sum(nil)
}

func dpsHandleEmpty(t *testing.T, tp *TPM, h tpm2.TPMHandle) bool {
	t.Helper()
	_, err := tp.objectName(h)
	if err != nil && !errors.Is(err, ErrHandleEmpty) {
		t.Fatalf("reading %#x: %v", uint32(h), err)
	}
	return err != nil
}

func setOwnerAuth(t *testing.T, tp *TPM, oldAuth, newAuth []byte) {
	t.Helper()
	if _, err := (tpm2.HierarchyChangeAuth{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(oldAuth)},
		NewAuth:    tpm2.TPM2BAuth{Buffer: newAuth},
	}).Execute(tp.tr); err != nil {
		t.Fatalf("HierarchyChangeAuth(owner): %v", err)
	}
}

func TestDPSRoundTrip(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		for _, ecc := range []bool{false, true} {
			name := map[bool]string{false: "rsa", true: "ecc"}[ecc]
			t.Run(name, func(t *testing.T) {
				d, ekPub, srkPub := dpsUnit(t, e, ecc)
				key := newHMACKey(t)
				start := time.Now()
				ak, err := MakeDPSChallenge(ekPub, srkPub, key)
				if err != nil {
					t.Fatal(err)
				}
				made := time.Since(start)
				msg := sasToSign(ekPub)
				start = time.Now()
				sig, err := e.tpm.DPSSign(ak, d, msg)
				if err != nil {
					t.Fatalf("DPSSign: %v", err)
				}
				t.Logf("%s/%s: authenticationKey %d bytes, made in %v, device side %v", e.name, name, len(ak), made, time.Since(start))
				if !hmac.Equal(sig, softHMAC(key, msg)) {
					t.Fatal("TPM HMAC differs from the software HMAC with the key DPS sent")
				}
				if !dpsHandleEmpty(t, e.tpm, d.Persist) {
					t.Fatalf("%#x still occupied after DPSSign", uint32(d.Persist))
				}
				// The key left transient (no persist) signs the same way.
				d.Persist = 0
				k, err := e.tpm.ActivateDPSKey(ak, d)
				if err != nil {
					t.Fatal(err)
				}
				if k.Persisted || uint32(k.Handle)>>24 != uint32(tpm2.TPMHTTransient) {
					t.Fatalf("key = %#x persisted=%v, want transient", uint32(k.Handle), k.Persisted)
				}
				sig2, err := k.HMAC(msg)
				if err != nil {
					t.Fatal(err)
				}
				if err := k.Remove(); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(sig, sig2) {
					t.Fatal("transient key signs differently")
				}
				noTransients(t, e.tpm, t.Fatalf)
			})
		}
	})
}

// TestDPSChallengeBreaks makes the challenges the field would fail on and
// requires the device side to fail at the expected step, leaving nothing.
func TestDPSChallengeBreaks(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		d, ekPub, srkPub := dpsUnit(t, e, false)
		key := newHMACKey(t)
		for _, tc := range []struct {
			name     string
			ek, srk  []byte
			wantStep string
		}{
			{"another TPM's EK", foreignPublic(t, tpm2.RSAEKTemplate), srkPub, "activating the credential"},
			{"another SRK", ekPub, foreignPublic(t, tpm2.RSASRKTemplate), "activating the credential"},
			{"ECC SRK for an RSA unit", ekPub, foreignPublic(t, tpm2.ECCSRKTemplate), "activating the credential"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ak, err := MakeDPSChallenge(tc.ek, tc.srk, key)
				if err != nil {
					t.Fatal(err)
				}
				_, err = e.tpm.DPSSign(ak, d, []byte("x"))
				var se *DPSStepError
				if !errors.As(err, &se) || !errors.Is(err, ErrDPSActivation) {
					t.Fatalf("DPSSign = %v, want a DPSStepError", err)
				}
				if !bytes.HasPrefix([]byte(se.Step), []byte(tc.wantStep)) {
					t.Fatalf("failed at %q, want %q", se.Step, tc.wantStep)
				}
				t.Logf("%v", err)
				if !dpsHandleEmpty(t, e.tpm, d.Persist) {
					t.Fatal("DPS key handle occupied after a failed challenge")
				}
				noTransients(t, e.tpm, t.Fatalf)
			})
		}

		// One byte flipped: in the credential (its last byte), the activation
		// refuses it; in the duplicate's private, the import refuses it after
		// the credential activates.
		for _, tc := range []struct {
			name     string
			offset   func(ch *DPSChallenge) int
			wantStep string
		}{
			{"tampered credential", func(ch *DPSChallenge) int { return 2 + len(ch.CredentialBlob.Buffer) - 1 }, "activating the credential"},
			{"tampered duplicate", func(ch *DPSChallenge) int {
				return 2 + len(ch.CredentialBlob.Buffer) + 2 + len(ch.CredentialSeed.Buffer) + 2 + 40
			}, "importing the key under the SRK"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ak, err := MakeDPSChallenge(ekPub, srkPub, key)
				if err != nil {
					t.Fatal(err)
				}
				ch, err := ParseDPSChallenge(ak)
				if err != nil {
					t.Fatal(err)
				}
				ak[tc.offset(ch)] ^= 1
				_, err = e.tpm.DPSSign(ak, d, []byte("x"))
				var se *DPSStepError
				if !errors.As(err, &se) || !strings.HasPrefix(se.Step, tc.wantStep) {
					t.Fatalf("DPSSign = %v, want a failure at %q", err, tc.wantStep)
				}
				noTransients(t, e.tpm, t.Fatalf)
			})
		}
	})
}

// TestDPSOwnerAuth is the field failure of a unit whose owner auth is set:
// the SDK persists its key with an empty owner auth, and fails.
func TestDPSOwnerAuth(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		d, ekPub, srkPub := dpsUnit(t, e, false)
		key := newHMACKey(t)
		ak, err := MakeDPSChallenge(ekPub, srkPub, key)
		if err != nil {
			t.Fatal(err)
		}
		owner := []byte("owner-auth-behind-station's-back")
		setOwnerAuth(t, e.tpm, nil, owner)
		t.Cleanup(func() { setOwnerAuth(t, e.tpm, owner, nil) })

		_, err = e.tpm.DPSSign(ak, d, []byte("x"))
		var se *DPSStepError
		if !errors.As(err, &se) || !errors.Is(err, ErrBadAuth) {
			t.Fatalf("DPSSign with empty owner auth = %v, want a bad-auth DPSStepError", err)
		}
		if !bytes.Contains([]byte(se.Step), []byte("persisting")) {
			t.Fatalf("failed at %q, want the persist step", se.Step)
		}
		if bytes.Contains([]byte(err.Error()), owner) {
			t.Fatal("owner auth in the error")
		}
		if !dpsHandleEmpty(t, e.tpm, d.Persist) {
			t.Fatal("DPS key handle occupied after the failed persist")
		}
		noTransients(t, e.tpm, t.Fatalf)

		// The device given its owner auth registers (and the key is evicted
		// again with it); without persisting, the owner auth is not needed.
		msg := sasToSign(ekPub)
		for _, dd := range []DPSDevice{
			{EK: d.EK, SRK: d.SRK, Persist: d.Persist, OwnerAuth: owner},
			{EK: d.EK, SRK: d.SRK},
		} {
			sig, err := e.tpm.DPSSign(ak, dd, msg)
			if err != nil {
				t.Fatalf("DPSSign(persist %#x) = %v", uint32(dd.Persist), err)
			}
			if !hmac.Equal(sig, softHMAC(key, msg)) {
				t.Fatal("HMAC differs")
			}
			if !dpsHandleEmpty(t, e.tpm, d.Persist) {
				t.Fatal("DPS key handle occupied afterwards")
			}
		}
	})
}

// TestDPSPersistHandleOccupied: what is at the persist handle is never
// evicted (the SDK would; verify must not change the unit).
func TestDPSPersistHandleOccupied(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		d, ekPub, srkPub := dpsUnit(t, e, false)
		before := dpsPersistPrimary(t, e.tpm, tpm2.TPMRHOwner, tpm2.ECCSRKTemplate, d.Persist)
		t.Cleanup(func() {
			name, err := e.tpm.objectName(d.Persist)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.tpm.evictPersistent(d.Persist, name.Buffer, nil); err != nil {
				t.Error(err)
			}
		})
		ak, err := MakeDPSChallenge(ekPub, srkPub, newHMACKey(t))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.tpm.DPSSign(ak, d, []byte("x")); !errors.Is(err, ErrForeignKey) {
			t.Fatalf("DPSSign = %v, want ErrForeignKey", err)
		}
		rp, err := tpm2.ReadPublic{ObjectHandle: d.Persist}.Execute(e.tpm.tr)
		if err != nil || !bytes.Equal(tpm2.Marshal(rp.OutPublic), before) {
			t.Fatalf("key at %#x changed: %v", uint32(d.Persist), err)
		}
	})
}

func TestParseDPSChallenge(t *testing.T) {
	ekPub := foreignPublic(t, tpm2.RSAEKTemplate)
	srkPub := foreignPublic(t, tpm2.RSASRKTemplate)
	ak, err := MakeDPSChallenge(ekPub, srkPub, newHMACKey(t))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := ParseDPSChallenge(ak)
	if err != nil {
		t.Fatal(err)
	}
	// An RSA-2048 EK: credential seed and duplication seed are 256 bytes.
	if len(ch.CredentialSeed.Buffer) != 256 || len(ch.DuplicateSeed.Buffer) != 256 {
		t.Fatalf("seed sizes %d, %d", len(ch.CredentialSeed.Buffer), len(ch.DuplicateSeed.Buffer))
	}
	if ch.KeyPublicArea.Type != tpm2.TPMAlgKeyedHash || ch.KeyPublicArea.ObjectAttributes.FixedTPM {
		t.Fatalf("key public = %+v", ch.KeyPublicArea)
	}
	for n := 0; n < len(ak); n++ {
		if _, err := ParseDPSChallenge(ak[:n]); !errors.Is(err, ErrDPSChallenge) {
			t.Fatalf("truncated to %d bytes: %v, want ErrDPSChallenge", n, err)
		}
	}
	if _, err := ParseDPSChallenge(append(bytes.Clone(ak), 0)); !errors.Is(err, ErrDPSChallenge) {
		t.Fatalf("trailing byte: %v", err)
	}
	for _, tc := range []struct {
		name          string
		ek, srk, hkey []byte
	}{
		{"short HMAC key", ekPub, srkPub, make([]byte, 8)},
		{"EK without size", ekPub[2:], srkPub, make([]byte, 32)},
		{"SRK truncated", ekPub, srkPub[:100], make([]byte, 32)},
	} {
		if _, err := MakeDPSChallenge(tc.ek, tc.srk, tc.hkey); err == nil {
			t.Errorf("%s: MakeDPSChallenge accepted it", tc.name)
		}
	}
}

func FuzzParseDPSChallenge(f *testing.F) {
	ek := foreignPublic(f, tpm2.ECCEKTemplate)
	srk := foreignPublic(f, tpm2.ECCSRKTemplate)
	ak, err := MakeDPSChallenge(ek, srk, make([]byte, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ak)
	f.Add([]byte{0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := ParseDPSChallenge(b)
		if err != nil {
			if !errors.Is(err, ErrDPSChallenge) {
				t.Fatalf("error without ErrDPSChallenge: %v", err)
			}
			return
		}
		if ch.KeyPublicArea == nil {
			t.Fatal("parsed without a public area")
		}
	})
}

// The station plays DPS against a unit's TPM: the challenge is made in
// software from the EK and SRK publics, the TPM activates, imports and
// persists the key as the DPS SDKs do and signs the SAS string-to-sign.
func ExampleMakeDPSChallenge() {
	tpm, err := Open("sim")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer tpm.Close()
	ek, _, err := tpm.EnsureEK(RSA2048, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	srk, _, err := tpm.EnsureSRK(RSA2048, nil, nil)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Service side: what DPS answers the device's first registration.
	hmacKey := make([]byte, 32)
	rand.Read(hmacKey)
	authenticationKey, err := MakeDPSChallenge(ek.Public, srk.Public, hmacKey)
	if err != nil {
		fmt.Println(err)
		return
	}

	// Device side: activate, import, persist at 0x81000100, sign; then
	// remove the key again.
	_, toSign := enroll.SASStringToSign("0ne00000000", enroll.RegistrationID(ek.Public), 1700000000)
	sig, err := tpm.DPSSign(authenticationKey, DPSDevice{EK: ek.Handle, SRK: srk.Handle, Persist: DPSKeyHandle}, []byte(toSign))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("signature verifies:", hmac.Equal(sig, softHMAC(hmacKey, []byte(toSign))))
	// Output: signature verifies: true
}

package tpmops

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/google/go-tpm/tpm2"
)

// ReadEK proves by reading only what reading can prove: the shape of the
// key at the EK handle. It never creates a key, never touches what is
// there, and refuses every key of another shape.
func TestReadEK(t *testing.T) {
	eachTPM(t, swtpmtest.Options{Blank: true}, func(t *testing.T, e *env) {
		before := e.tpm.Stats()
		if _, err := e.tpm.ReadEK(RSA2048); !errors.Is(err, ErrHandleEmpty) {
			t.Fatalf("ReadEK on an empty handle: %v, want ErrHandleEmpty", err)
		}
		ek, _, err := e.tpm.EnsureEK(RSA2048, nil)
		if err != nil {
			t.Fatal(err)
		}
		mid := e.tpm.Stats()
		k, err := e.tpm.ReadEK(RSA2048)
		if err != nil || !bytes.Equal(k.Public, ek.Public) || k.Handle != EKHandleRSA {
			t.Fatalf("ReadEK of the standard EK: %v (same=%v)", err, bytes.Equal(k.Public, ek.Public))
		}
		if n := e.tpm.Stats().Since(mid).Count(CreatePrimaryRSA); n != 0 {
			t.Fatalf("ReadEK ran %d RSA CreatePrimary", n)
		}
		if n := mid.Since(before).Count(CreatePrimaryRSA); n != 1 {
			t.Fatalf("EnsureEK on an empty handle ran %d RSA CreatePrimary, want 1", n)
		}

		// Other shapes at the handle: refused, and left where they are.
		noAdmin := tpm2.RSAEKTemplate
		noAdmin.ObjectAttributes.AdminWithPolicy = false
		noAdmin.ObjectAttributes.UserWithAuth = true
		otherPolicy := tpm2.RSAEKTemplate
		otherPolicy.AuthPolicy = tpm2.TPM2BDigest{Buffer: bytes.Repeat([]byte{7}, 32)}
		aes256 := tpm2.RSAEKTemplate
		aes256.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
			Symmetric: tpm2.TPMTSymDefObject{
				Algorithm: tpm2.TPMAlgAES,
				KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256)),
				Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
			},
			KeyBits: 2048,
		})
		for name, tc := range map[string]struct {
			hierarchy tpm2.TPMHandle
			tmpl      tpm2.TPMTPublic
		}{
			"ECC key":           {tpm2.TPMRHOwner, tpm2.ECCSRKTemplate},
			"RSA SRK template":  {tpm2.TPMRHOwner, tpm2.RSASRKTemplate},
			"userWithAuth EK":   {tpm2.TPMRHEndorsement, noAdmin},
			"another policy":    {tpm2.TPMRHEndorsement, otherPolicy},
			"AES-256 parameter": {tpm2.TPMRHEndorsement, aes256},
		} {
			t.Run(name, func(t *testing.T) {
				foreign := putKey(t, e.tpm, tc.hierarchy, tc.tmpl, EKHandleRSA)
				persistent, _ := e.tpm.Persistent()
				if _, err := e.tpm.ReadEK(RSA2048); !errors.Is(err, ErrEKMismatch) {
					t.Fatalf("ReadEK over %s: %v, want ErrEKMismatch", name, err)
				}
				after, _ := e.tpm.Persistent()
				still, err := e.tpm.ReadPublic(EKHandleRSA)
				if err != nil || !bytes.Equal(still.Name, foreign.Name) || !slices.Equal(persistent, after) {
					t.Fatalf("the key at 0x81010001 was touched: %v", err)
				}
			})
		}

		// The limit of reading: the template with another unique (what some
		// Azure SDKs create) has the standard shape. Only a certificate for
		// the key (station) or CreatePrimary (EnsureEK) tells them apart.
		t.Run("same shape, another key", func(t *testing.T) {
			foreign := putKey(t, e.tpm, tpm2.TPMRHEndorsement, azureEmptyUniqueEK(), EKHandleRSA)
			k, err := e.tpm.ReadEK(RSA2048)
			if err != nil || !bytes.Equal(k.Name, foreign.Name) {
				t.Fatalf("ReadEK of a standard-shaped key: %v", err)
			}
			if _, _, err := e.tpm.EnsureEK(RSA2048, nil); !errors.Is(err, ErrEKMismatch) {
				t.Fatalf("EnsureEK over it: %v, want ErrEKMismatch", err)
			}
		})
	})
}

func TestCheckSRKShape(t *testing.T) {
	e := &env{name: "sim"}
	openChecked(t, e, "sim")
	for _, alg := range []Alg{RSA2048, ECCP256} {
		srk, _, err := e.tpm.EnsureSRK(alg, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := CheckSRKShape(srk.Public); err != nil || got != alg {
			t.Fatalf("CheckSRKShape(%s SRK) = %q, %v", alg, got, err)
		}
	}
	srk, _ := e.tpm.ReadPublic(SRKHandleRSA)
	dev, _, err := e.tpm.CreateDeviceKey(srk)
	if err != nil {
		t.Fatal(err)
	}
	noDA := tpm2.RSASRKTemplate
	noDA.ObjectAttributes.NoDA = false // tpm2_createprimary's default
	for name, public := range map[string][]byte{
		"device key":   dev,
		"DA-protected": tpm2.Marshal(tpm2.New2B(noDA)),
		"EK template":  tpm2.Marshal(tpm2.New2B(tpm2.RSAEKTemplate)),
	} {
		if _, err := CheckSRKShape(public); !errors.Is(err, ErrForeignKey) {
			t.Errorf("CheckSRKShape(%s) = %v, want ErrForeignKey", name, err)
		}
	}
	if _, err := CheckSRKShape([]byte{0, 9, 1}); err == nil {
		t.Error("CheckSRKShape accepted garbage")
	}
}

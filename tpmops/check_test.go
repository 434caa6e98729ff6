package tpmops

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"strings"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/internal/swtpmtest"
)

// The checks station verify asks of a unit's TPM pass on the objects
// provisioning makes and refuse every substitute: an empty handle, another
// key at the handle, a recorded key that is not the standard template's, a
// key with the wrong attributes, a signature by another key.
func TestCheckObjects(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		refused := func(t *testing.T, err error, want string) {
			t.Helper()
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want an error saying %q", err, want)
			}
		}
		t.Run("ek", func(t *testing.T) {
			ek, _, err := e.tpm.EnsureEK(RSA2048, nil)
			if err != nil {
				t.Fatal(err)
			}
			k, err := e.tpm.CheckEK(RSA2048, ek.Public, false)
			if err != nil || k.Handle != EKHandleRSA || !bytes.Equal(k.Public, ek.Public) {
				t.Fatalf("CheckEK = %v, %v", k.Handle, err)
			}
			pub, err := PublicKey(ek.Public)
			if err != nil || !ek.Pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
				t.Fatalf("PublicKey of the recorded EK: %v", err)
			}
			other := bytes.Clone(ek.Public)
			other[len(other)-1] ^= 1
			_, err = e.tpm.CheckEK(RSA2048, other, false)
			refused(t, err, "is not the recorded EK")
			_, err = e.tpm.CheckEK(ECCP256, ek.Public, false)
			refused(t, err, "no EK persisted at 0x81010002")
			// A key of another template persisted at the EK handle and
			// recorded as the EK: the standard template does not give it.
			tmpl := tpm2.ECCEKTemplate
			tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
				X: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{1}, 32)},
				Y: tpm2.TPM2BECCParameter{Buffer: bytes.Repeat([]byte{2}, 32)},
			})
			fake := putKey(t, e.tpm, tpm2.TPMRHEndorsement, tmpl, EKHandleECC)
			_, err = e.tpm.CheckEK(ECCP256, fake.Public, false)
			refused(t, err, "not the standard ecc-p256 EK of this TPM")
		})
		t.Run("srk", func(t *testing.T) {
			srk, _, err := e.tpm.EnsureSRK(RSA2048, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.tpm.CheckSRK(SRKHandleRSA, srk.Name, srk.Public); err != nil {
				t.Fatal(err)
			}
			if _, _, err := e.tpm.CheckSRK(SRKHandleRSA, srk.Name, nil); err != nil {
				t.Fatalf("without a recorded public area: %v", err)
			}
			_, _, err = e.tpm.CheckSRK(SRKHandleRSA, bytes.Repeat([]byte{0}, 34), nil)
			refused(t, err, "is not the recorded SRK")
			_, _, err = e.tpm.CheckSRK(SRKHandleECC, srk.Name, nil)
			refused(t, err, "no SRK persisted at 0x81000002")
			// An unrestricted decryption key at the SRK handle, recorded.
			tmpl := tpm2.ECCSRKTemplate
			tmpl.ObjectAttributes.Restricted = false
			tmpl.Parameters = tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   tpm2.TPMECCNistP256,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			})
			weak := putKey(t, e.tpm, tpm2.TPMRHOwner, tmpl, SRKHandleECC)
			_, _, err = e.tpm.CheckSRK(SRKHandleECC, weak.Name, weak.Public)
			refused(t, err, "not of a standard SRK template")
		})
		t.Run("device-key", func(t *testing.T) {
			// As provisioning makes it: under the SRK, persisted.
			srk, pub, _, dk := persistDeviceKey(t, e.tpm, RSA2048)
			k, err := e.tpm.CheckDeviceKey(DefaultDeviceKeyHandle, pub)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.tpm.ProveKey(k, dk.Pub.(*ecdsa.PublicKey)); err != nil {
				t.Fatalf("ProveKey with its own key: %v", err)
			}
			pub2, _, err := e.tpm.CreateDeviceKey(srk)
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.tpm.CheckDeviceKey(DefaultDeviceKeyHandle, pub2)
			refused(t, err, "is not the recorded device key")
			_, err = e.tpm.CheckDeviceKey(DefaultDeviceKeyHandle+1, pub)
			refused(t, err, "no device key at 0x81000011")
			otherPub, err := PublicKey(pub2)
			if err != nil {
				t.Fatal(err)
			}
			err = e.tpm.ProveKey(k, otherPub.(*ecdsa.PublicKey))
			refused(t, err, "does not verify under the certificate's key")
			// A key that also decrypts, recorded as the device key.
			tmpl := DeviceKeyTemplate
			tmpl.ObjectAttributes.Decrypt = true
			both := putKey(t, e.tpm, tpm2.TPMRHOwner, tmpl, DefaultDeviceKeyHandle+2)
			_, err = e.tpm.CheckDeviceKey(DefaultDeviceKeyHandle+2, both.Public)
			refused(t, err, "not a sign-only key")
		})
	})
}

// AttrBits is the TPM's encoding: the SRK template's well-known word, and
// an NV index's.
func TestAttrBits(t *testing.T) {
	if got := AttrBits(tpm2.RSASRKTemplate.ObjectAttributes); got != 0x00030472 {
		t.Errorf("SRK template attributes 0x%08x, want 0x00030472", got)
	}
	nv := tpm2.TPMANV{OwnerWrite: true, OwnerRead: true, AuthRead: true, NoDA: true, WriteDefine: true, NT: tpm2.TPMNTOrdinary}
	if got := AttrBits(nv); got != 0x02062002 {
		t.Errorf("NV attributes 0x%08x, want 0x02062002", got)
	}
}

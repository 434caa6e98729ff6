package credbundle_test

import (
	"bytes"
	"testing"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
	"github.com/factory-id/station/tpmops"
)

// The sealed_key field takes what TPM2_Create returns for a sealed data
// object under the SRK (TPM2B_PUBLIC ‖ TPM2B_PRIVATE), and the unit gets its
// key back with Load + Unseal: checked on the simulator.
func TestSealedKeyRoundTrip(t *testing.T) {
	tp, err := tpmops.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	tr := tp.Transport()
	srk, err := tpm2.CreatePrimary{PrimaryHandle: tpm2.TPMRHOwner, InPublic: tpm2.New2B(tpm2.ECCSRKTemplate)}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: srk.ObjectHandle}.Execute(tr)
	parent := tpm2.AuthHandle{Handle: srk.ObjectHandle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)}
	deviceKey := bytes.Repeat([]byte{0xa5}, 32)
	cr, err := tpm2.Create{
		ParentHandle: parent,
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: deviceKey}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type: tpm2.TPMAlgKeyedHash, NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{FixedTPM: true, FixedParent: true, UserWithAuth: true, NoDA: true},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
				Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
			}),
		}),
	}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	blob := append(tpm2.Marshal(cr.OutPublic), tpm2.Marshal(cr.OutPrivate)...)
	if bytes.Contains(blob, deviceKey) {
		t.Fatal("the sealed blob holds the key in clear")
	}

	f := bundletest.NewFixture(t)
	b := f.PKI.BaseBundle(t, "SN-0500")
	b.Attestation, b.DeviceKeyHandle, b.SealedKey = credbundle.AttestSymmetricKey, 0, blob
	img, err := bundletest.Signed(t, b, f.Key).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	got, err := credbundle.VerifyBundle(img, f.Key.Public())
	if err != nil {
		t.Fatal(err)
	}

	// The device side: split, load under the SRK, unseal.
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](got.SealedKey)
	if err != nil {
		t.Fatal(err)
	}
	n := len(tpm2.Marshal(pub))
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](got.SealedKey[n:])
	if err != nil {
		t.Fatal(err)
	}
	ld, err := tpm2.Load{ParentHandle: parent, InPrivate: *priv, InPublic: *pub}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	defer tpm2.FlushContext{FlushHandle: ld.ObjectHandle}.Execute(tr)
	us, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: ld.ObjectHandle, Name: ld.Name, Auth: tpm2.PasswordAuth(nil)}}.Execute(tr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(us.OutData.Buffer, deviceKey) {
		t.Fatal("unsealed another key")
	}
}

package tpmops

import (
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// sealTemplate is a keyed-hash data object that can only be unsealed inside
// the TPM it was made in (fixedTPM|fixedParent) by whoever can load it under
// the SRK; not DA-protected, as the device's DPS client unseals it at boot.
var sealTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgKeyedHash,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:     true,
		FixedParent:  true,
		UserWithAuth: true,
		NoDA:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
		Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
	}),
}

// Seal wraps data (at most 128 bytes) under the SRK as a sealed data object
// and returns its TPM2B_PUBLIC followed by its TPM2B_PRIVATE: only this TPM
// can unseal it. The data travels to the TPM encrypted (a session salted to
// the SRK encrypts TPM2_Create's sensitive parameter). Nothing stays loaded.
func (t *TPM) Seal(srk Key, data []byte) ([]byte, error) {
	enc, err := encryptIn(srk)
	if err != nil {
		return nil, err
	}
	return t.seal(srk, data, enc)
}

// seal is Seal with enc, the session that encrypts the data.
func (t *TPM) seal(srk Key, data []byte, enc tpm2.Session) ([]byte, error) {
	if len(data) == 0 || len(data) > 128 {
		return nil, fmt.Errorf("sealing %d bytes: want 1 to 128", len(data))
	}
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: tpm2.TPM2BName{Buffer: srk.Name}, Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: data}),
		}},
		InPublic: tpm2.New2B(sealTemplate),
	}.Execute(t.tr, enc)
	if err != nil {
		return nil, fmt.Errorf("sealing under %#x: %w", uint32(srk.Handle), classify(err))
	}
	return append(tpm2.Marshal(rsp.OutPublic), tpm2.Marshal(rsp.OutPrivate)...), nil
}

// Unseal loads a blob made by Seal under the SRK and returns the data.
func (t *TPM) Unseal(srk Key, sealed []byte) ([]byte, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](sealed)
	if err != nil {
		return nil, fmt.Errorf("sealed blob public: %w", err)
	}
	n := len(tpm2.Marshal(pub))
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](sealed[n:])
	if err != nil {
		return nil, fmt.Errorf("sealed blob private: %w", err)
	}
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: tpm2.TPM2BName{Buffer: srk.Name}, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(t.tr)
	if err != nil {
		return nil, fmt.Errorf("loading the sealed blob: %w", classify(err))
	}
	defer t.flush(rsp.ObjectHandle)
	out, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}}.Execute(t.tr)
	if err != nil {
		return nil, fmt.Errorf("unsealing: %w", classify(err))
	}
	return out.OutData.Buffer, nil
}

package tpmops

import (
	"crypto/rand"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MakeCredential does in software what DPS does to a TPM device: it seals
// secret (at most 32 bytes) so that only the TPM holding ek can recover it,
// and only for the object whose Name is name (the SRK's, for DPS).
// It returns the TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET contents.
func MakeCredential(ek Key, name, secret []byte) (credBlob, encSecret []byte, err error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](ek.Public)
	if err != nil {
		return nil, nil, fmt.Errorf("EK public: %w", err)
	}
	c, err := pub.Contents()
	if err != nil {
		return nil, nil, fmt.Errorf("EK public: %w", err)
	}
	key, err := tpm2.ImportEncapsulationKey(c)
	if err != nil {
		return nil, nil, fmt.Errorf("EK public: %w", err)
	}
	return tpm2.CreateCredential(rand.Reader, key, name, secret)
}

// ActivateCredential recovers a credential made by MakeCredential (or by
// DPS): TPM2_ActivateCredential with activated (its empty auth) as the
// object the credential names, and ek authorised by PolicySecret on the
// endorsement hierarchy with empty auth, as the DPS SDKs do. The one-shot
// policy session is gone when the call returns.
func (t *TPM) ActivateCredential(ek, activated Key, credBlob, encSecret []byte) ([]byte, error) {
	policy := func(tp transport.TPM, h tpm2.TPMISHPolicy, nonceTPM tpm2.TPM2BNonce) error {
		_, err := tpm2.PolicySecret{
			AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
			PolicySession: h,
			NonceTPM:      nonceTPM,
		}.Execute(tp)
		return err
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: activated.Handle, Name: tpm2.TPM2BName{Buffer: activated.Name}, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.Handle, Name: tpm2.TPM2BName{Buffer: ek.Name}, Auth: tpm2.Policy(tpm2.TPMAlgSHA256, 16, policy)},
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: credBlob},
		Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encSecret},
	}.Execute(t.tr)
	if err != nil {
		return nil, fmt.Errorf("activating a credential with the EK %#x for %#x: %w", uint32(ek.Handle), uint32(activated.Handle), classify(err))
	}
	return rsp.CertInfo.Buffer, nil
}

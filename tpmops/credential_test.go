package tpmops

import (
	"bytes"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
)

// The DPS challenge, locally: a credential bound to the EK and the SRK's
// Name is recovered by this TPM only; one made for another Name is refused.
func TestCredentialActivation(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		for _, alg := range []Alg{RSA2048, ECCP256} {
			t.Run(string(alg), func(t *testing.T) {
				ek, _, err := e.tpm.EnsureEK(alg, nil)
				if err != nil {
					t.Fatal(err)
				}
				srk, _, err := e.tpm.EnsureSRK(RSA2048, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				secret := []byte("0123456789abcdef")
				blob, enc, err := MakeCredential(ek, srk.Name, secret)
				if err != nil {
					t.Fatal(err)
				}
				got, err := e.tpm.ActivateCredential(ek, srk, blob, enc)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, secret) {
					t.Fatal("activated credential differs")
				}
				other := bytes.Clone(srk.Name)
				other[len(other)-1] ^= 1
				blob, enc, err = MakeCredential(ek, other, secret)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.tpm.ActivateCredential(ek, srk, blob, enc); err == nil {
					t.Fatal("a credential for another Name was activated")
				}
				blob, enc, _ = MakeCredential(ek, srk.Name, secret)
				blob[len(blob)-1] ^= 1
				if _, err := e.tpm.ActivateCredential(ek, srk, blob, enc); err == nil {
					t.Fatal("a tampered credential was activated")
				}
			})
		}
	})
}

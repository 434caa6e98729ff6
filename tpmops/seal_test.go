package tpmops

import (
	"bytes"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
)

func TestSealUnseal(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		srk, _, err := e.tpm.EnsureSRK(RSA2048, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		secret := bytes.Repeat([]byte{7, 1, 9}, 11)
		bus := &spy{next: e.tpm.tr.inner}
		e.tpm.tr.inner = bus
		blob, err := e.tpm.Seal(srk, secret)
		e.tpm.tr.inner = bus.next
		if err != nil {
			t.Fatal(err)
		}
		if bus.sawBytes(secret) {
			t.Fatal("the secret crossed the bus in clear")
		}
		if bytes.Contains(blob, secret) {
			t.Fatal("the sealed blob holds the secret in clear")
		}
		got, err := e.tpm.Unseal(srk, blob)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("Unseal = %x, %v", got, err)
		}
		// A flipped bit in the private part is refused by the TPM's integrity check.
		bad := bytes.Clone(blob)
		bad[len(bad)-5] ^= 1
		if _, err := e.tpm.Unseal(srk, bad); err == nil {
			t.Fatal("a tampered sealed blob unsealed")
		}
		// Under another parent it does not load.
		other, _, err := e.tpm.EnsureSRK(ECCP256, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.tpm.Unseal(other, blob); err == nil {
			t.Fatal("the blob unsealed under another parent")
		}
		for _, n := range []int{0, 129} {
			if _, err := e.tpm.Seal(srk, make([]byte, n)); err == nil {
				t.Errorf("sealing %d bytes was accepted", n)
			}
		}
	})
}

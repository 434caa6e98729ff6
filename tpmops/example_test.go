package tpmops_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"log"

	"github.com/factory-id/station/tpmops"
)

// The TPM steps of provisioning one unit, on the in-process simulator.
func Example() {
	tpm, err := tpmops.Open("sim:42")
	if err != nil {
		log.Fatal(err)
	}
	defer tpm.Close()

	ek, persisted, err := tpm.EnsureEK(tpmops.RSA2048, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("EK at %#x (persisted now: %v), TPM2B_PUBLIC %d bytes\n", uint32(ek.Handle), persisted, len(ek.Public))

	srk, _, err := tpm.EnsureSRK(tpmops.RSA2048, nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	pub, priv, err := tpm.CreateDeviceKey(srk)
	if err != nil {
		log.Fatal(err)
	}
	dev, err := tpm.PersistDeviceKey(srk, pub, priv, tpmops.DefaultDeviceKeyHandle, nil)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := tpm.Signer(dev)
	if err != nil {
		log.Fatal(err)
	}
	digest := sha256.Sum256([]byte("challenge"))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("device key signature verifies:", ecdsa.VerifyASN1(dev.Pub.(*ecdsa.PublicKey), digest[:], sig))

	// Take ownership: lockout auth set, the new value encrypted on the bus.
	if err := tpm.ChangeAuth(tpmops.Lockout, nil, []byte("per-unit random value"), ek); err != nil {
		log.Fatal(err)
	}
	p, err := tpm.Permanent()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("lockoutAuthSet=%v ownerAuthSet=%v endorsementAuthSet=%v\n", p.LockoutAuthSet, p.OwnerAuthSet, p.EndorsementAuthSet)

	left, err := tpm.Transients()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("transient handles left:", len(left))
	// Output:
	// EK at 0x81010001 (persisted now: true), TPM2B_PUBLIC 316 bytes
	// device key signature verifies: true
	// lockoutAuthSet=true ownerAuthSet=false endorsementAuthSet=false
	// transient handles left: 0
}

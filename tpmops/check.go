package tpmops

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// The checks station verify asks of a provisioned unit's TPM, next to the
// templates they check (keys.go): the EK, the SRK and the device key are
// the recorded ones, at their handles, with the attributes their templates
// give. Each returns the key found, or an error that says what is wrong in
// the words verify reports.

// Handle is a TPM handle (TPM_HANDLE), for callers that name handles
// without depending on go-tpm.
type Handle = tpm2.TPMHandle

// AttrBits is the 32-bit word of object (TPMA_OBJECT) or NV (TPMA_NV)
// attributes as the TPM encodes it.
func AttrBits(a tpm2.Marshallable) uint32 {
	b := tpm2.Marshal(a)
	if len(b) != 4 {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

// PublicKey decodes a TPM2B_PUBLIC (as a unit record keeps its EK) into
// its Go public key.
func PublicKey(tpm2b []byte) (crypto.PublicKey, error) {
	area, err := parsePublic2B(tpm2b, "public area")
	if err != nil {
		return nil, err
	}
	return tpm2.Pub(*area)
}

func hexHandle(h Handle) string { return fmt.Sprintf("0x%08x", uint32(h)) }

func sum256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// CheckEK checks that the key persisted at alg's EK handle is the recorded
// one (a TPM2B_PUBLIC), of the standard EK template's shape, and the key
// that template gives on this TPM: proven by reading when certified (a
// vendor-rooted certificate certifies exactly this key, see ReadEK), else by
// re-deriving it with CreatePrimary.
func (t *TPM) CheckEK(alg Alg, recorded []byte, certified bool) (Key, error) {
	_, handle, err := EKTemplate(alg)
	if err != nil {
		return Key{}, err
	}
	k, err := t.ReadPublic(handle)
	if errors.Is(err, ErrHandleEmpty) {
		return Key{}, fmt.Errorf("no EK persisted at %s: the DPS SDKs would create a key of their own that no enrollment knows", hexHandle(handle))
	}
	if err != nil {
		return Key{}, err
	}
	if !bytes.Equal(k.Public, recorded) {
		return Key{}, fmt.Errorf("the key at %s (SHA-256 %s) is not the recorded EK (%s)", hexHandle(handle), sum256Hex(k.Public), sum256Hex(recorded))
	}
	// Its shape must be the standard template's in every field but unique.
	if _, err := t.ReadEK(alg); err != nil {
		return Key{}, fmt.Errorf("the key at %s is the recorded one but not the standard %s EK: %w", hexHandle(handle), alg, err)
	}
	if certified {
		return k, nil // the vendor's certificate for exactly this key proves the rest (ReadEK)
	}
	// The handle is occupied, so EnsureEK only compares (it persists nothing).
	if _, _, err := t.EnsureEK(alg, nil); err != nil {
		if errors.Is(err, ErrBadAuth) {
			return Key{}, fmt.Errorf("cannot re-derive the standard %s EK to compare: the endorsement hierarchy refused an empty auth", alg)
		}
		return Key{}, fmt.Errorf("the key at %s is the recorded one but not the standard %s EK of this TPM: %w", hexHandle(handle), alg, err)
	}
	return k, nil
}

// CheckSRK checks that the SRK persisted at h is the recorded one (its
// Name, and its TPM2B_PUBLIC when recorded), a restricted storage key as
// the SRK template makes it (CheckSRKShape), which the DPS SDKs need; it
// returns the template's algorithm.
func (t *TPM) CheckSRK(h Handle, recordedName, recordedPublic []byte) (Key, Alg, error) {
	k, err := t.ReadPublic(h)
	if errors.Is(err, ErrHandleEmpty) {
		return Key{}, "", fmt.Errorf("no SRK persisted at %s", hexHandle(h))
	}
	if err != nil {
		return Key{}, "", err
	}
	if !bytes.Equal(k.Name, recordedName) || (len(recordedPublic) > 0 && !bytes.Equal(k.Public, recordedPublic)) {
		return Key{}, "", fmt.Errorf("the key at %s (name %x) is not the recorded SRK (name %x)", hexHandle(h), k.Name, recordedName)
	}
	// The recorded Name says it is the key station created or proved; its
	// public area must still be the standard template's, which the DPS
	// SDKs and station's own checks (dps-attestation) expect.
	alg, err := CheckSRKShape(k.Public)
	if err != nil {
		return Key{}, "", fmt.Errorf("the SRK at %s: %w", hexHandle(h), err)
	}
	return k, alg, nil
}

// CheckDeviceKey checks that the device key persisted at h is the
// recorded one (a TPM2B_PUBLIC), cannot leave the TPM and was made in it
// (fixedTPM, fixedParent, sensitiveDataOrigin), and only signs, as
// DeviceKeyTemplate makes it.
func (t *TPM) CheckDeviceKey(h Handle, recorded []byte) (Key, error) {
	k, err := t.ReadPublic(h)
	if errors.Is(err, ErrHandleEmpty) {
		return Key{}, fmt.Errorf("no device key at %s", hexHandle(h))
	}
	if err != nil {
		return Key{}, err
	}
	if !bytes.Equal(k.Public, recorded) {
		return Key{}, fmt.Errorf("the key at %s is not the recorded device key", hexHandle(h))
	}
	area, err := parsePublic2B(k.Public, "device key public area")
	if err != nil {
		return Key{}, err
	}
	a := area.ObjectAttributes
	if !a.FixedTPM || !a.FixedParent || !a.SensitiveDataOrigin {
		return Key{}, fmt.Errorf("the device key can leave the TPM or was imported (fixedTPM %v, fixedParent %v, sensitiveDataOrigin %v)",
			a.FixedTPM, a.FixedParent, a.SensitiveDataOrigin)
	}
	if !a.SignEncrypt || a.Decrypt {
		return Key{}, errors.New("the device key is not a sign-only key")
	}
	return k, nil
}

// ProveKey has the TPM sign a fresh 32-byte challenge with k and checks the
// signature under pub (the key a certificate certifies): the TPM holds the
// private half of pub, now.
func (t *TPM) ProveKey(k Key, pub *ecdsa.PublicKey) error {
	signer, err := t.Signer(k)
	if err != nil {
		return err
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	digest := sha256.Sum256(append([]byte("station verify device-key challenge\x00"), nonce...))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("signing a fresh challenge: %w", err)
	}
	if !ecdsa.VerifyASN1(pub, digest[:], sig) {
		return errors.New("the TPM's signature of a fresh challenge does not verify under the certificate's key")
	}
	return nil
}

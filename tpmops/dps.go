package tpmops

// The Azure IoT DPS TPM attestation challenge, both halves:
//
//   - MakeDPSChallenge is the service side, in software: what DPS answers a
//     device that registers with its EK and SRK (the "authenticationKey").
//   - (*TPM).ActivateDPSKey is the device side, on the unit's TPM, in the
//     order the Azure IoT C SDK (provisioning_client/adapters/hsm_client_tpm.c,
//     insert_key_in_tpm) runs it.
//
// The authenticationKey is a concatenation of TPM-marshalled structures:
//
//	TPM2B_ID_OBJECT          credential blob: the inner wrap key, bound to the SRK's Name
//	TPM2B_ENCRYPTED_SECRET   seed of the credential, encrypted to the EK ("IDENTITY")
//	TPM2B_PRIVATE            duplicate of the HMAC key: inner wrap (AES-128-CFB with that key)
//	                         inside the outer wrap to the SRK
//	TPM2B_ENCRYPTED_SECRET   seed of the outer wrap, encrypted to the SRK ("DUPLICATE")
//	TPM2B_PUBLIC             public area of the HMAC key
//	TPM2B_DATA               (empty here; the SDK reads its size and ignores it)

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/google/go-tpm/tpm2"
)

// ErrDPSChallenge means an authenticationKey is malformed (it is outside
// input: a DPS answer).
var ErrDPSChallenge = errors.New("malformed DPS authenticationKey")

// ErrDPSActivation means the unit's TPM could not activate, import, persist
// or use the key of a DPS challenge: the unit would fail DPS TPM attestation
// in the field. The error names the step (DPSStepError).
var ErrDPSActivation = errors.New("DPS TPM attestation fails on this TPM")

// dpsInnerKeyBytes is the inner wrap key DPS sends as the credential:
// AES-128, the symmetric algorithm the SDK passes to TPM2_Import.
const dpsInnerKeyBytes = 16

// dpsSymDef is the inner wrapper's algorithm, as the SDK gives TPM2_Import
// (Aes128SymDef).
var dpsSymDef = tpm2.TPMTSymDef{
	Algorithm: tpm2.TPMAlgAES,
	KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
	Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
}

// DPSChallenge is a parsed authenticationKey.
type DPSChallenge struct {
	CredentialBlob tpm2.TPM2BIDObject
	CredentialSeed tpm2.TPM2BEncryptedSecret
	Duplicate      tpm2.TPM2BPrivate
	DuplicateSeed  tpm2.TPM2BEncryptedSecret
	KeyPublic      tpm2.TPM2BPublic
	KeyPublicArea  *tpm2.TPMTPublic
	EncryptedData  []byte
}

// ParseDPSChallenge splits an authenticationKey into its six structures the
// way the SDK unmarshals it. Every structure must be present and the bytes
// must end with the last one.
func ParseDPSChallenge(authenticationKey []byte) (*DPSChallenge, error) {
	r := bytes.NewReader(authenticationKey)
	var parts [6][]byte
	names := [6]string{"TPM2B_ID_OBJECT", "TPM2B_ENCRYPTED_SECRET (EK)", "TPM2B_PRIVATE",
		"TPM2B_ENCRYPTED_SECRET (SRK)", "TPM2B_PUBLIC", "TPM2B_DATA"}
	for i := range parts {
		var n uint16
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return nil, fmt.Errorf("%w: %s: size missing", ErrDPSChallenge, names[i])
		}
		if int(n) > r.Len() {
			return nil, fmt.Errorf("%w: %s: size %d, only %d bytes left", ErrDPSChallenge, names[i], n, r.Len())
		}
		parts[i] = make([]byte, n)
		_, _ = io.ReadFull(r, parts[i])
		if i < 5 && n == 0 {
			return nil, fmt.Errorf("%w: %s is empty", ErrDPSChallenge, names[i])
		}
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrDPSChallenge, r.Len())
	}
	pub := tpm2.BytesAs2B[tpm2.TPMTPublic](parts[4])
	area, err := pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("%w: TPM2B_PUBLIC: %w", ErrDPSChallenge, err)
	}
	if area.Type != tpm2.TPMAlgKeyedHash {
		return nil, fmt.Errorf("%w: the key sent is not a keyed-hash (HMAC) key", ErrDPSChallenge)
	}
	return &DPSChallenge{
		CredentialBlob: tpm2.TPM2BIDObject{Buffer: parts[0]},
		CredentialSeed: tpm2.TPM2BEncryptedSecret{Buffer: parts[1]},
		Duplicate:      tpm2.TPM2BPrivate{Buffer: parts[2]},
		DuplicateSeed:  tpm2.TPM2BEncryptedSecret{Buffer: parts[3]},
		KeyPublic:      pub,
		KeyPublicArea:  area,
		EncryptedData:  parts[5],
	}, nil
}

// parsePublic2B decodes TPM2B_PUBLIC bytes (2-byte size, then TPMT_PUBLIC).
func parsePublic2B(b []byte, what string) (*tpm2.TPMTPublic, error) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
		return nil, fmt.Errorf("%s is not a TPM2B_PUBLIC (size prefix does not match its %d bytes)", what, len(b))
	}
	pub := tpm2.BytesAs2B[tpm2.TPMTPublic](b[2:])
	area, err := pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("decoding %s: %w", what, err)
	}
	return area, nil
}

// dpsHMACKeyPublic is the public area of the key DPS sends: a keyed-hash
// HMAC-SHA256 key, usable with an empty password (the SDK signs with a null
// password session), not fixedTPM/fixedParent (it is a duplicate), not
// restricted (TPM2_HMAC refuses restricted keys), noDA.
func dpsHMACKeyPublic(unique []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			UserWithAuth: true,
			NoDA:         true,
			SignEncrypt:  true,
		},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{
				Scheme: tpm2.TPMAlgHMAC,
				Details: tpm2.NewTPMUSchemeKeyedHash(tpm2.TPMAlgHMAC,
					&tpm2.TPMSSchemeHMAC{HashAlg: tpm2.TPMAlgSHA256}),
			},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{Buffer: unique}),
	}
}

// MakeDPSChallenge builds, in software, the authenticationKey DPS sends to a
// device that registers with the given EK and SRK (TPM2B_PUBLIC bytes): a
// fresh AES-128 inner wrap key as a credential for the SRK's Name, encrypted
// to the EK; and hmacKey (16 to 64 bytes) as an HMAC-SHA256 keyed-hash
// object duplicated to the SRK with that inner wrap. Only the TPM holding
// that EK and that SRK can import the key.
func MakeDPSChallenge(ekPublic, srkPublic, hmacKey []byte) ([]byte, error) {
	return makeDPSChallenge(rand.Reader, ekPublic, srkPublic, hmacKey)
}

func makeDPSChallenge(rnd io.Reader, ekPublic, srkPublic, hmacKey []byte) ([]byte, error) {
	if len(hmacKey) < 16 || len(hmacKey) > 64 {
		return nil, fmt.Errorf("DPS HMAC key must be 16 to 64 bytes, not %d", len(hmacKey))
	}
	ek, err := parsePublic2B(ekPublic, "EK public")
	if err != nil {
		return nil, err
	}
	srk, err := parsePublic2B(srkPublic, "SRK public")
	if err != nil {
		return nil, err
	}
	srkName, err := tpm2.ObjectName(srk)
	if err != nil {
		return nil, fmt.Errorf("SRK name: %w", err)
	}
	ekKEM, err := tpm2.ImportEncapsulationKey(ek)
	if err != nil {
		return nil, fmt.Errorf("EK as encapsulation key: %w", err)
	}
	srkKEM, err := tpm2.ImportEncapsulationKey(srk)
	if err != nil {
		return nil, fmt.Errorf("SRK as encapsulation key: %w", err)
	}

	// The credential: the inner wrap key, for the SRK's Name, to the EK.
	innerKey := make([]byte, dpsInnerKeyBytes)
	if _, err := io.ReadFull(rnd, innerKey); err != nil {
		return nil, err
	}
	idObject, credSeed, err := tpm2.CreateCredential(rnd, ekKEM, srkName.Buffer, innerKey)
	if err != nil {
		return nil, fmt.Errorf("making the credential: %w", err)
	}

	// The HMAC key object. Unique of a keyed-hash object is
	// H_nameAlg(seedValue || key) (Part 1, "Public Area Creation").
	obfuscate := make([]byte, 32)
	if _, err := io.ReadFull(rnd, obfuscate); err != nil {
		return nil, err
	}
	h := tpm2.TPMAlgSHA256
	hh, _ := h.Hash()
	uh := hh.New()
	uh.Write(obfuscate)
	uh.Write(hmacKey)
	pub := dpsHMACKeyPublic(uh.Sum(nil))
	objName, err := tpm2.ObjectName(&pub)
	if err != nil {
		return nil, err
	}
	sens := tpm2.TPMTSensitive{
		SensitiveType: tpm2.TPMAlgKeyedHash,
		SeedValue:     tpm2.TPM2BDigest{Buffer: obfuscate},
		Sensitive: tpm2.NewTPMUSensitiveComposite(tpm2.TPMAlgKeyedHash,
			&tpm2.TPM2BSensitiveData{Buffer: hmacKey}),
	}
	sens2B := tpm2.Marshal(tpm2.New2B(sens))

	// Inner wrapper (Part 1, "Inner Duplication Wrapper"):
	// encSensitive = CFB_innerKey(IV=0, TPM2B(H_nameAlg(sensitive || name)) || sensitive).
	ih := hh.New()
	ih.Write(sens2B)
	ih.Write(objName.Buffer)
	inner := append(tpm2.Marshal(tpm2.TPM2BDigest{Buffer: ih.Sum(nil)}), sens2B...)
	if err := cfbEncrypt(innerKey, inner); err != nil {
		return nil, err
	}

	// Outer wrapper to the SRK (Part 1, "Outer Duplication Wrapper"): the
	// seed goes to the SRK with the label "DUPLICATE"; the symmetric key and
	// HMAC key derive from it with the SRK's nameAlg.
	seed, dupSeed, err := srkKEM.Encapsulate(rnd, "DUPLICATE")
	if err != nil {
		return nil, fmt.Errorf("encapsulating the duplication seed to the SRK: %w", err)
	}
	dupSensitive, outerHMAC, err := outerWrap(srkKEM, seed, objName.Buffer, inner)
	if err != nil {
		return nil, err
	}
	private := append(tpm2.Marshal(tpm2.TPM2BDigest{Buffer: outerHMAC}), dupSensitive...)

	var out []byte
	out = append(out, tpm2.Marshal(tpm2.TPM2BIDObject{Buffer: idObject})...)
	out = append(out, tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: credSeed})...)
	out = append(out, tpm2.Marshal(tpm2.TPM2BPrivate{Buffer: private})...)
	out = append(out, tpm2.Marshal(tpm2.TPM2BEncryptedSecret{Buffer: dupSeed})...)
	out = append(out, tpm2.Marshal(tpm2.New2B(pub))...)
	out = append(out, tpm2.Marshal(tpm2.TPM2BData{})...)
	return out, nil
}

// cfbEncrypt encrypts b in place with AES-CFB, IV zero (as TPM wrappers do).
func cfbEncrypt(key, b []byte) error {
	c, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	//lint:ignore SA1019 the TPM's wrappers are AES-CFB; there is no AEAD choice here
	cipher.NewCFBEncrypter(c, make([]byte, c.BlockSize())).XORKeyStream(b, b)
	return nil
}

// outerWrap encrypts plaintext under the parent's symmetric algorithm with
// KDFa(seed, "STORAGE", name) and MACs it with KDFa(seed, "INTEGRITY").
func outerWrap(parent tpm2.LabeledEncapsulationKey, seed, name, plaintext []byte) (enc, mac []byte, err error) {
	sym := parent.SymmetricParameters()
	if sym.Algorithm != tpm2.TPMAlgAES {
		return nil, nil, fmt.Errorf("SRK symmetric algorithm %v is not AES", sym.Algorithm)
	}
	mode, err := sym.Mode.AES()
	if err != nil {
		return nil, nil, err
	}
	if *mode != tpm2.TPMAlgCFB {
		return nil, nil, fmt.Errorf("SRK symmetric mode %v is not CFB", *mode)
	}
	bits, err := sym.KeyBits.AES()
	if err != nil {
		return nil, nil, err
	}
	hash, err := parent.NameAlg().Hash()
	if err != nil {
		return nil, nil, err
	}
	enc = bytes.Clone(plaintext)
	if err := cfbEncrypt(tpm2.KDFa(hash, seed, "STORAGE", name, nil, int(*bits)), enc); err != nil {
		return nil, nil, err
	}
	m := hmac.New(hash.New, tpm2.KDFa(hash, seed, "INTEGRITY", nil, nil, hash.Size()*8))
	m.Write(enc)
	m.Write(name)
	return enc, m.Sum(nil), nil
}

// DPSStepError says which device-side step of the DPS challenge failed.
// It wraps ErrDPSActivation and the TPM's error.
type DPSStepError struct {
	Step string // "reading EK", "activating the credential", "importing", "loading", "persisting", "HMAC", ...
	Err  error
}

func (e *DPSStepError) Error() string { return "DPS challenge: " + e.Step + ": " + e.Err.Error() }

// Unwrap returns ErrDPSActivation and the cause.
func (e *DPSStepError) Unwrap() []error { return []error{ErrDPSActivation, e.Err} }

func dpsStep(step string, err error) error {
	return &DPSStepError{Step: step, Err: classify(err)}
}

// DPSDevice says where the device side of the challenge runs.
type DPSDevice struct {
	// EK and SRK are the persistent handles the SDK uses (0x81010001,
	// 0x81000001).
	EK, SRK tpm2.TPMHandle
	// OwnerAuth is the owner hierarchy auth the device's DPS client has
	// (empty for the stock SDKs); used only to persist and to evict.
	OwnerAuth []byte
	// Persist is where the SDK persists the imported key (0x81000100) with
	// EvictControl under OwnerAuth. Zero keeps the key transient (nothing
	// is persisted: the owner auth is then not exercised).
	Persist tpm2.TPMHandle
}

// DPSKey is the imported DPS key, loaded (transient) or persisted. Remove
// undoes what ActivateDPSKey left in the TPM.
type DPSKey struct {
	// Handle is the key's handle: Persist when persisted, else transient.
	Handle tpm2.TPMHandle
	// Persisted is true when the key was made persistent at Handle by this
	// call (and Remove will evict it).
	Persisted bool
	// Public is the key's TPM2B_PUBLIC.
	Public []byte

	t         *TPM
	name      tpm2.TPM2BName
	ownerAuth []byte
}

// ActivateDPSKey runs the device side of DPS TPM attestation, as the Azure
// IoT C SDK does: a policy session with PolicySecret(endorsement, empty
// auth); ActivateCredential(activate = SRK, key = EK) gives the inner wrap
// key; Create of an AES key holding it under the SRK (the SDK keeps it to
// decrypt later DPS data; only the blobs are returned, nothing is loaded);
// Import(SRK, inner wrap key, AES-128-CFB); Load; and, when d.Persist is
// set, EvictControl(owner, d.OwnerAuth) to d.Persist. Unlike the SDK it never
// evicts what is already at d.Persist: an occupied handle gives
// ErrForeignKey and nothing is changed.
//
// Every transient object and session it creates is flushed before it
// returns, except the key when it is not persisted (Remove flushes it). On
// failure nothing is left behind. Failures of the TPM steps are
// *DPSStepError (wrapping ErrDPSActivation).
func (t *TPM) ActivateDPSKey(authenticationKey []byte, d DPSDevice) (*DPSKey, error) {
	ch, err := ParseDPSChallenge(authenticationKey)
	if err != nil {
		return nil, err
	}
	ekName, err := t.objectName(d.EK)
	if err != nil {
		return nil, dpsStep(fmt.Sprintf("reading the EK at %#x", uint32(d.EK)), err)
	}
	srkName, err := t.objectName(d.SRK)
	if err != nil {
		return nil, dpsStep(fmt.Sprintf("reading the SRK at %#x", uint32(d.SRK)), err)
	}
	if d.Persist != 0 {
		if _, err := t.objectName(d.Persist); err == nil {
			return nil, fmt.Errorf("DPS key handle %#x: %w", uint32(d.Persist), ErrForeignKey)
		} else if !errors.Is(err, ErrHandleEmpty) {
			return nil, dpsStep(fmt.Sprintf("checking %#x", uint32(d.Persist)), err)
		}
	}
	srk := tpm2.NamedHandle{Handle: d.SRK, Name: srkName}

	// ActivateCredential: SRK with a null password, EK through its policy.
	innerKey, err := t.activateCredential(ch, srk, tpm2.NamedHandle{Handle: d.EK, Name: ekName})
	if err != nil {
		return nil, err
	}

	imp, err := tpm2.Import{
		ParentHandle:  tpm2.AuthHandle{Handle: d.SRK, Name: srkName, Auth: tpm2.PasswordAuth(nil)},
		EncryptionKey: tpm2.TPM2BData{Buffer: innerKey},
		ObjectPublic:  ch.KeyPublic,
		Duplicate:     ch.Duplicate,
		InSymSeed:     ch.DuplicateSeed,
		Symmetric:     dpsSymDef,
	}.Execute(t.tr)
	if err != nil {
		return nil, dpsStep("importing the key under the SRK", err)
	}

	// The SDK also stores the inner wrap key as an AES key under the SRK.
	if _, err := (tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: d.SRK, Name: srkName, Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: innerKey}),
		}},
		InPublic: tpm2.New2B(tpm2.TPMTPublic{
			Type:    tpm2.TPMAlgSymCipher,
			NameAlg: tpm2.TPMAlgSHA256,
			ObjectAttributes: tpm2.TPMAObject{
				FixedTPM: true, FixedParent: true, UserWithAuth: true, Decrypt: true,
			},
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgSymCipher, &tpm2.TPMSSymCipherParms{
				Sym: tpm2.TPMTSymDefObject{
					Algorithm: tpm2.TPMAlgAES,
					KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(len(innerKey)*8)),
					Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
				},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgSymCipher, &tpm2.TPM2BDigest{}),
		}),
	}).Execute(t.tr); err != nil {
		return nil, dpsStep("storing the inner wrap key under the SRK", err)
	}

	ld, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: d.SRK, Name: srkName, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    imp.OutPrivate,
		InPublic:     ch.KeyPublic,
	}.Execute(t.tr)
	if err != nil {
		return nil, dpsStep("loading the imported key", err)
	}
	k := &DPSKey{Handle: ld.ObjectHandle, Public: tpm2.Marshal(ch.KeyPublic), t: t, name: ld.Name}
	if d.Persist == 0 {
		return k, nil
	}
	defer t.flush(ld.ObjectHandle)
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(d.OwnerAuth)},
		ObjectHandle:     tpm2.NamedHandle{Handle: ld.ObjectHandle, Name: ld.Name},
		PersistentHandle: d.Persist,
	}).Execute(t.tr); err != nil {
		return nil, dpsStep(fmt.Sprintf("persisting the key at %#x with EvictControl (owner auth)", uint32(d.Persist)), err)
	}
	k.Handle, k.Persisted, k.ownerAuth = d.Persist, true, bytes.Clone(d.OwnerAuth)
	return k, nil
}

// activateCredential runs ActivateCredential with an explicit policy
// session (flushed on every path: go-tpm's just-in-time policy sessions
// leak when the policy callback fails).
func (t *TPM) activateCredential(ch *DPSChallenge, srk, ek tpm2.NamedHandle) ([]byte, error) {
	sess, closeSess, err := tpm2.PolicySession(t.tr, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, dpsStep("starting the EK policy session", err)
	}
	defer func() { _ = closeSess() }()
	if _, err := (tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}).Execute(t.tr); err != nil {
		return nil, dpsStep("PolicySecret on the endorsement hierarchy (empty auth)", err)
	}
	rsp, err := tpm2.ActivateCredential{
		ActivateHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		KeyHandle:      tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: sess},
		CredentialBlob: ch.CredentialBlob,
		Secret:         ch.CredentialSeed,
	}.Execute(t.tr)
	if err != nil {
		return nil, dpsStep("activating the credential (SRK, EK)", err)
	}
	if len(rsp.CertInfo.Buffer) != dpsInnerKeyBytes {
		return nil, dpsStep("activating the credential (SRK, EK)",
			fmt.Errorf("inner wrap key is %d bytes, want %d", len(rsp.CertInfo.Buffer), dpsInnerKeyBytes))
	}
	return rsp.CertInfo.Buffer, nil
}

// HMAC computes HMAC-SHA256 of data (at most 1024 bytes, TPM2B_MAX_BUFFER)
// with the keyed-hash key at handle, authorized with an empty password as
// the SDK does.
func (t *TPM) HMAC(handle tpm2.TPMHandle, data []byte) ([]byte, error) {
	name, err := t.objectName(handle)
	if err != nil {
		return nil, fmt.Errorf("HMAC key %#x: %w", uint32(handle), err)
	}
	return t.hmac(tpm2.NamedHandle{Handle: handle, Name: name}, data)
}

func (t *TPM) hmac(k tpm2.NamedHandle, data []byte) ([]byte, error) {
	if len(data) > 1024 {
		return nil, fmt.Errorf("HMAC of %d bytes: at most 1024 in one command", len(data))
	}
	rsp, err := tpm2.Hmac{
		Handle:  tpm2.AuthHandle{Handle: k.Handle, Name: k.Name, Auth: tpm2.PasswordAuth(nil)},
		Buffer:  tpm2.TPM2BMaxBuffer{Buffer: data},
		HashAlg: tpm2.TPMAlgSHA256,
	}.Execute(t.tr)
	if err != nil {
		return nil, fmt.Errorf("HMAC with %#x: %w", uint32(k.Handle), classify(err))
	}
	return rsp.OutHMAC.Buffer, nil
}

// HMAC signs data with the imported key (HMAC-SHA256 in the TPM).
func (k *DPSKey) HMAC(data []byte) ([]byte, error) {
	sig, err := k.t.hmac(tpm2.NamedHandle{Handle: k.Handle, Name: k.name}, data)
	if err != nil {
		return nil, dpsStep("signing with the imported key", err)
	}
	return sig, nil
}

// Remove takes the key out of the TPM: evicts it from the handle this call
// persisted it at (with the same owner auth), or flushes the transient key.
// Idempotent.
func (k *DPSKey) Remove() error {
	if k == nil || k.t == nil {
		return nil
	}
	t := k.t
	k.t = nil
	if !k.Persisted {
		t.flush(k.Handle)
		return nil
	}
	return t.evictPersistent(k.Handle, k.name.Buffer, k.ownerAuth)
}

// DPSKeyName returns the Name the key of a DPS challenge gets in the TPM
// (computed from its public area, before anything is sent to the TPM), so
// a caller can journal which key it is about to persist and later tell its
// own leftover from anyone else's key (RemoveDPSKey).
func DPSKeyName(authenticationKey []byte) ([]byte, error) {
	ch, err := ParseDPSChallenge(authenticationKey)
	if err != nil {
		return nil, err
	}
	name, err := tpm2.ObjectName(ch.KeyPublicArea)
	if err != nil {
		return nil, fmt.Errorf("%w: key name: %w", ErrDPSChallenge, err)
	}
	return name.Buffer, nil
}

// RemoveDPSKey evicts a DPS challenge key that an earlier run persisted at
// handle and did not remove (it was killed): only when the key there has
// exactly the Name the caller journaled before persisting it (DPSKeyName),
// which no other key can have. It reports whether it evicted; an empty
// handle is (false, nil); a different key is ErrForeignKey and stays.
func (t *TPM) RemoveDPSKey(handle tpm2.TPMHandle, name, ownerAuth []byte) (bool, error) {
	if len(name) == 0 {
		return false, errors.New("removing a DPS key: no name to match")
	}
	err := t.evictPersistent(handle, name, ownerAuth)
	if errors.Is(err, ErrHandleEmpty) {
		return false, nil
	}
	return err == nil, err
}

// evictPersistent evicts the persistent object at handle (owner auth) if
// it is still the object named want. Only for DPS keys this station
// persisted itself (DPSKey.Remove, RemoveDPSKey): this package never evicts
// keys it did not make, and a different key found at the handle is left
// alone.
func (t *TPM) evictPersistent(handle tpm2.TPMHandle, want, ownerAuth []byte) error {
	if uint32(handle)>>24 != uint32(tpm2.TPMHTPersistent) {
		return fmt.Errorf("%#x is not a persistent handle", uint32(handle))
	}
	name, err := t.objectName(handle)
	if err != nil {
		return fmt.Errorf("evicting %#x: %w", uint32(handle), err)
	}
	if !bytes.Equal(name.Buffer, want) {
		return fmt.Errorf("evicting %#x: %w (not the DPS key station persisted there)", uint32(handle), ErrForeignKey)
	}
	if _, err := (tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(ownerAuth)},
		ObjectHandle:     tpm2.NamedHandle{Handle: handle, Name: name},
		PersistentHandle: handle,
	}).Execute(t.tr); err != nil {
		return fmt.Errorf("evicting %#x: %w", uint32(handle), classify(err))
	}
	return nil
}

// DPSSign runs the whole device side once: ActivateDPSKey, HMAC of data
// with the imported key, and Remove, whatever happens. This is what the
// field does at registration (activate, persist, sign the SAS
// string-to-sign), with the TPM left as it was.
func (t *TPM) DPSSign(authenticationKey []byte, d DPSDevice, data []byte) (sig []byte, err error) {
	k, err := t.ActivateDPSKey(authenticationKey, d)
	if err != nil {
		return nil, err
	}
	defer func() {
		if rerr := k.Remove(); rerr != nil && err == nil {
			err = fmt.Errorf("removing the DPS key: %w", rerr)
		}
	}()
	return k.HMAC(data)
}

// ObjectName reads the Name of the object at h, whatever its type (a
// keyed-hash key included, which ReadPublic cannot turn into a public key);
// an empty handle wraps ErrHandleEmpty.
func (t *TPM) ObjectName(h tpm2.TPMHandle) ([]byte, error) {
	n, err := t.objectName(h)
	return n.Buffer, err
}

// objectName reads an object's Name; an empty handle wraps ErrHandleEmpty.
func (t *TPM) objectName(h tpm2.TPMHandle) (tpm2.TPM2BName, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: h}.Execute(t.tr)
	if err != nil {
		if isHandleErr(err) {
			return tpm2.TPM2BName{}, fmt.Errorf("%#x: %w", uint32(h), ErrHandleEmpty)
		}
		return tpm2.TPM2BName{}, classify(err)
	}
	return rsp.Name, nil
}

package tpmops

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/google/go-tpm/tpm2"
)

// Key is a key in the TPM.
type Key struct {
	Handle tpm2.TPMHandle
	// Public is the TPM2B_PUBLIC: 2-byte big-endian size, then TPMT_PUBLIC
	// (what DPS registers as endorsementKey / storageRootKey).
	Public []byte
	// Name is the TPM2B_NAME contents (nameAlg, then digest).
	Name []byte
	// Pub is the Go public key (*rsa.PublicKey or *ecdsa.PublicKey).
	Pub crypto.PublicKey
}

// Standard persistent handles (TCG Provisioning Guidance).
const (
	EKHandleRSA tpm2.TPMHandle = 0x81010001
	EKHandleECC tpm2.TPMHandle = 0x81010002
	// EKHandleECCP384 is where swtpm_setup persists its ECC P-384 EK (the
	// Provisioning Guidance reserves 0x81010000-0x810100FF for EKs but
	// names no handle for this one).
	EKHandleECCP384 tpm2.TPMHandle = 0x81010016
	SRKHandleRSA    tpm2.TPMHandle = 0x81000001
	SRKHandleECC    tpm2.TPMHandle = 0x81000002
	// DPSKeyHandle is where the Azure DPS SDKs persist the key DPS sends
	// during TPM attestation: this package never persists anything there.
	DPSKeyHandle tpm2.TPMHandle = 0x81000100
	// DefaultDeviceKeyHandle is the default handle of the device key (tpm.device_key_handle).
	DefaultDeviceKeyHandle tpm2.TPMHandle = 0x81000010
)

// EKTemplate returns the TCG EK Credential Profile template for alg: L-1
// (RSA-2048) and L-2 (ECC P-256) of the low range, unique zero-filled; H-3
// (ECC P-384) of the high range, whose certificate is at 0x01C00016.
func EKTemplate(alg Alg) (tpm2.TPMTPublic, tpm2.TPMHandle, error) {
	switch alg {
	case RSA2048:
		return tpm2.RSAEKTemplate, EKHandleRSA, nil
	case ECCP256:
		return tpm2.ECCEKTemplate, EKHandleECC, nil
	case ECCP384:
		return eccP384EKTemplate, EKHandleECCP384, nil
	}
	return tpm2.TPMTPublic{}, 0, errUnknownAlg(alg)
}

// eccP384EKTemplate is template H-3 of the TCG EK Credential Profile
// (section B.4.4.3): SHA-384 name, fixedTPM|fixedParent|
// sensitiveDataOrigin|userWithAuth|adminWithPolicy|restricted|decrypt,
// policy B for SHA-384, AES-256-CFB, NIST P-384, empty unique. Checked
// against the key swtpm's P-384 EK certificate certifies (TestEKP384Swtpm).
var eccP384EKTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA384,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		AdminWithPolicy:     true,
		Restricted:          true,
		Decrypt:             true,
	},
	AuthPolicy: tpm2.TPM2BDigest{Buffer: []byte{ // PolicyB, SHA-384
		0xB2, 0x6E, 0x7D, 0x28, 0xD1, 0x1A, 0x50, 0xBC, 0x53, 0xD8, 0x82, 0xBC,
		0xF5, 0xFD, 0x3A, 0x1A, 0x07, 0x41, 0x48, 0xBB, 0x35, 0xD3, 0xB4, 0xE4,
		0xCB, 0x1C, 0x0A, 0xD9, 0xBD, 0xE4, 0x19, 0xCA, 0xCB, 0x47, 0xBA, 0x09,
		0x69, 0x96, 0x46, 0x15, 0x0F, 0x9F, 0xC0, 0x00, 0xF3, 0xF8, 0x0E, 0x12,
	}},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{
			Algorithm: tpm2.TPMAlgAES,
			KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(256)),
			Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
		},
		Scheme:  tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		CurveID: tpm2.TPMECCNistP384,
		KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// SRKTemplate returns the TCG SRK template the DPS SDKs also use (RSA-2048:
// fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|noDA|restricted|
// decrypt = 0x00030472, AES-128-CFB, unique zero-filled; ECC P-256 likewise).
func SRKTemplate(alg Alg) (tpm2.TPMTPublic, tpm2.TPMHandle, error) {
	switch alg {
	case RSA2048:
		return tpm2.RSASRKTemplate, SRKHandleRSA, nil
	case ECCP256:
		return tpm2.ECCSRKTemplate, SRKHandleECC, nil
	}
	return tpm2.TPMTPublic{}, 0, errUnknownAlg(alg)
}

// DeviceKeyTemplate is the device identity key: ECC P-256, fixedTPM|
// fixedParent|sensitiveDataOrigin|userWithAuth|sign, no decrypt; the
// signature scheme is left NULL so the caller picks the hash per signature
// (ECDSA with SHA-256/384/512).
var DeviceKeyTemplate = tpm2.TPMTPublic{
	Type:    tpm2.TPMAlgECC,
	NameAlg: tpm2.TPMAlgSHA256,
	ObjectAttributes: tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		SignEncrypt:         true,
	},
	Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
		Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
		Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
		CurveID:   tpm2.TPMECCNistP256,
		KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
	}),
	Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
}

// sameShape reports whether the public area was made from tmpl: every field
// equal (type, name algorithm, attributes, auth policy, parameters) but the
// unique one, which holds the key itself.
func sameShape(area *tpm2.TPMTPublic, tmpl tpm2.TPMTPublic) bool {
	if area == nil || area.Type != tmpl.Type {
		return false
	}
	a := *area
	a.Unique = tmpl.Unique
	return bytes.Equal(tpm2.Marshal(a), tpm2.Marshal(tmpl))
}

// publicArea decodes the TPMT_PUBLIC of a TPM2B_PUBLIC.
func publicArea(tpm2b []byte) (*tpm2.TPMTPublic, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](tpm2b)
	if err != nil {
		return nil, err
	}
	return pub.Contents()
}

func keyFrom(h tpm2.TPMHandle, pub tpm2.TPM2BPublic, name tpm2.TPM2BName) (Key, error) {
	contents, err := pub.Contents()
	if err != nil {
		return Key{}, fmt.Errorf("decoding public area of %#x: %w", uint32(h), err)
	}
	gpub, err := tpm2.Pub(*contents)
	if err != nil {
		return Key{}, fmt.Errorf("public key of %#x: %w", uint32(h), err)
	}
	return Key{Handle: h, Public: tpm2.Marshal(pub), Name: bytes.Clone(name.Buffer), Pub: gpub}, nil
}

// ReadPublic reads the public area of a loaded or persistent object; an
// empty handle wraps ErrHandleEmpty.
func (t *TPM) ReadPublic(handle tpm2.TPMHandle) (Key, error) {
	rsp, err := t.readPublic(handle)
	if err != nil {
		return Key{}, err
	}
	return keyFrom(handle, rsp.OutPublic, rsp.Name)
}

// readPublic runs TPM2_ReadPublic; an empty handle wraps ErrHandleEmpty.
func (t *TPM) readPublic(handle tpm2.TPMHandle) (*tpm2.ReadPublicResponse, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: handle}.Execute(t.tr)
	if err != nil {
		if isHandleErr(err) {
			return nil, fmt.Errorf("reading public of %#x: %w", uint32(handle), ErrHandleEmpty)
		}
		return nil, fmt.Errorf("reading public of %#x: %w", uint32(handle), classify(err))
	}
	return rsp, nil
}

// createPrimary runs CreatePrimary and returns the transient key; the
// caller must flush it (t.flush).
func (t *TPM) createPrimary(hierarchy tpm2.TPMHandle, auth []byte, tmpl tpm2.TPMTPublic) (Key, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: hierarchy, Auth: tpm2.PasswordAuth(auth)},
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t.tr)
	if err != nil {
		return Key{}, classify(err)
	}
	k, err := keyFrom(rsp.ObjectHandle, rsp.OutPublic, rsp.Name)
	if err != nil {
		t.flush(rsp.ObjectHandle)
		return Key{}, err
	}
	return k, nil
}

// flush flushes a transient object or session. Errors are ignored: flush
// runs on cleanup paths, and Transients() reports anything left.
func (t *TPM) flush(h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t.tr)
}

// persist makes the transient key k persistent at handle (owner auth).
func (t *TPM) persist(k Key, handle tpm2.TPMHandle, ownerAuth []byte) error {
	_, err := tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(ownerAuth)},
		ObjectHandle:     tpm2.NamedHandle{Handle: k.Handle, Name: tpm2.TPM2BName{Buffer: k.Name}},
		PersistentHandle: handle,
	}.Execute(t.tr)
	if err != nil {
		return fmt.Errorf("persisting at %#x: %w", uint32(handle), classify(err))
	}
	return nil
}

// persisted returns k as seen at its persistent handle.
func persistedAs(k Key, handle tpm2.TPMHandle) Key {
	k.Handle = handle
	return k
}

// ReadEK reads the key persisted at alg's standard EK handle (0x81010001
// RSA, 0x81010002 ECC P-256, 0x81010016 ECC P-384) and checks, without
// creating anything, that its public area is the standard EK template's in
// every field but unique: type, name algorithm, attributes, auth policy
// (policy A/B) and parameters. An empty handle wraps ErrHandleEmpty; a key
// of any other shape wraps ErrEKMismatch.
//
// The shape is not proof that the key is this TPM's EK: the template with
// another unique (as some SDKs create it), or created in another hierarchy,
// gives a key of the same shape. What proves it by reading is a certificate
// from the TPM's vendor for exactly this key (ek.Pub; see VerifyEKCert):
// the key at the handle is non-duplicable (fixedTPM) and a TPM cannot
// persist a public key without its private half, so this TPM holds the
// private key of a vendor-certified EK. Without such a certificate only
// EnsureEK's CreatePrimary proves it.
func (t *TPM) ReadEK(alg Alg) (Key, error) {
	tmpl, handle, err := EKTemplate(alg)
	if err != nil {
		return Key{}, err
	}
	k, err := t.ReadPublic(handle)
	if err != nil {
		return Key{}, err
	}
	area, err := publicArea(k.Public)
	if err != nil {
		return Key{}, fmt.Errorf("%s EK at %#x: %w", alg, uint32(handle), err)
	}
	if !sameShape(area, tmpl) {
		return Key{}, fmt.Errorf("%s EK at %#x: not of the standard EK template (%s): %w", alg, uint32(handle), describeShape(area), ErrEKMismatch)
	}
	return k, nil
}

// CheckSRKShape checks that an SRK's TPM2B_PUBLIC is the standard SRK
// template's (RSA-2048 or ECC P-256, TCG Provisioning Guidance) in every
// field but unique, and returns which. Like ReadEK's check it reads only:
// it says the key is a restricted, non-duplicable storage key made inside
// the TPM with the standard parameters, not that it is the primary key
// the template gives (a Name recorded when station created or proved it
// says that).
func CheckSRKShape(public []byte) (Alg, error) {
	area, err := publicArea(public)
	if err != nil {
		return "", fmt.Errorf("SRK public area: %w", err)
	}
	for _, alg := range []Alg{RSA2048, ECCP256} {
		if tmpl, _, _ := SRKTemplate(alg); sameShape(area, tmpl) {
			return alg, nil
		}
	}
	return "", fmt.Errorf("not of a standard SRK template (%s): %w", describeShape(area), ErrForeignKey)
}

// describeShape says what a public area is, for refusals.
func describeShape(area *tpm2.TPMTPublic) string {
	return fmt.Sprintf("%s, attributes 0x%x, policy of %d bytes", KeyAlgName(area), tpm2.Marshal(area.ObjectAttributes), len(area.AuthPolicy.Buffer))
}

// EnsureEK creates the standard EK for alg (CreatePrimary in the
// endorsement hierarchy with empty auth, exactly once) and makes sure it is
// persisted at the standard handle (0x81010001 RSA, 0x81010002 ECC):
// persisting it with ownerAuth when the handle is empty (persistedNow), and
// refusing with ErrEKMismatch when another key is there (never evicting it).
// The transient copy is always flushed.
func (t *TPM) EnsureEK(alg Alg, ownerAuth []byte) (ek Key, persistedNow bool, err error) {
	tmpl, handle, err := EKTemplate(alg)
	if err != nil {
		return Key{}, false, err
	}
	return t.ensurePrimary(primarySpec{what: fmt.Sprintf("%s EK", alg), hierarchy: tpm2.TPMRHEndorsement,
		tmpl: tmpl, handle: handle, foreign: ErrEKMismatch}, ownerAuth)
}

// EnsureSRK makes sure the SRK for alg is persisted at its standard handle
// (0x81000001 RSA, 0x81000002 ECC). A key already there is accepted when its
// Name equals recordedName (non-nil; no CreatePrimary then) or the key the
// standard template gives; anything else is ErrForeignKey and stays where it
// is. When the handle is empty the SRK is created (owner hierarchy,
// ownerAuth), persisted (persistedNow) and the transient flushed.
func (t *TPM) EnsureSRK(alg Alg, ownerAuth, recordedName []byte) (srk Key, persistedNow bool, err error) {
	tmpl, handle, err := SRKTemplate(alg)
	if err != nil {
		return Key{}, false, err
	}
	return t.ensurePrimary(primarySpec{what: fmt.Sprintf("%s SRK", alg), hierarchy: tpm2.TPMRHOwner, hierarchyAuth: ownerAuth,
		tmpl: tmpl, handle: handle, recordedName: recordedName, foreign: ErrForeignKey}, ownerAuth)
}

// primarySpec is a primary key and the persistent handle it belongs at.
type primarySpec struct {
	what          string // names the key in errors: "RSA2048 EK"
	hierarchy     tpm2.TPMHandle
	hierarchyAuth []byte
	tmpl          tpm2.TPMTPublic
	handle        tpm2.TPMHandle
	// recordedName, when non-nil, accepts a key at the handle with this
	// Name without a CreatePrimary.
	recordedName []byte
	// foreign is the error for another key at the handle.
	foreign error
}

// ensurePrimary makes sure the key p.tmpl gives in p.hierarchy is persisted
// at p.handle: a key already there is accepted when it is that key (or has
// p.recordedName) and refused with p.foreign otherwise (never evicted); an
// empty handle gets the key persisted with ownerAuth (persistedNow). The
// transient copy is always flushed.
func (t *TPM) ensurePrimary(p primarySpec, ownerAuth []byte) (k Key, persistedNow bool, err error) {
	existing, rerr := t.ReadPublic(p.handle)
	if rerr != nil && !errors.Is(rerr, ErrHandleEmpty) {
		return Key{}, false, rerr
	}
	if rerr == nil && p.recordedName != nil && bytes.Equal(existing.Name, p.recordedName) {
		return existing, false, nil
	}
	k, err = t.createPrimary(p.hierarchy, p.hierarchyAuth, p.tmpl)
	if err != nil {
		return Key{}, false, fmt.Errorf("creating the %s: %w", p.what, err)
	}
	defer t.flush(k.Handle)
	if rerr == nil {
		if !bytes.Equal(existing.Name, k.Name) {
			return Key{}, false, fmt.Errorf("%s at %#x: %w", p.what, uint32(p.handle), p.foreign)
		}
		return existing, false, nil
	}
	if err := t.persist(k, p.handle, ownerAuth); err != nil {
		return Key{}, false, fmt.Errorf("%s: %w", p.what, err)
	}
	return persistedAs(k, p.handle), true, nil
}

// CreateDeviceKey creates the device identity key (DeviceKeyTemplate) under
// the SRK and returns its TPM2B_PUBLIC and TPM2B_PRIVATE (wrapped by the
// SRK). Nothing stays loaded.
func (t *TPM) CreateDeviceKey(srk Key) (public, private []byte, err error) {
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: tpm2.TPM2BName{Buffer: srk.Name}, Auth: tpm2.PasswordAuth(nil)},
		InPublic:     tpm2.New2B(DeviceKeyTemplate),
	}.Execute(t.tr)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the device key under %#x: %w", uint32(srk.Handle), classify(err))
	}
	return tpm2.Marshal(rsp.OutPublic), tpm2.Marshal(rsp.OutPrivate), nil
}

// PersistDeviceKey loads the key made by CreateDeviceKey under the SRK and
// persists it at handle (owner auth), flushing the transient. If handle
// already holds exactly this key (a resumed run) it is returned as is; any
// other key there is ErrForeignKey. The standard EK/SRK handles and the
// DPS key handle (0x81000100) are refused.
func (t *TPM) PersistDeviceKey(srk Key, public, private []byte, handle tpm2.TPMHandle, ownerAuth []byte) (Key, error) {
	if handle < 0x81000000 || handle > 0x817FFFFF {
		return Key{}, fmt.Errorf("device key handle %#x is not an owner persistent handle (0x81000000-0x817fffff)", uint32(handle))
	}
	switch handle {
	case EKHandleRSA, EKHandleECC, SRKHandleRSA, SRKHandleECC, DPSKeyHandle:
		return Key{}, fmt.Errorf("device key handle %#x is reserved", uint32(handle))
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](public)
	if err != nil {
		return Key{}, fmt.Errorf("device key public: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](private)
	if err != nil {
		return Key{}, fmt.Errorf("device key private: %w", err)
	}
	contents, err := pub.Contents()
	if err != nil {
		return Key{}, fmt.Errorf("device key public: %w", err)
	}
	name, err := tpm2.ObjectName(contents)
	if err != nil {
		return Key{}, fmt.Errorf("device key name: %w", err)
	}
	existing, rerr := t.ReadPublic(handle)
	switch {
	case rerr == nil:
		if bytes.Equal(existing.Name, name.Buffer) {
			return existing, nil
		}
		return Key{}, fmt.Errorf("device key handle %#x: %w", uint32(handle), ErrForeignKey)
	case !errors.Is(rerr, ErrHandleEmpty):
		return Key{}, rerr
	}
	k, err := t.load(srk, pub, priv)
	if err != nil {
		return Key{}, err
	}
	defer t.flush(k.Handle)
	if err := t.persist(k, handle, ownerAuth); err != nil {
		return Key{}, fmt.Errorf("device key: %w", err)
	}
	return persistedAs(k, handle), nil
}

// load runs TPM2_Load under parent (empty auth) and returns the transient
// key; the caller must flush it.
func (t *TPM) load(parent Key, pub *tpm2.TPM2BPublic, priv *tpm2.TPM2BPrivate) (Key, error) {
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: parent.Handle, Name: tpm2.TPM2BName{Buffer: parent.Name}, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    *priv,
		InPublic:     *pub,
	}.Execute(t.tr)
	if err != nil {
		return Key{}, fmt.Errorf("loading the device key under %#x: %w", uint32(parent.Handle), classify(err))
	}
	k, err := keyFrom(rsp.ObjectHandle, *pub, rsp.Name)
	if err != nil {
		t.flush(rsp.ObjectHandle)
		return Key{}, err
	}
	return k, nil
}

// CheckKeyBlob loads a key made by CreateDeviceKey (its TPM2B_PUBLIC and
// TPM2B_PRIVATE) under parent and flushes it at once: what software holding
// the blob, such as a TSS2 key file, will do on the device. It returns the
// key as loaded (Name computed by the TPM; Handle 0). A blob wrapped by
// another parent, or edited, fails TPM2_Load's integrity check.
func (t *TPM) CheckKeyBlob(parent Key, public, private []byte) (Key, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](public)
	if err != nil {
		return Key{}, fmt.Errorf("key blob public: %w", err)
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](private)
	if err != nil {
		return Key{}, fmt.Errorf("key blob private: %w", err)
	}
	k, err := t.load(parent, pub, priv)
	if err != nil {
		return Key{}, err
	}
	t.flush(k.Handle)
	k.Handle = 0
	return k, nil
}

// Signer returns a crypto.Signer that signs with the persistent ECC key k
// through TPM2_Sign (empty key auth). Sign takes a digest and returns an
// ASN.1 ECDSA signature, as crypto/ecdsa does; the hash is opts.HashFunc()
// (SHA-256, SHA-384 or SHA-512).
func (t *TPM) Signer(k Key) (crypto.Signer, error) {
	if _, ok := k.Pub.(*ecdsa.PublicKey); !ok {
		return nil, fmt.Errorf("key %#x: only ECC signing keys are supported", uint32(k.Handle))
	}
	return &signer{t: t, k: k}, nil
}

type signer struct {
	t *TPM
	k Key
}

func (s *signer) Public() crypto.PublicKey { return s.k.Pub }

func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var alg tpm2.TPMIAlgHash
	switch opts.HashFunc() {
	case crypto.SHA256:
		alg = tpm2.TPMAlgSHA256
	case crypto.SHA384:
		alg = tpm2.TPMAlgSHA384
	case crypto.SHA512:
		alg = tpm2.TPMAlgSHA512
	default:
		return nil, fmt.Errorf("TPM signer: unsupported hash %v", opts.HashFunc())
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("TPM signer: digest of %d bytes for %v", len(digest), opts.HashFunc())
	}
	rsp, err := tpm2.Sign{
		KeyHandle: tpm2.AuthHandle{Handle: s.k.Handle, Name: tpm2.TPM2BName{Buffer: s.k.Name}, Auth: tpm2.PasswordAuth(nil)},
		Digest:    tpm2.TPM2BDigest{Buffer: digest},
		InScheme: tpm2.TPMTSigScheme{
			Scheme:  tpm2.TPMAlgECDSA,
			Details: tpm2.NewTPMUSigScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSchemeHash{HashAlg: alg}),
		},
		Validation: tpm2.TPMTTKHashCheck{Tag: tpm2.TPMSTHashCheck, Hierarchy: tpm2.TPMRHNull},
	}.Execute(s.t.tr)
	if err != nil {
		return nil, fmt.Errorf("TPM2_Sign with %#x: %w", uint32(s.k.Handle), classify(err))
	}
	sig, err := rsp.Signature.Signature.ECDSA()
	if err != nil {
		return nil, fmt.Errorf("TPM2_Sign with %#x: %w", uint32(s.k.Handle), err)
	}
	return asn1.Marshal(struct{ R, S *big.Int }{
		new(big.Int).SetBytes(sig.SignatureR.Buffer),
		new(big.Int).SetBytes(sig.SignatureS.Buffer),
	})
}

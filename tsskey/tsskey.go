// Package tsskey reads and writes TPM 2.0 key files in the "TSS2 PRIVATE
// KEY" format: the PEM file that OpenSSL's tpm2 provider, the tpm2-tss
// engine and tpm2-pkcs11 (tpm2_ptool link) load, so that a key created in a
// TPM by one program can be used by another.
//
// The file is the DER of the ASN.1 structure of the TPM 2.0 key file
// specification (draft-bottomley-tpm2-keys), for a loadable key:
//
//	TPMKey ::= SEQUENCE {
//	    type       OBJECT IDENTIFIER,        -- 2.23.133.10.1.3, loadable key
//	    emptyAuth  [0] EXPLICIT BOOLEAN OPTIONAL,
//	    parent     INTEGER,                  -- the parent's TPM handle
//	    pubkey     OCTET STRING,             -- TPM2B_PUBLIC
//	    privkey    OCTET STRING              -- TPM2B_PRIVATE (wrapped by the parent)
//	}
//
// The optional policy, secret, authPolicy, description and rsaParent fields
// of the specification are never written, and a file holding them is
// refused: this package reads back what it writes, strictly, and leaves the
// rest of the format to the TPM software on the device.
//
// Nothing in a key file is secret in clear: privkey is the sensitive area
// encrypted by the parent key inside the TPM, usable only by loading it under
// that parent on that TPM. The package talks to no TPM and builds with
// CGO_ENABLED=0 (it uses go-tpm's tpm2 only to decode the public area).
package tsskey

import (
	"bytes"
	"crypto"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// PEMType is the PEM block type of a key file.
const PEMType = "TSS2 PRIVATE KEY"

// OIDLoadableKey is the type of a key that TPM2_Load takes as it is.
var OIDLoadableKey = asn1.ObjectIdentifier{2, 23, 133, 10, 1, 3}

// OwnerHierarchy as a parent (TPM_RH_OWNER) means "the primary key the
// loading software derives from its standard template", not a stored handle.
const OwnerHierarchy uint32 = 0x40000001

// ErrKeyFile is wrapped by every refusal of a malformed key file.
var ErrKeyFile = errors.New("not a valid TSS2 private key file")

// Key is one TPM key file.
type Key struct {
	// EmptyAuth is true when the key's userAuth is empty: the loading
	// software uses it without asking for a password.
	EmptyAuth bool
	// Parent is the handle of the key it was created under: a persistent
	// handle (0x81xxxxxx) or OwnerHierarchy.
	Parent uint32
	// Public is the TPM2B_PUBLIC (2-byte big-endian size, then TPMT_PUBLIC).
	Public []byte
	// Private is the TPM2B_PRIVATE that TPM2_Create returned.
	Private []byte
}

// asn1Key is the DER layout. EmptyAuth false is left out (optional).
type asn1Key struct {
	Type      asn1.ObjectIdentifier
	EmptyAuth bool `asn1:"optional,explicit,tag:0"`
	Parent    int64
	Pubkey    []byte
	Privkey   []byte
}

func keyErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrKeyFile, fmt.Sprintf(format, args...))
}

// check validates the fields of k (the shapes of the TPM structures and the
// parent handle; only the parent TPM can check the private part).
func (k Key) check() error {
	if k.Parent != OwnerHierarchy && k.Parent>>24 != 0x81 {
		return keyErr("parent 0x%08x is neither a persistent handle nor the owner hierarchy", k.Parent)
	}
	if err := checkTPM2B(k.Public, "pubkey (TPM2B_PUBLIC)"); err != nil {
		return err
	}
	if err := checkTPM2B(k.Private, "privkey (TPM2B_PRIVATE)"); err != nil {
		return err
	}
	if _, err := k.TPMTPublic(); err != nil {
		return err
	}
	return nil
}

// checkTPM2B checks b is exactly one non-empty sized buffer.
func checkTPM2B(b []byte, what string) error {
	if len(b) < 2 {
		return keyErr("%s of %d bytes", what, len(b))
	}
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 || n != len(b)-2 {
		return keyErr("%s: size field %d for %d bytes", what, n, len(b)-2)
	}
	return nil
}

// TPMTPublic decodes the key's public area.
func (k Key) TPMTPublic() (*tpm2.TPMTPublic, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](k.Public)
	if err != nil {
		return nil, keyErr("pubkey: %v", err)
	}
	contents, err := pub.Contents()
	if err != nil {
		return nil, keyErr("pubkey: %v", err)
	}
	// The TPM2B's contents must be the whole TPMT_PUBLIC, nothing after it.
	if !bytes.Equal(tpm2.Marshal(tpm2.New2B(*contents)), k.Public) {
		return nil, keyErr("pubkey: trailing or non-canonical bytes in TPM2B_PUBLIC")
	}
	return contents, nil
}

// PublicKey returns the key's public key (*ecdsa.PublicKey or *rsa.PublicKey).
func (k Key) PublicKey() (crypto.PublicKey, error) {
	t, err := k.TPMTPublic()
	if err != nil {
		return nil, err
	}
	pub, err := tpm2.Pub(*t)
	if err != nil {
		return nil, keyErr("pubkey: %v", err)
	}
	return pub, nil
}

// MarshalDER returns the key file's DER.
func (k Key) MarshalDER() ([]byte, error) {
	if err := k.check(); err != nil {
		return nil, err
	}
	return asn1.Marshal(asn1Key{
		Type: OIDLoadableKey, EmptyAuth: k.EmptyAuth, Parent: int64(k.Parent),
		Pubkey: k.Public, Privkey: k.Private,
	})
}

// MarshalPEM returns the key file as PEM (a single "TSS2 PRIVATE KEY" block).
func (k Key) MarshalPEM() ([]byte, error) {
	der, err := k.MarshalDER()
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: der}), nil
}

// ParseDER decodes a key file's DER strictly: a loadable key, the fields
// above and nothing else, in canonical DER (re-encoding gives the same bytes).
func ParseDER(der []byte) (Key, error) {
	var a asn1Key
	rest, err := asn1.Unmarshal(der, &a)
	if err != nil {
		return Key{}, keyErr("%v", err)
	}
	if len(rest) != 0 {
		return Key{}, keyErr("%d bytes after the key", len(rest))
	}
	if !a.Type.Equal(OIDLoadableKey) {
		return Key{}, keyErr("type %v is not a loadable key (%v)", a.Type, OIDLoadableKey)
	}
	if a.Parent < 0 || a.Parent > 0xffffffff {
		return Key{}, keyErr("parent %d is not a TPM handle", a.Parent)
	}
	k := Key{EmptyAuth: a.EmptyAuth, Parent: uint32(a.Parent), Public: bytes.Clone(a.Pubkey), Private: bytes.Clone(a.Privkey)}
	again, err := k.MarshalDER()
	if err != nil {
		return Key{}, err
	}
	if !bytes.Equal(again, der) {
		return Key{}, keyErr("not in canonical DER")
	}
	return k, nil
}

// ParsePEM decodes a PEM key file: exactly one "TSS2 PRIVATE KEY" block, no
// headers, nothing else in the file but surrounding white space.
func ParsePEM(data []byte) (Key, error) {
	blk, rest := pem.Decode(bytes.TrimSpace(data))
	if blk == nil {
		return Key{}, keyErr("not PEM")
	}
	if blk.Type != PEMType || len(blk.Headers) != 0 {
		return Key{}, keyErr("PEM block %q, want %q", blk.Type, PEMType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return Key{}, keyErr("more than one PEM block")
	}
	return ParseDER(blk.Bytes)
}

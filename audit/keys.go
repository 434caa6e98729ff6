package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/mod/sumdb/note"
)

// ErrKey means a key file is missing, unreadable or of a kind the audit log
// does not use (it takes Ed25519 and ECDSA P-256 keys).
var ErrKey = errors.New("unusable station key")

// Signature type bytes of the signed-note format (c2sp.org/signed-note).
const (
	sigTypeEd25519 = 0x01 // Ed25519 over the note text
	sigTypeECDSA   = 0x02 // ECDSA P-256 with SHA-256 over the note text, ASN.1 DER signature
)

// GenerateKey creates an Ed25519 station key at path as PKCS#8 PEM, mode
// 0600. An existing key is kept (created is false) once it loads, so init is
// idempotent.
func GenerateKey(path string) (created bool, err error) {
	if _, err := os.Stat(path); err == nil {
		if _, err := LoadPrivateKey(path); err != nil {
			return false, err
		}
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("creating folder for %s: %w", path, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("creating station key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("writing %s: %w", path, err)
	}
	return true, f.Close()
}

// LoadPrivateKey reads a station key from a PEM file (PKCS#8, or SEC 1 "EC
// PRIVATE KEY" for P-256).
func LoadPrivateKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading station key: %w: %w", ErrKey, err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("station key %s: %w: no PEM block", path, ErrKey)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("station key %s: %w: PEM block %q is not a private key", path, ErrKey, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("station key %s: %w: %v", path, ErrKey, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("station key %s: %w: %T", path, ErrKey, key)
	}
	if _, err := sigType(s.Public()); err != nil {
		return nil, fmt.Errorf("station key %s: %w", path, err)
	}
	return s, nil
}

// MarshalPublicKeyPEM encodes a station public key as a PEM "PUBLIC KEY"
// (SubjectPublicKeyInfo) block.
func MarshalPublicKeyPEM(pub crypto.PublicKey) ([]byte, error) {
	if _, err := sigType(pub); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKeyPEM decodes a PEM "PUBLIC KEY" block holding an Ed25519 or
// ECDSA P-256 key.
func ParsePublicKeyPEM(pemBytes []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrKey)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: PEM block %q is not a PUBLIC KEY", ErrKey, block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	if _, err := sigType(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

func sigType(pub crypto.PublicKey) (byte, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return sigTypeEd25519, nil
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return sigTypeECDSA, nil
		}
		return 0, fmt.Errorf("%w: ECDSA key on %s (want P-256)", ErrKey, k.Curve.Params().Name)
	}
	return 0, fmt.Errorf("%w: %T (want Ed25519 or ECDSA P-256)", ErrKey, pub)
}

// KeyID is the 32-bit key ID that names pub in signature lines of notes
// signed under name:
//
//	Ed25519:     SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]
//	ECDSA P-256: SHA-256(DER SubjectPublicKeyInfo)[:4]
//
// (the c2sp.org/signed-note rules for signature types 0x01 and 0x02), read
// as a big-endian uint32.
func KeyID(name string, pub crypto.PublicKey) (uint32, error) {
	t, err := sigType(pub)
	if err != nil {
		return 0, err
	}
	var sum [32]byte
	switch t {
	case sigTypeEd25519:
		sum = sha256.Sum256(append([]byte(name+"\n\x01"), pub.(ed25519.PublicKey)...))
	case sigTypeECDSA:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return 0, err
		}
		sum = sha256.Sum256(der)
	}
	return binary.BigEndian.Uint32(sum[:4]), nil
}

// VerifierKey returns the note verifier key text "name+hash+base64(type ||
// key)" (type 0x01 with the raw Ed25519 key; type 0x02 with the DER SPKI),
// which tools built on golang.org/x/mod/sumdb/note accept for Ed25519.
func VerifierKey(name string, pub crypto.PublicKey) (string, error) {
	t, err := sigType(pub)
	if err != nil {
		return "", err
	}
	id, err := KeyID(name, pub)
	if err != nil {
		return "", err
	}
	var raw []byte
	if t == sigTypeEd25519 {
		raw = pub.(ed25519.PublicKey)
	} else if raw, err = x509.MarshalPKIXPublicKey(pub); err != nil {
		return "", err
	}
	return name + "+" + fmt.Sprintf("%08x", id) + "+" + base64.StdEncoding.EncodeToString(append([]byte{t}, raw...)), nil
}

// noteSigner adapts a crypto.Signer to note.Signer.
type noteSigner struct {
	name string
	id   uint32
	typ  byte
	s    crypto.Signer
}

func newNoteSigner(name string, s crypto.Signer) (*noteSigner, error) {
	t, err := sigType(s.Public())
	if err != nil {
		return nil, err
	}
	id, err := KeyID(name, s.Public())
	if err != nil {
		return nil, err
	}
	return &noteSigner{name: name, id: id, typ: t, s: s}, nil
}

func (n *noteSigner) Name() string    { return n.name }
func (n *noteSigner) KeyHash() uint32 { return n.id }
func (n *noteSigner) Sign(msg []byte) ([]byte, error) {
	if n.typ == sigTypeECDSA {
		h := sha256.Sum256(msg)
		return n.s.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	return n.s.Sign(rand.Reader, msg, crypto.Hash(0))
}

// noteVerifier checks note signatures with the one key the verifier trusts.
type noteVerifier struct {
	name string
	id   uint32
	pub  crypto.PublicKey
}

func newNoteVerifier(name string, pub crypto.PublicKey) (*noteVerifier, error) {
	id, err := KeyID(name, pub)
	if err != nil {
		return nil, err
	}
	return &noteVerifier{name: name, id: id, pub: pub}, nil
}

func (v *noteVerifier) Name() string    { return v.name }
func (v *noteVerifier) KeyHash() uint32 { return v.id }
func (v *noteVerifier) Verify(msg, sig []byte) bool {
	switch k := v.pub.(type) {
	case ed25519.PublicKey:
		return ed25519.Verify(k, msg, sig)
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, h[:], sig)
	}
	return false
}

var _ note.Signer = (*noteSigner)(nil)
var _ note.Verifier = (*noteVerifier)(nil)

// FormatKeyID writes a signed-note key ID as the 8 hex digits tools print
// (the note_key_id of station's JSON documents).
func FormatKeyID(id uint32) string { return keyIDString(id) }

// keyIDString formats a key ID as the 8 hex digits tools print.
func keyIDString(id uint32) string { return strconv.FormatUint(uint64(id)|1<<32, 16)[1:] }

func x509ParsePKIX(der []byte) (crypto.PublicKey, error) { return x509.ParsePKIXPublicKey(der) }

// sameKey reports whether two station public keys are equal.
func sameKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

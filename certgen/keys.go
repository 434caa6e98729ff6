package certgen

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/kms"
	"go.step.sm/crypto/kms/apiv1"
	"go.step.sm/crypto/kms/uri"
	"go.step.sm/crypto/pemutil"

	// The PKCS#11 key manager registers itself only when imported; it needs
	// cgo (without it, pkcs11: URIs fail with a clear "compiled without cgo").
	_ "go.step.sm/crypto/kms/pkcs11"
	_ "go.step.sm/crypto/kms/softkms"

	"github.com/factory-id/station/internal/hint"
)

// KeyType names a CA key algorithm.
type KeyType string

// The CA key types the station creates.
const (
	ECP256  KeyType = "ec-p256"
	ECP384  KeyType = "ec-p384"
	RSA3072 KeyType = "rsa-3072"
)

// KeyTypes lists the accepted key types, for flag help and errors.
var KeyTypes = []KeyType{ECP256, ECP384, RSA3072}

// ParseKeyType accepts ec-p256, ec-p384 or rsa-3072.
func ParseKeyType(s string) (KeyType, error) {
	for _, k := range KeyTypes {
		if string(k) == s {
			return k, nil
		}
	}
	return "", fmt.Errorf("key type %q: want ec-p256, ec-p384 or rsa-3072", s)
}

func (k KeyType) algorithm() (apiv1.SignatureAlgorithm, int) {
	switch k {
	case ECP384:
		return apiv1.ECDSAWithSHA384, 0
	case RSA3072:
		return apiv1.SHA256WithRSA, 3072
	default:
		return apiv1.ECDSAWithSHA256, 0
	}
}

// MinPasswordLen is the shortest password accepted to encrypt a CA key.
const MinPasswordLen = 8

// Key is a CA signing key: in software (from an encrypted PEM file) or in a
// key store reached through a kms URI (a PKCS#11 token), where it never
// leaves the device. Close releases the key store.
type Key struct {
	Signer crypto.Signer
	// Ref is where the key lives: a file path or a kms URI with any PIN
	// removed (printable).
	Ref string
	// InHSM is true when the private key is held by a PKCS#11 token.
	InHSM bool
	km    apiv1.KeyManager
}

// Close releases the key store (for PKCS#11, the session and module).
func (k *Key) Close() error {
	if k == nil || k.km == nil {
		return nil
	}
	err := k.km.Close()
	k.km = nil
	return err
}

// IsKMSURI reports whether ref names a key behind a kms URI rather than an
// encrypted PEM file.
func IsKMSURI(ref string) bool {
	return strings.HasPrefix(ref, "pkcs11:") || strings.HasPrefix(ref, "softkms:")
}

// KeyFile is the file a software key reference names: the path itself, or
// the file of a softkms: URI (softkms:path=F, softkms:F); "" for pkcs11:.
func KeyFile(ref string) (string, error) {
	if strings.HasPrefix(ref, "pkcs11:") {
		return "", nil
	}
	return softPath(ref)
}

// softPath is the file behind a softkms: URI or a plain path.
func softPath(ref string) (string, error) {
	if !strings.HasPrefix(ref, "softkms:") {
		return ref, nil
	}
	u, err := uri.ParseWithScheme("softkms", ref)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrKeyURI, ref, err)
	}
	switch {
	case u.Get("path") != "":
		return u.Get("path"), nil
	case u.Path != "":
		return u.Path, nil
	case u.Opaque != "":
		return u.Opaque, nil
	}
	return "", fmt.Errorf("%w %q: names no file (want softkms:path=/dir/key.pem)", ErrKeyURI, ref)
}

func openKMS(ref string) (apiv1.KeyManager, error) {
	typ := apiv1.SoftKMS
	if strings.HasPrefix(ref, "pkcs11:") {
		typ = apiv1.PKCS11
		u, err := uri.ParseWithScheme("pkcs11", ref)
		if err != nil {
			return nil, fmt.Errorf("%w %s: %w", ErrKeyURI, RedactURI(ref), redactErr(err, ref))
		}
		if len(u.GetEncoded("id")) == 0 || u.Get("object") == "" {
			return nil, fmt.Errorf("%w %s: needs both id= and object= to name the key", ErrKeyURI, RedactURI(ref))
		}
	}
	km, err := kms.New(context.Background(), apiv1.Options{Type: typ, URI: ref})
	if err != nil {
		if msg := err.Error(); strings.Contains(msg, "CKR_PIN_INCORRECT") || strings.Contains(msg, "CKR_PIN_LOCKED") ||
			strings.Contains(msg, "CKR_PIN_LEN_RANGE") || strings.Contains(msg, "CKR_PIN_EXPIRED") {
			// Not retryable: repeating a wrong PIN locks the token.
			return nil, hint.Wrap(fmt.Errorf("%w: token refused the PIN for %s: %w", ErrPassword, RedactURI(ref), redactErr(err, ref)),
				"check the pin-source file; do not retry a wrong PIN, the token locks after a few")
		}
		return nil, fmt.Errorf("%w: opening %s: %w", ErrHSM, RedactURI(ref), redactErr(err, ref))
	}
	return km, nil
}

// CreateKey makes a new CA key of type kt. With a pkcs11: URI the key pair is
// generated inside the token (non-extractable) and an existing key with the
// same id/object is never replaced. With "" or a softkms: URI the key is
// generated in memory; the caller writes it with WriteKeyPEM.
func CreateKey(ref string, kt KeyType) (*Key, error) {
	if _, err := ParseKeyType(string(kt)); err != nil {
		return nil, err
	}
	alg, bits := kt.algorithm()
	if !strings.HasPrefix(ref, "pkcs11:") {
		if ref != "" && !strings.HasPrefix(ref, "softkms:") {
			return nil, fmt.Errorf("%w %q: want a pkcs11: or softkms: URI", ErrKeyURI, ref)
		}
		km, err := openKMS("softkms:")
		if err != nil {
			return nil, err
		}
		defer km.Close()
		resp, err := km.CreateKey(&apiv1.CreateKeyRequest{Name: ref, SignatureAlgorithm: alg, Bits: bits})
		if err != nil {
			return nil, fmt.Errorf("creating %s key: %w", kt, err)
		}
		s, ok := resp.PrivateKey.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("creating %s key: not a signer", kt)
		}
		return &Key{Signer: s, Ref: ref}, nil
	}
	km, err := openKMS(ref)
	if err != nil {
		return nil, err
	}
	resp, err := km.CreateKey(&apiv1.CreateKeyRequest{Name: ref, SignatureAlgorithm: alg, Bits: bits})
	if err != nil {
		km.Close()
		if errors.As(err, new(apiv1.AlreadyExistsError)) {
			return nil, hint.Wrap(fmt.Errorf("%w: key %s", ErrExists, RedactURI(ref)),
				"choose another id= and object=; the station never replaces a key in a token")
		}
		return nil, fmt.Errorf("creating %s key in %s: %w", kt, RedactURI(ref), redactErr(err, ref))
	}
	s, err := km.CreateSigner(&resp.CreateSignerRequest)
	if err != nil {
		km.Close()
		return nil, fmt.Errorf("opening new key %s: %w", RedactURI(ref), redactErr(err, ref))
	}
	return &Key{Signer: s, Ref: RedactURI(ref), InHSM: true, km: km}, nil
}

// IsEncryptedPEM reports whether data holds an encrypted private key
// (PKCS#8 "ENCRYPTED PRIVATE KEY" or a legacy Proc-Type: 4,ENCRYPTED block).
func IsEncryptedPEM(data []byte) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if b.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(b.Headers["Proc-Type"], "ENCRYPTED") {
			return true
		}
	}
}

// OpenKey opens an existing CA key. ref is a pkcs11: or softkms: URI, or the
// path of an encrypted PEM file (a plain path must be encrypted; softkms:
// also opens an unencrypted file, for tests and demos). password is called
// only when the file is encrypted.
func OpenKey(ref string, password func() ([]byte, error)) (*Key, error) {
	if strings.HasPrefix(ref, "pkcs11:") {
		km, err := openKMS(ref)
		if err != nil {
			return nil, err
		}
		s, err := km.CreateSigner(&apiv1.CreateSignerRequest{SigningKey: ref})
		if err != nil {
			km.Close()
			return nil, fmt.Errorf("%w: key %s: %w", ErrIssuer, RedactURI(ref), redactErr(err, ref))
		}
		return &Key{Signer: s, Ref: RedactURI(ref), InHSM: true, km: km}, nil
	}
	path, err := softPath(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrIssuer, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: reading key: %w", ErrIssuer, err)
	}
	req := &apiv1.CreateSignerRequest{SigningKeyPEM: data}
	if IsEncryptedPEM(data) {
		if password == nil {
			return nil, fmt.Errorf("%w: %s is encrypted and no password was given", ErrPassword, path)
		}
		pw, err := password()
		if err != nil {
			return nil, err
		}
		req.Password = pw
		defer clear(pw)
	} else if !strings.HasPrefix(ref, "softkms:") {
		return nil, hint.Wrap(fmt.Errorf("%w: %s holds an unencrypted private key", ErrIssuer, path),
			"CA keys are kept as encrypted PEM; name it softkms:path="+path+" to use a plaintext key on purpose")
	}
	km, err := openKMS("softkms:")
	if err != nil {
		return nil, err
	}
	defer km.Close()
	s, err := km.CreateSigner(req)
	if err != nil {
		if req.Password != nil {
			return nil, fmt.Errorf("%w: cannot decrypt %s (wrong password?)", ErrPassword, path)
		}
		return nil, fmt.Errorf("%w: reading key %s: %w", ErrIssuer, path, err)
	}
	return &Key{Signer: s, Ref: path}, nil
}

// WriteKeyPEM writes a software key as PKCS#8 encrypted PEM (PBES2:
// PBKDF2-HMAC-SHA256, 600,000 iterations, 16-byte salt, AES-256-CBC; the
// format pemutil writes with WithPKCS8) to path, mode 0600. An existing file
// is replaced only with overwrite set.
func WriteKeyPEM(path string, k crypto.Signer, password []byte, overwrite bool) error {
	if len(password) < MinPasswordLen {
		return fmt.Errorf("%w: at least %d characters are needed to encrypt a CA key", ErrPassword, MinPasswordLen)
	}
	switch k.(type) {
	case *ecdsa.PrivateKey, *rsa.PrivateKey:
	default:
		return fmt.Errorf("key %T cannot be written as PEM (is it held by a token?)", k)
	}
	block, err := pemutil.Serialize(k, pemutil.WithPKCS8(true), pemutil.WithPassword(password))
	if err != nil {
		return fmt.Errorf("encrypting key: %w", err)
	}
	return writeFile(path, pem.EncodeToMemory(block), 0o600, overwrite)
}

// writeFile writes data to path with perm, refusing to replace a file
// unless overwrite is set; the data goes to a temporary file first, so a
// crash never leaves a half-written key.
func writeFile(path string, data []byte, perm os.FileMode, overwrite bool) error {
	if !overwrite {
		if _, err := os.Lstat(path); err == nil {
			return hint.Wrap(fmt.Errorf("%w: %s", ErrExists, path), "move it away, or pass --force to replace it")
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if !overwrite {
		// Link fails if the name appeared meanwhile: no silent replacement.
		if err := os.Link(tmp, path); err != nil {
			if errors.Is(err, os.ErrExist) {
				return hint.Wrap(fmt.Errorf("%w: %s", ErrExists, path), "move it away, or pass --force to replace it")
			}
			return err
		}
		return nil
	}
	return os.Rename(tmp, path)
}

// CheckKeyMatches proves that signer holds the private key of pub (a
// certificate's): the public halves must be equal and a fresh signature
// must verify under pub. station doctor uses it on the issuer key.
func CheckKeyMatches(signer crypto.Signer, pub crypto.PublicKey) error {
	return checkKeyMatches(signer, pub)
}

// checkKeyMatches proves that signer holds the private key of pub: the public
// halves must be equal and a fresh signature must verify under pub.
func checkKeyMatches(signer crypto.Signer, pub crypto.PublicKey) error {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	sp, ok := signer.Public().(equaler)
	if !ok || !sp.Equal(pub) {
		return errors.New("the key is not the certificate's key")
	}
	var nonce [32]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	digest := sha256.Sum256(nonce[:])
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return fmt.Errorf("test signature: %w", err)
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(p, digest[:], sig) {
			return errors.New("the key's test signature does not verify under the certificate's key")
		}
	case *rsa.PublicKey:
		if err := rsa.VerifyPKCS1v15(p, crypto.SHA256, digest[:], sig); err != nil {
			return errors.New("the key's test signature does not verify under the certificate's key")
		}
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	return nil
}

// checkPublicKey refuses keys weaker than the station's minimum (ECDSA P-256
// or P-384, RSA of at least 2048 bits).
func checkPublicKey(pub crypto.PublicKey) error {
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() && p.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s: want P-256 or P-384", p.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if p.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits: want at least 2048", p.N.BitLen())
		}
	default:
		return fmt.Errorf("key type %T: want ECDSA or RSA", pub)
	}
	return nil
}

// NeedsPassword reports whether opening ref with OpenKey will ask for a
// password: ref names an encrypted PEM file. Callers use it to ask every
// password before the slow work (decrypting a key) begins. A file that cannot
// be read gives false; OpenKey then reports the error.
func NeedsPassword(ref string) bool {
	if strings.HasPrefix(ref, "pkcs11:") {
		return false
	}
	path, err := softPath(ref)
	if err != nil {
		return false
	}
	data, err := os.ReadFile(path)
	return err == nil && IsEncryptedPEM(data)
}

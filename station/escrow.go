package station

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"go.step.sm/crypto/jose"
)

// Escrower encrypts hierarchy authorizations to the escrow public key as
// compact JWEs (ECDH-ES+A256KW or RSA-OAEP-256, A256GCM). The station never
// holds the private key: an escrowed value can be read only by whoever keeps
// the escrow private key, off the line.
type Escrower struct {
	pub crypto.PublicKey
	alg jose.KeyAlgorithm
}

// ErrEscrowKey means the escrow public key is unusable.
var ErrEscrowKey = errors.New("unusable escrow public key")

// LoadEscrower reads a PEM public key (EC P-256/P-384, or RSA >= 2048 bits).
func LoadEscrower(path string) (*Escrower, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading escrow public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM block", ErrEscrowKey, path)
	}
	var pub any
	switch blk.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(blk.Bytes); err == nil {
			pub = c.PublicKey
		}
	default:
		return nil, fmt.Errorf("%w: %s holds a %q block (want PUBLIC KEY); never put a private key on the line", ErrEscrowKey, path, blk.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrEscrowKey, path, err)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if n := k.Curve.Params().Name; n != "P-256" && n != "P-384" {
			return nil, fmt.Errorf("%w: curve %s (want P-256 or P-384)", ErrEscrowKey, n)
		}
		return &Escrower{pub: k, alg: jose.ECDH_ES_A256KW}, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA-%d (want at least 2048 bits)", ErrEscrowKey, k.N.BitLen())
		}
		return &Escrower{pub: k, alg: jose.RSA_OAEP_256}, nil
	}
	return nil, fmt.Errorf("%w: %T (want EC P-256/P-384 or RSA)", ErrEscrowKey, pub)
}

// Seal encrypts secret for the escrow key. The unit's serial and the
// hierarchy travel in the protected header, so an escrow cannot be swapped
// between units without the decrypter noticing.
func (e *Escrower) Seal(serial, hierarchy string, secret []byte) (string, error) {
	opts := (&jose.EncrypterOptions{}).
		WithHeader("station-serial", serial).
		WithHeader("station-hierarchy", hierarchy).
		WithContentType("station-auth")
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: e.alg, Key: e.pub}, opts)
	if err != nil {
		return "", fmt.Errorf("escrow encrypter: %w", err)
	}
	obj, err := enc.Encrypt(secret)
	if err != nil {
		return "", fmt.Errorf("escrow encryption: %w", err)
	}
	return obj.CompactSerialize()
}

// OpenEscrow decrypts an escrow with the escrow private key (for recovery
// and tests) and checks that it belongs to serial and hierarchy.
func OpenEscrow(jwe string, priv crypto.PrivateKey, serial, hierarchy string) ([]byte, error) {
	obj, err := jose.ParseEncrypted(jwe)
	if err != nil {
		return nil, fmt.Errorf("parsing escrow: %w", err)
	}
	h := obj.Header.ExtraHeaders
	if fmt.Sprint(h["station-serial"]) != serial || fmt.Sprint(h["station-hierarchy"]) != hierarchy {
		return nil, fmt.Errorf("escrow is for unit %v, %v auth; not unit %s, %s auth", h["station-serial"], h["station-hierarchy"], serial, hierarchy)
	}
	return obj.Decrypt(priv)
}

package station

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	bolt "go.etcd.io/bbolt"
	"go.step.sm/crypto/jose"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/configs"
)

// Escrower encrypts hierarchy authorizations to the escrow public key as
// compact JWEs (ECDH-ES+A256KW or RSA-OAEP-256, A256GCM). The station never
// holds the private key: an escrowed value can be read only by whoever keeps
// the escrow private key, off the line.
type Escrower struct {
	pub crypto.PublicKey
	alg jose.KeyAlgorithm
	kid string // RFC 7638 SHA-256 thumbprint of pub, base64url
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
		return newEscrower(k, jose.ECDH_ES_A256KW)
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA-%d (want at least 2048 bits)", ErrEscrowKey, k.N.BitLen())
		}
		return newEscrower(k, jose.RSA_OAEP_256)
	}
	return nil, fmt.Errorf("%w: %T (want EC P-256/P-384 or RSA)", ErrEscrowKey, pub)
}

func newEscrower(pub crypto.PublicKey, alg jose.KeyAlgorithm) (*Escrower, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEscrowKey, err)
	}
	return &Escrower{pub: pub, alg: alg, kid: base64.RawURLEncoding.EncodeToString(tp)}, nil
}

// Seal encrypts secret for the escrow key. The unit's serial and the
// hierarchy travel in the protected header (authenticated by the content
// encryption), so an escrow cannot be swapped between units without the
// decrypter noticing; the header's kid names the escrow key.
func (e *Escrower) Seal(serial, hierarchy string, secret []byte) (string, error) {
	opts := (&jose.EncrypterOptions{}).
		WithHeader("station-serial", serial).
		WithHeader("station-hierarchy", hierarchy).
		WithContentType("station-auth")
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: e.alg, Key: e.pub, KeyID: e.kid}, opts)
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

// ErrBadEscrow means an escrow is not one this station could have made for
// the unit: another unit's, another key's, or no JWE at all.
var ErrBadEscrow = errors.New("escrow does not check")

// escrowSecretLen is the length of every auth value station escrows.
const escrowSecretLen = 32

// Check tells, without the private key, whether jwe is well formed as an
// escrow of serial's hierarchy auth made by Seal for this escrow key: a
// compact JWE whose protected header names the unit and the hierarchy, the
// key algorithm of this key (its kid when the escrow carries one, its curve
// or modulus size), A256GCM, and parts of the sizes a 32-byte value gives.
// It cannot tell a forged escrow made for the right unit with the public
// key: the audit log's escrow digest does (checkOwnership compares them).
func (e *Escrower) Check(jwe, serial, hierarchy string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadEscrow, fmt.Sprintf(format, args...))
	}
	parts := strings.Split(jwe, ".")
	if len(parts) != 5 {
		return bad("not a compact JWE (%d parts, want 5)", len(parts))
	}
	raw := make([][]byte, 5)
	for i, p := range parts {
		b, err := base64.RawURLEncoding.DecodeString(p)
		if err != nil {
			return bad("JWE part %d is not base64url: %v", i+1, err)
		}
		raw[i] = b
	}
	var h struct {
		Alg       string           `json:"alg"`
		Enc       string           `json:"enc"`
		Cty       string           `json:"cty"`
		Kid       string           `json:"kid"`
		Serial    *string          `json:"station-serial"`
		Hierarchy *string          `json:"station-hierarchy"`
		EPK       *jose.JSONWebKey `json:"epk"`
	}
	if err := json.Unmarshal(raw[0], &h); err != nil {
		return bad("protected header: %v", err)
	}
	switch {
	case h.Serial == nil || *h.Serial != serial || h.Hierarchy == nil || *h.Hierarchy != hierarchy:
		return bad("it is the escrow of unit %s, %s auth; not unit %s, %s auth", deref(h.Serial), deref(h.Hierarchy), serial, hierarchy)
	case h.Alg != string(e.alg) || h.Enc != string(jose.A256GCM) || h.Cty != "station-auth":
		return bad("alg %q, enc %q, cty %q; the escrow key takes alg %q, enc %q, cty %q", h.Alg, h.Enc, h.Cty, e.alg, jose.A256GCM, "station-auth")
	case h.Kid != "" && h.Kid != e.kid:
		return bad("encrypted to another key (kid %s), not the configured escrow key (kid %s)", h.Kid, e.kid)
	case len(raw[2]) != 12 || len(raw[3]) != escrowSecretLen || len(raw[4]) != 16:
		return bad("IV, ciphertext and tag of %d, %d and %d bytes; want 12, %d and 16", len(raw[2]), len(raw[3]), len(raw[4]), escrowSecretLen)
	}
	switch k := e.pub.(type) {
	case *ecdsa.PublicKey:
		epk, ok := (*ecdsa.PublicKey)(nil), h.EPK != nil
		if ok {
			epk, ok = h.EPK.Key.(*ecdsa.PublicKey)
		}
		if !ok || epk.Curve != k.Curve {
			return bad("no ephemeral %s key in the header", k.Curve.Params().Name)
		}
		if _, err := epk.ECDH(); err != nil { // on the curve
			return bad("ephemeral key: %v", err)
		}
		if len(raw[1]) != 40 { // A256KW of a 32-byte content key
			return bad("wrapped key of %d bytes, want 40", len(raw[1]))
		}
	case *rsa.PublicKey:
		if h.EPK != nil || len(raw[1]) != k.Size() {
			return bad("encrypted key of %d bytes, want %d (RSA-%d)", len(raw[1]), k.Size(), k.N.BitLen())
		}
	}
	return nil
}

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
}

// escrowProblems checks the unit's escrows (verify's ownership check): each
// is well formed for the configured escrow key and names this unit and its
// hierarchy (Escrower.Check), and is the very escrow whose digest the audit
// log recorded when the unit took ownership, so an escrow swapped in the
// database for another unit's, or for a forgery made with the public key,
// fails.
func (v *verifier) escrowProblems() []string {
	esc, err := LoadEscrower(v.env.Config.File(configs.KeyEscrowKey))
	if err != nil {
		return []string{"cannot check the escrows: " + err.Error()}
	}
	recorded, err := v.recordedEscrowDigests()
	if err != nil {
		return []string{"cannot check the escrows against the audit log: " + err.Error()}
	}
	var probs []string
	for _, e := range v.unit.Escrows {
		if err := esc.Check(e.JWE, v.unit.Serial, e.Hierarchy); err != nil {
			probs = append(probs, fmt.Sprintf("%s escrow: %v", e.Hierarchy, err))
			continue
		}
		want, ok := recorded[e.Hierarchy]
		switch {
		case !ok:
			probs = append(probs, fmt.Sprintf("%s escrow: the audit log records no escrow of this unit's %s auth", e.Hierarchy, e.Hierarchy))
		case want != sha256hex([]byte(e.JWE)):
			probs = append(probs, fmt.Sprintf("%s escrow: it is not the escrow the audit log recorded (sha256 %s, recorded %s)", e.Hierarchy, short(sha256hex([]byte(e.JWE))), short(want)))
		}
	}
	return probs
}

// recordedEscrowDigests returns the escrow digests of the unit's last
// provision.ownership audit record, by hierarchy.
func (v *verifier) recordedEscrowDigests() (map[string]string, error) {
	var out map[string]string
	err := v.env.DB.View(func(tx *bolt.Tx) error {
		recs, err := audit.UnitRecords(tx, v.unit.Serial)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.Event != "provision.ownership" {
				continue
			}
			var p struct {
				Digests map[string]string `json:"escrow_digests"`
			}
			if err := json.Unmarshal(r.Payload, &p); err != nil {
				return fmt.Errorf("record %d: %w", r.Seq, err)
			}
			out = p.Digests
		}
		return nil
	})
	if err == nil && out == nil {
		out = map[string]string{}
	}
	return out, err
}

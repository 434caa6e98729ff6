package credbundle

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/factory-id/station/internal/keyid"
	"regexp"
	"strings"

	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/tsskey"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrBundle: a bundle that does not parse, is of an unknown version or is
	// inconsistent (exit 1 within verify; exit 4 for a bundle checked alone).
	ErrBundle = errors.New("malformed credential bundle")

	// ErrSignature: a bundle's digest or signature does not verify under
	// the station key, or was made by another key (integrity, exit 4).
	ErrSignature = errors.New("credential bundle signature does not verify")
)

// Bundle format versions (docs/BUNDLE.md). This package reads both and
// writes a bundle as the lowest version that holds its contents: version 1
// unless it carries the device's TPM key file, which only version 2 has.
const (
	Version1 = 1
	Version2 = 2 // adds tpm_key (record 16) and, in the folder, the key file and device.json
	// Version is the newest version this package reads and writes.
	Version = Version2
)

// ImageMagic starts every single-file bundle image.
const ImageMagic = "STBUNDLE"

// MaxImageSize bounds a bundle image (parsers refuse anything larger).
const MaxImageSize = 1 << 20

// Attestation types a bundle may carry: enroll's (dps.attestation).
const (
	AttestTPM          = enroll.AttestTPM
	AttestX509         = enroll.AttestX509
	AttestSymmetricKey = enroll.AttestSymmetricKey
)

// Signature algorithms (bundle field sig_alg).
const (
	SigEd25519   = "ed25519"
	SigECDSAP256 = "ecdsa-p256-sha256"
)

// Record tags of the canonical encoding, in the order they must appear.
const (
	tagSerial          = 1
	tagRegistrationID  = 2
	tagAttestation     = 3
	tagIDScope         = 4
	tagGlobalEndpoint  = 5
	tagDeviceKeyHandle = 6
	tagFirmwareSHA256  = 7
	tagFirmwareVersion = 8
	tagStationID       = 9
	tagCert            = 10
	tagChain           = 11
	tagSealedKey       = 12
	tagSymmetricKey    = 13
	tagSignerKeyID     = 14
	tagSigAlg          = 15
	tagTPMKey          = 16 // version 2
	tagDigest          = 0xfffe
	tagSignature       = 0xffff
)

// The digest and signature contexts name the version: "station-bundle/v1
// digest", "station-bundle/v2 signature", ...
func digestContext(version int) string { return fmt.Sprintf("station-bundle/v%d digest\x00", version) }
func signatureContext(version int) string {
	return fmt.Sprintf("station-bundle/v%d signature\x00", version)
}

// Bundle is a unit's credential bundle: what the device's DPS client needs,
// the firmware it must run, and the station's signature over all of it.
// Fields marked secret are key material: they are Secret, which never
// prints or marshals; only the bundle encodings (the device's credential
// store) hold them.
type Bundle struct {
	Version         int
	Serial          string
	RegistrationID  string
	Attestation     string // tpm | x509 | symmetric-key
	IDScope         string
	GlobalEndpoint  string
	DeviceKeyHandle uint32 // persistent handle of the device key in the unit's TPM (0: none)
	CertPEM         []byte // the device certificate (one CERTIFICATE block)
	ChainPEM        []byte // issuer first, up to (not including) the root; may be empty
	FirmwareSHA256  string // hex
	FirmwareVersion string // optional
	StationID       string // optional: the station that made the bundle

	// SealedKey (secret) is the per-device symmetric key sealed under the
	// unit's SRK: TPM2B_PUBLIC followed by TPM2B_PRIVATE of the sealed
	// object. SymmetricKey (secret) is the clear key, only for units without
	// a TPM (DeviceKeyHandle 0: a unit with a TPM gets the sealed form). At
	// most one is set, and only with symmetric-key attestation.
	SealedKey    Secret
	SymmetricKey Secret

	// TPMKey (version 2) is the device key as a TSS2 private key file, DER
	// (package tsskey): its TPM2B_PUBLIC and the TPM2B_PRIVATE that
	// TPM2_Create returned, wrapped by the SRK it names as parent. It is
	// not secret in clear (only that TPM can load it); the device's OpenSSL
	// provider and PKCS#11 module load the key from it.
	TPMKey []byte

	// Set by Sign.
	SignerKeyID []byte // SHA-256 of the station public key's SubjectPublicKeyInfo
	SigAlg      string
	Digest      []byte // SHA-256 over the canonical encoding (see docs/BUNDLE.md)
	Signature   []byte

	certDER  []byte
	chainDER [][]byte
}

// serialRe: what a serial may be (docs/BUNDLE.md), so that it is safe
// wherever a unit's serial goes (a path component, an argument):
// letters, digits, '.', '_', '-'; starting with a letter or digit (so never
// an option such as "-rf", never ".."), at most 64.
var serialRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidSerial says why s cannot be a unit's serial (nil when it can): it
// could escape a path component or pose as a tool option.
func ValidSerial(s string) error {
	if !serialRe.MatchString(s) || strings.Contains(s, "..") {
		return fmt.Errorf("serial %q: want 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit, no \"..\"", s)
	}
	return nil
}

var (
	printable  = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
	hexSHA256  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	versionStr = regexp.MustCompile(`^[\x20-\x7e]{0,64}$`)
)

// NewBundle validates b and returns a normalized copy (version set, PEM
// re-encoded from the certificates' DER) ready to Sign.
func NewBundle(b Bundle) (*Bundle, error) {
	out := b
	out.Version = Version1
	if len(b.TPMKey) > 0 {
		out.Version = Version2
	}
	out.SignerKeyID, out.SigAlg, out.Digest, out.Signature = nil, "", nil, nil
	var err error
	if out.certDER, out.chainDER, err = parseCerts(b.CertPEM, b.ChainPEM); err != nil {
		return nil, err
	}
	out.CertPEM, out.ChainPEM = encodePEM(out.certDER), encodePEM(out.chainDER...)
	if err := out.validate(); err != nil {
		return nil, err
	}
	return &out, nil
}

func bundleErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBundle, fmt.Sprintf(format, args...))
}

func parseCerts(certPEM, chainPEM []byte) ([]byte, [][]byte, error) {
	leaf, err := pemCerts(certPEM, "certificate")
	if err != nil {
		return nil, nil, err
	}
	if len(leaf) != 1 {
		return nil, nil, bundleErr("certificate: want exactly one CERTIFICATE block, got %d", len(leaf))
	}
	chain, err := pemCerts(chainPEM, "chain")
	if err != nil {
		return nil, nil, err
	}
	return leaf[0], chain, nil
}

// pemCerts accepts CERTIFICATE blocks only: a key or any other block (or
// stray text) in a certificate file is refused, so nothing secret rides along.
func pemCerts(data []byte, what string) ([][]byte, error) {
	var ders [][]byte
	rest := bytes.TrimSpace(data)
	for len(rest) > 0 {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, bundleErr("%s: not PEM", what)
		}
		if blk.Type != "CERTIFICATE" || len(blk.Headers) != 0 {
			return nil, bundleErr("%s: holds a %q block; only certificates belong there", what, blk.Type)
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, bundleErr("%s: %v", what, err)
		}
		ders = append(ders, blk.Bytes)
		rest = bytes.TrimSpace(rest)
	}
	return ders, nil
}

func encodePEM(ders ...[]byte) []byte {
	var buf bytes.Buffer
	for _, d := range ders {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: d})
	}
	return buf.Bytes()
}

// knownVersion refuses a version this package does not read.
func knownVersion(v int) error {
	if v != Version1 && v != Version2 {
		return bundleErr("version %d (this station reads versions %d to %d)", v, Version1, Version)
	}
	return nil
}

func (b *Bundle) validate() error {
	if err := knownVersion(b.Version); err != nil {
		return err
	}
	if err := ValidSerial(b.Serial); err != nil {
		return fmt.Errorf("%w: %w", ErrBundle, err)
	}
	if regid.Validate(b.RegistrationID, false) != nil {
		return bundleErr("registration ID %q is not a valid DPS registration ID", b.RegistrationID)
	}
	switch b.Attestation {
	case AttestTPM, AttestX509, AttestSymmetricKey:
	default:
		return bundleErr("attestation %q: want tpm, x509 or symmetric-key", b.Attestation)
	}
	if !printable.MatchString(b.IDScope) {
		return bundleErr("ID scope %q", b.IDScope)
	}
	if !printable.MatchString(b.GlobalEndpoint) {
		return bundleErr("global endpoint %q", b.GlobalEndpoint)
	}
	if b.Attestation == AttestTPM && b.DeviceKeyHandle>>24 != 0x81 {
		return bundleErr("device key handle 0x%08x is not a persistent handle", b.DeviceKeyHandle)
	}
	if !hexSHA256.MatchString(b.FirmwareSHA256) {
		return bundleErr("firmware SHA-256 %q: want 64 lower-case hex digits", b.FirmwareSHA256)
	}
	if !versionStr.MatchString(b.FirmwareVersion) {
		return bundleErr("firmware version %q", b.FirmwareVersion)
	}
	if b.StationID != "" && !printable.MatchString(b.StationID) {
		return bundleErr("station ID %q", b.StationID)
	}
	cert, err := x509.ParseCertificate(b.certDER)
	if err != nil {
		return bundleErr("certificate: %v", err)
	}
	if cert.Subject.CommonName != b.RegistrationID {
		return bundleErr("certificate CN %q is not the registration ID %q", cert.Subject.CommonName, b.RegistrationID)
	}
	if len(b.SealedKey) > 0 && len(b.SymmetricKey) > 0 {
		return bundleErr("both a sealed and a clear symmetric key")
	}
	if (len(b.SealedKey) > 0 || len(b.SymmetricKey) > 0) && b.Attestation != AttestSymmetricKey {
		return bundleErr("a symmetric key in a %s bundle", b.Attestation)
	}
	if len(b.SymmetricKey) > 0 && b.DeviceKeyHandle != 0 {
		return bundleErr("a clear symmetric key for a unit with a TPM (device key 0x%08x): seal it under the SRK (SealedKey)", b.DeviceKeyHandle)
	}
	if len(b.SymmetricKey) > 0 && (len(b.SymmetricKey) < 16 || len(b.SymmetricKey) > 64) {
		return bundleErr("symmetric key of %d bytes (DPS takes 16 to 64)", len(b.SymmetricKey))
	}
	if len(b.SealedKey) > 0 {
		if err := checkSealed(b.SealedKey); err != nil {
			return err
		}
	}
	return b.checkTPMKey(cert)
}

// checkTPMKey checks the TPM key file: only in version 2 (which always
// carries one), a loadable key with empty auth under a persistent parent,
// for a device key at a persistent handle, and the very key the
// certificate certifies.
func (b *Bundle) checkTPMKey(cert *x509.Certificate) error {
	if len(b.TPMKey) == 0 {
		if b.Version == Version2 {
			return bundleErr("a version 2 bundle without its TPM key file (without one a bundle is version 1)")
		}
		return nil
	}
	if b.Version < Version2 {
		return bundleErr("a TPM key file in a version %d bundle (it needs version 2)", b.Version)
	}
	k, err := tsskey.ParseDER(b.TPMKey)
	if err != nil {
		return bundleErr("TPM key file: %v", err)
	}
	if k.Parent>>24 != 0x81 {
		return bundleErr("TPM key file: parent 0x%08x is not a persistent handle (the unit's SRK)", k.Parent)
	}
	if !k.EmptyAuth {
		return bundleErr("TPM key file: the device key's auth is not empty")
	}
	if b.DeviceKeyHandle>>24 != 0x81 {
		return bundleErr("TPM key file for a device key handle 0x%08x that is not persistent", b.DeviceKeyHandle)
	}
	pub, err := k.PublicKey()
	if err != nil {
		return bundleErr("TPM key file: %v", err)
	}
	if eq, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
		return bundleErr("TPM key file: its key is not the one the device certificate certifies")
	}
	return nil
}

// checkSealed checks the blob is a TPM2B_PUBLIC followed by a TPM2B_PRIVATE
// and nothing else (the shape, not the contents: only the TPM can open it).
func checkSealed(s []byte) error {
	rest := s
	for _, what := range []string{"TPM2B_PUBLIC", "TPM2B_PRIVATE"} {
		if len(rest) < 2 {
			return bundleErr("sealed key: truncated %s", what)
		}
		n := int(binary.BigEndian.Uint16(rest))
		if n == 0 || len(rest) < 2+n {
			return bundleErr("sealed key: bad %s size", what)
		}
		rest = rest[2+n:]
	}
	if len(rest) != 0 {
		return bundleErr("sealed key: %d trailing bytes", len(rest))
	}
	return nil
}

// content is the canonical encoding up to (not including) the digest record.
func (b *Bundle) content() []byte {
	var buf bytes.Buffer
	buf.WriteString(ImageMagic)
	_ = binary.Write(&buf, binary.BigEndian, uint16(b.Version))
	rec := func(tag uint16, v []byte) {
		_ = binary.Write(&buf, binary.BigEndian, tag)
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(v)))
		buf.Write(v)
	}
	opt := func(tag uint16, v []byte) {
		if len(v) > 0 {
			rec(tag, v)
		}
	}
	fw, _ := hex.DecodeString(b.FirmwareSHA256)
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], b.DeviceKeyHandle)
	var chain bytes.Buffer
	for _, d := range b.chainDER {
		_ = binary.Write(&chain, binary.BigEndian, uint32(len(d)))
		chain.Write(d)
	}
	rec(tagSerial, []byte(b.Serial))
	rec(tagRegistrationID, []byte(b.RegistrationID))
	rec(tagAttestation, []byte(b.Attestation))
	rec(tagIDScope, []byte(b.IDScope))
	rec(tagGlobalEndpoint, []byte(b.GlobalEndpoint))
	rec(tagDeviceKeyHandle, h[:])
	rec(tagFirmwareSHA256, fw)
	opt(tagFirmwareVersion, []byte(b.FirmwareVersion))
	opt(tagStationID, []byte(b.StationID))
	rec(tagCert, b.certDER)
	rec(tagChain, chain.Bytes())
	opt(tagSealedKey, b.SealedKey)
	opt(tagSymmetricKey, b.SymmetricKey)
	rec(tagSignerKeyID, b.SignerKeyID)
	rec(tagSigAlg, []byte(b.SigAlg))
	opt(tagTPMKey, b.TPMKey)
	return buf.Bytes()
}

func (b *Bundle) computeDigest() []byte {
	h := sha256.New()
	h.Write([]byte(digestContext(b.Version)))
	h.Write(b.content())
	return h.Sum(nil)
}

func signedMessage(version int, digest []byte) []byte {
	return append([]byte(signatureContext(version)), digest...)
}

// KeyID returns the SHA-256 of a public key's SubjectPublicKeyInfo DER
// (keyid.Sum: the key_id station prints, in bytes).
func KeyID(pub crypto.PublicKey) ([]byte, error) {
	s, err := keyid.Sum(pub)
	if err != nil {
		return nil, fmt.Errorf("station key: %w", err)
	}
	return s, nil
}

func sigAlgOf(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return SigEd25519, nil
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return SigECDSAP256, nil
		}
	}
	return "", fmt.Errorf("station key of type %T: want Ed25519 or ECDSA P-256", pub)
}

// Sign fills the signer's key ID, the digest and the signature. The station
// key is an Ed25519 or ECDSA P-256 crypto.Signer (a file, an HSM, a TPM).
func (b *Bundle) Sign(signer crypto.Signer) error {
	if b.certDER == nil {
		var err error
		if b.certDER, b.chainDER, err = parseCerts(b.CertPEM, b.ChainPEM); err != nil {
			return err
		}
	}
	if err := b.validate(); err != nil {
		return err
	}
	pub := signer.Public()
	alg, err := sigAlgOf(pub)
	if err != nil {
		return err
	}
	if b.SignerKeyID, err = KeyID(pub); err != nil {
		return err
	}
	b.SigAlg = alg
	b.Digest = b.computeDigest()
	msg := signedMessage(b.Version, b.Digest)
	var sig []byte
	if alg == SigEd25519 {
		sig, err = signer.Sign(rand.Reader, msg, crypto.Hash(0))
	} else {
		h := sha256.Sum256(msg)
		sig, err = signer.Sign(rand.Reader, h[:], crypto.SHA256)
	}
	if err != nil {
		return fmt.Errorf("signing bundle: %w", err)
	}
	b.Signature = sig
	// A signer that returns garbage (a broken HSM) is caught here, not on
	// the device.
	if err := b.verifySignature(pub); err != nil {
		return fmt.Errorf("signing bundle: the signer's signature does not verify: %w", err)
	}
	return nil
}

// record is one tag ‖ length ‖ value record of an image.
type record struct {
	tag int
	val []byte
}

// readRecords is the image's one TLV reader: it checks the magic and splits
// what follows the version into records. It checks the framing only (each
// header whole, each length within the image); what the tags mean is the
// caller's. On a framing error it returns the records before it with the
// error, so that a damaged image still names what it can.
func readRecords(data []byte) (version int, recs []record, err error) {
	if !isImage(data) {
		return 0, nil, errBadMagic
	}
	version = int(binary.BigEndian.Uint16(data[len(ImageMagic):]))
	for rest := data[len(ImageMagic)+2:]; len(rest) > 0; {
		if len(rest) < 6 {
			return version, recs, bundleErr("truncated record header")
		}
		tag := int(binary.BigEndian.Uint16(rest))
		n := binary.BigEndian.Uint32(rest[2:])
		if uint64(n) > uint64(len(rest)-6) {
			return version, recs, bundleErr("record %d: length %d past the end", tag, n)
		}
		recs = append(recs, record{tag: tag, val: rest[6 : 6+n]})
		rest = rest[6+n:]
	}
	return version, recs, nil
}

var errBadMagic = bundleErr("not a station bundle image (bad magic)")

func isImage(data []byte) bool {
	return len(data) >= len(ImageMagic)+2 && string(data[:len(ImageMagic)]) == ImageMagic
}

// PeekSerial reads the serial record of something that looks like a
// bundle image, without checking anything else (a torn or corrupted image
// of a unit still names it). ok is false when no valid serial can be read.
func PeekSerial(data []byte) (serial string, ok bool) {
	_, recs, _ := readRecords(data)
	for _, r := range recs {
		if r.tag == tagSerial {
			s := string(r.val)
			return s, ValidSerial(s) == nil
		}
	}
	return "", false
}

// verifySignature checks the recorded digest against the content and the
// signature against pub.
func (b *Bundle) verifySignature(pub crypto.PublicKey) error {
	if len(b.Digest) == 0 || len(b.Signature) == 0 {
		return fmt.Errorf("%w: bundle is not signed", ErrSignature)
	}
	if !bytes.Equal(b.computeDigest(), b.Digest) {
		return fmt.Errorf("%w: digest does not match the bundle's contents (edited?)", ErrSignature)
	}
	alg, err := sigAlgOf(pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	id, err := KeyID(pub)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSignature, err)
	}
	if !bytes.Equal(id, b.SignerKeyID) {
		return fmt.Errorf("%w: signed by key %x, not by the given station key %x", ErrSignature, short(b.SignerKeyID), short(id))
	}
	if alg != b.SigAlg {
		return fmt.Errorf("%w: signature algorithm %q does not fit the station key (%s)", ErrSignature, b.SigAlg, alg)
	}
	msg := signedMessage(b.Version, b.Digest)
	ok := false
	switch k := pub.(type) {
	case ed25519.PublicKey:
		ok = ed25519.Verify(k, msg, b.Signature)
	case *ecdsa.PublicKey:
		h := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(k, h[:], b.Signature)
	}
	if !ok {
		return fmt.Errorf("%w: bad signature", ErrSignature)
	}
	return nil
}

func short(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

// MarshalBinary returns the single-file image of a signed bundle.
func (b *Bundle) MarshalBinary() ([]byte, error) {
	if len(b.Digest) != sha256.Size || len(b.Signature) == 0 {
		return nil, fmt.Errorf("%w: bundle is not signed", ErrSignature)
	}
	var buf bytes.Buffer
	buf.Write(b.content())
	for _, r := range []struct {
		tag uint16
		v   []byte
	}{{tagDigest, b.Digest}, {tagSignature, b.Signature}} {
		_ = binary.Write(&buf, binary.BigEndian, r.tag)
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(r.v)))
		buf.Write(r.v)
	}
	if buf.Len() > MaxImageSize {
		return nil, bundleErr("image of %d bytes exceeds %d", buf.Len(), MaxImageSize)
	}
	return buf.Bytes(), nil
}

// ParseImage decodes a single-file bundle image strictly (magic, version,
// known tags in order, each once, exact lengths, no trailing bytes) and
// checks its fields and that its digest matches its contents. It does NOT
// check the signature: use VerifyBundle for that.
func ParseImage(data []byte) (*Bundle, error) {
	if len(data) > MaxImageSize {
		return nil, bundleErr("image of %d bytes exceeds %d", len(data), MaxImageSize)
	}
	if !isImage(data) {
		return nil, errBadMagic
	}
	version, recs, framing := readRecords(data)
	b := &Bundle{Version: version}
	if err := knownVersion(b.Version); err != nil {
		return nil, err
	}
	last := -1
	seen := map[int]bool{}
	for _, r := range recs {
		tag, v := r.tag, r.val
		n := uint32(len(v))
		if tag <= last {
			return nil, bundleErr("record %d out of order or repeated", tag)
		}
		last = tag
		seen[tag] = true
		s := string(v)
		switch tag {
		case tagSerial:
			b.Serial = s
		case tagRegistrationID:
			b.RegistrationID = s
		case tagAttestation:
			b.Attestation = s
		case tagIDScope:
			b.IDScope = s
		case tagGlobalEndpoint:
			b.GlobalEndpoint = s
		case tagDeviceKeyHandle:
			if n != 4 {
				return nil, bundleErr("device key handle of %d bytes", n)
			}
			b.DeviceKeyHandle = binary.BigEndian.Uint32(v)
		case tagFirmwareSHA256:
			if n != sha256.Size {
				return nil, bundleErr("firmware SHA-256 of %d bytes", n)
			}
			b.FirmwareSHA256 = hex.EncodeToString(v)
		case tagFirmwareVersion:
			b.FirmwareVersion = s
		case tagStationID:
			b.StationID = s
		case tagCert:
			b.certDER = bytes.Clone(v)
		case tagChain:
			for c := v; len(c) > 0; {
				if len(c) < 4 {
					return nil, bundleErr("chain: truncated length")
				}
				m := binary.BigEndian.Uint32(c)
				if uint64(m) > uint64(len(c)-4) || m == 0 {
					return nil, bundleErr("chain: bad certificate length %d", m)
				}
				b.chainDER = append(b.chainDER, bytes.Clone(c[4:4+m]))
				c = c[4+m:]
			}
		case tagSealedKey:
			b.SealedKey = Secret(bytes.Clone(v))
		case tagSymmetricKey:
			b.SymmetricKey = Secret(bytes.Clone(v))
		case tagSignerKeyID:
			if n != sha256.Size {
				return nil, bundleErr("signer key ID of %d bytes", n)
			}
			b.SignerKeyID = bytes.Clone(v)
		case tagSigAlg:
			b.SigAlg = s
		case tagTPMKey:
			if b.Version < Version2 {
				return nil, bundleErr("record %d (TPM key file) in a version %d image", tag, b.Version)
			}
			b.TPMKey = bytes.Clone(v)
		case tagDigest:
			if n != sha256.Size {
				return nil, bundleErr("digest of %d bytes", n)
			}
			b.Digest = bytes.Clone(v)
		case tagSignature:
			if n == 0 || n > 512 {
				return nil, bundleErr("signature of %d bytes", n)
			}
			b.Signature = bytes.Clone(v)
		default:
			return nil, bundleErr("unknown record %d", tag)
		}
	}
	if framing != nil {
		return nil, framing
	}
	for _, t := range []int{tagSerial, tagRegistrationID, tagAttestation, tagIDScope, tagGlobalEndpoint,
		tagDeviceKeyHandle, tagFirmwareSHA256, tagCert, tagChain, tagSignerKeyID, tagSigAlg, tagDigest, tagSignature} {
		if !seen[t] {
			return nil, bundleErr("missing record %d", t)
		}
	}
	if err := b.finishParse(); err != nil {
		return nil, err
	}
	return b, nil
}

// finishParse validates a decoded bundle and checks its digest.
func (b *Bundle) finishParse() error {
	for _, d := range append([][]byte{b.certDER}, b.chainDER...) {
		if _, err := x509.ParseCertificate(d); err != nil {
			return bundleErr("certificate: %v", err)
		}
	}
	b.CertPEM, b.ChainPEM = encodePEM(b.certDER), encodePEM(b.chainDER...)
	if err := b.validate(); err != nil {
		return err
	}
	switch b.SigAlg {
	case SigEd25519, SigECDSAP256:
	default:
		return bundleErr("signature algorithm %q", b.SigAlg)
	}
	if !bytes.Equal(b.computeDigest(), b.Digest) {
		return fmt.Errorf("%w: digest does not match the bundle's contents (edited?)", ErrSignature)
	}
	return nil
}

// VerifyBundle parses a single-file image and checks it was made by the
// station whose public key is pub: digest over the contents, then the
// signature. It returns ErrBundle for a malformed image and ErrSignature for
// an edited one or one signed by another key.
func VerifyBundle(data []byte, pub crypto.PublicKey) (*Bundle, error) {
	b, err := ParseImage(data)
	if err != nil {
		return nil, err
	}
	if err := b.verifySignature(pub); err != nil {
		return nil, err
	}
	return b, nil
}

// Verify checks a bundle (parsed from any form) under the station key pub.
func (b *Bundle) Verify(pub crypto.PublicKey) error { return b.verifySignature(pub) }

// DigestHex is the bundle's digest in hex: what the unit record and the
// audit keep to identify the bundle (it reveals no key material).
func (b *Bundle) DigestHex() string { return hex.EncodeToString(b.Digest) }

// Summary is the bundle described for records and logs: every field but
// the key material, whose presence and size only are given.
func (b *Bundle) Summary() map[string]string {
	m := map[string]string{
		"bundle.version":         fmt.Sprint(b.Version),
		"bundle.serial":          b.Serial,
		"bundle.registration_id": b.RegistrationID,
		"bundle.attestation":     b.Attestation,
		"bundle.id_scope":        b.IDScope,
		"bundle.global_endpoint": b.GlobalEndpoint,
		"bundle.device_key":      fmt.Sprintf("0x%08x", b.DeviceKeyHandle),
		"bundle.firmware_sha256": b.FirmwareSHA256,
		"bundle.digest":          b.DigestHex(),
		"bundle.signer_key_id":   hex.EncodeToString(b.SignerKeyID),
		"bundle.certificate_sha256": func() string {
			s := sha256.Sum256(b.certDER)
			return hex.EncodeToString(s[:])
		}(),
	}
	if len(b.SealedKey) > 0 {
		m["bundle.key"] = fmt.Sprintf("sealed (%d bytes)", len(b.SealedKey))
	}
	if len(b.SymmetricKey) > 0 {
		m["bundle.key"] = fmt.Sprintf("clear (%d bytes)", len(b.SymmetricKey))
	}
	if len(b.TPMKey) > 0 {
		m["bundle.tpm_key"] = fmt.Sprintf("tss2 (%d bytes)", len(b.TPMKey))
	}
	return m
}

// String describes the bundle without its key material.
func (b *Bundle) String() string {
	return fmt.Sprintf("bundle v%d serial=%s registration_id=%s attestation=%s digest=%s",
		b.Version, b.Serial, b.RegistrationID, b.Attestation, b.DigestHex())
}

// CertDER returns the device certificate's DER.
func (b *Bundle) CertDER() []byte { return bytes.Clone(b.certDER) }

// Recorded is what the station keeps of a unit's bundle: the unit record's
// certificate and the digest of the bundle it flashed.
type Recorded struct {
	Serial  string
	Digest  string // hex, Bundle.DigestHex at provisioning
	CertDER []byte
}

// Expected turns a record into the bundle a unit's flash targets are
// compared with (QA verify without the original bundle, whose key material
// the station never keeps). It is not signed, so it cannot be written.
func Expected(r Recorded) (*Bundle, error) {
	if err := ValidSerial(r.Serial); err != nil {
		return nil, bundleErr("recorded %v", err)
	}
	d, err := hex.DecodeString(r.Digest)
	if err != nil || len(d) != sha256.Size {
		return nil, bundleErr("recorded bundle digest %q", r.Digest)
	}
	cert, err := x509.ParseCertificate(r.CertDER)
	if err != nil {
		return nil, bundleErr("recorded certificate: %v", err)
	}
	return &Bundle{Version: Version, Serial: r.Serial, RegistrationID: cert.Subject.CommonName, Digest: d,
		certDER: bytes.Clone(r.CertDER), CertPEM: encodePEM(r.CertDER)}, nil
}

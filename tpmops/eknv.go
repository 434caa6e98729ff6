package tpmops

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-tpm/tpm2"
)

// EKCertSlot is one EK certificate NV index of the TCG EK Credential
// Profile for TPM Family 2.0 (sections 2.2.2.4 low range, 2.2.2.5 high
// range). Key names the EK's algorithm in the config's words where station
// can enroll it, else descriptively.
type EKCertSlot struct {
	Index     uint32
	Key       string
	HighRange bool
}

// EKCertSlots are every EK certificate index a TPM may carry, low range
// first: the order certificates are read and reported in.
var EKCertSlots = []EKCertSlot{
	{0x01C00002, "rsa2048", false},
	{0x01C0000A, "ecc-p256", false},
	{0x01C00012, "rsa2048", true},
	{0x01C00014, "ecc-p256", true},
	{0x01C00016, "ecc-p384", true},
	{0x01C00018, "ecc-p521", true},
	{0x01C0001A, "ecc-sm2-p256", true},
	{0x01C0001C, "rsa3072", true},
	{0x01C0001E, "rsa4096", true},
}

// The EK certificate chain range (TCG EK Credential Profile 2.2.2.6):
// vendor intermediates some TPMs (Intel PTT) store next to the EK
// certificate, concatenated DER in index order.
const (
	ekChainFirst uint32 = 0x01C00100
	ekChainLast  uint32 = 0x01C001FF
)

// ekCertIndices are the certificate indices for an algorithm station
// enrolls, low range first.
func ekCertIndices(alg Alg) ([]uint32, error) {
	if _, err := ParseAlg(string(alg)); err != nil {
		return nil, err
	}
	var out []uint32
	for _, s := range EKCertSlots {
		if s.Key == string(alg) {
			out = append(out, s.Index)
		}
	}
	return out, nil
}

// EKCertificate is one EK certificate as found: in an NV index, in a file
// or in the offline folder (tpm.ek_cert_dir).
type EKCertificate struct {
	// Source says where it came from: "NV 0x01c00002", a file path.
	Source string
	// Index is the NV index (0 when it did not come from NV).
	Index uint32
	// DER is the certificate exactly as its issuer signed it: never
	// re-encoded, even where a strict DER parser would reject it.
	DER []byte
	// Header is set when a TCG PC-Client NV header preceded the DER.
	Header bool
	// Padding counts the bytes after the DER that were cut off (the rest
	// of a fixed-size NV index: 0xFF on ST33, 0x00 or others elsewhere).
	Padding int
	// Cert is the parsed certificate; nil with ParseErr when Go's X.509
	// parser rejects it.
	Cert     *x509.Certificate
	ParseErr error
}

// certifies reports whether the certificate's public key is pub.
func (c *EKCertificate) certifies(pub crypto.PublicKey) bool {
	if c.Cert == nil || pub == nil {
		return false
	}
	k, ok := c.Cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}

// ParseEKCertificate reads one EK certificate from the bytes of an NV index
// or a file: PEM, DER, or DER after a TCG PC-Client header and/or followed
// by padding. An error means no certificate could be found in raw at all;
// a certificate Go cannot parse comes back with ParseErr set.
func ParseEKCertificate(source string, raw []byte) (*EKCertificate, error) {
	if blk, _ := pem.Decode(raw); blk != nil && blk.Type == "CERTIFICATE" {
		raw = blk.Bytes
	}
	der, header, err := unwrapEKCert(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	c := &EKCertificate{Source: source, DER: der, Header: header, Padding: len(raw) - len(der)}
	if header {
		c.Padding -= headerLen(raw)
	}
	c.Cert, c.ParseErr = x509.ParseCertificate(der)
	return c, nil
}

// headerLen is the length of the TCG header at the start of raw (5 or 7).
func headerLen(raw []byte) int {
	if len(raw) >= 7 && raw[5] == 0x10 && raw[6] == 0x02 {
		return 7
	}
	return 5
}

// UnwrapEKCert returns the DER certificate inside the contents of an EK
// certificate NV index: an optional TCG PC-Client header (10 01 00, a
// big-endian uint16 length, then usually the full-certificate tag 10 02
// counted in that length) is removed and trailing padding is cut off at the
// DER SEQUENCE's own encoded length. It does not parse the certificate.
func UnwrapEKCert(raw []byte) ([]byte, error) {
	der, _, err := unwrapEKCert(raw)
	return der, err
}

func unwrapEKCert(raw []byte) (der []byte, header bool, err error) {
	b := raw
	if len(b) >= 5 && b[0] == 0x10 && b[1] == 0x01 && b[2] == 0x00 {
		n := int(b[3])<<8 | int(b[4])
		if n > len(b)-5 {
			return nil, false, fmt.Errorf("TCG header announces %d bytes, %d present", n, len(b)-5)
		}
		b = b[5 : 5+n]
		if len(b) >= 2 && b[0] == 0x10 && b[1] == 0x02 {
			b = b[2:]
		}
		header = true
	}
	n, err := derLength(b)
	if err != nil {
		return nil, false, err
	}
	return b[:n:n], header, nil
}

// derLength returns the total length (header and contents) of the DER
// SEQUENCE at the start of b.
func derLength(b []byte) (int, error) {
	if len(b) < 2 || b[0] != 0x30 {
		return 0, errors.New("not a DER certificate (no SEQUENCE)")
	}
	l := int(b[1])
	hdr := 2
	if l >= 0x80 {
		nb := l & 0x7f
		if nb == 0 || nb > 3 || len(b) < 2+nb {
			return 0, errors.New("malformed DER length")
		}
		l = 0
		for _, c := range b[2 : 2+nb] {
			l = l<<8 | int(c)
		}
		if l < 0x80 || (nb > 1 && b[2] == 0) {
			return 0, errors.New("non-minimal DER length")
		}
		hdr += nb
	}
	if hdr+l > len(b) {
		return 0, fmt.Errorf("DER certificate truncated: %d bytes announced, %d present", hdr+l, len(b))
	}
	return hdr + l, nil
}

// ReadEKCert returns the DER EK certificate for alg from the first of its
// standard indices (low range, then high range) that holds one, unwrapped
// from a TCG PC-Client header and cut at its encoded length. No certificate
// at any of them wraps ErrNoEKCert. FindEKCert is what enrollment uses: it
// picks the certificate by the key it certifies, not by index.
func (t *TPM) ReadEKCert(alg Alg) ([]byte, error) {
	idx, err := ekCertIndices(alg)
	if err != nil {
		return nil, err
	}
	for _, i := range idx {
		raw, err := t.NVRead(i)
		if errors.Is(err, ErrHandleEmpty) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading EK certificate from NV %#x: %w", i, err)
		}
		der, err := UnwrapEKCert(raw)
		if err != nil {
			return nil, fmt.Errorf("EK certificate in NV %#x: %w", i, err)
		}
		return der, nil
	}
	return nil, fmt.Errorf("%s EK certificate (NV %#x): %w", alg, idx, ErrNoEKCert)
}

// ReadEKCertificates reads every EK certificate the TPM carries, in
// EKCertSlots order. An index holding no certificate at all (erased NV)
// is reported as an error naming it; an undefined or unwritten one is
// skipped.
func (t *TPM) ReadEKCertificates() ([]*EKCertificate, error) {
	defined, err := t.handles(tpm2.TPMHTNVIndex)
	if err != nil {
		return nil, err
	}
	has := map[uint32]bool{}
	for _, h := range defined {
		has[uint32(h)] = true
	}
	var out []*EKCertificate
	for _, s := range EKCertSlots {
		if !has[s.Index] {
			continue
		}
		raw, err := t.NVRead(s.Index)
		if errors.Is(err, ErrHandleEmpty) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading EK certificate from NV %#x: %w", s.Index, err)
		}
		c, err := ParseEKCertificate(fmt.Sprintf("NV %#08x", s.Index), raw)
		if err != nil {
			return nil, err
		}
		c.Index = s.Index
		out = append(out, c)
	}
	return out, nil
}

// ReadEKChain reads the vendor intermediates stored in the EK certificate
// chain range (0x01C00100-0x01C001FF): the contents of every defined index,
// concatenated in index order, as a sequence of DER certificates with any
// padding after the last. They are untrusted: chain building uses them only
// to reach a configured vendor root, so what does not parse is left out
// (the chain then reports the issuer it lacks); only TPM errors are errors.
func (t *TPM) ReadEKChain() ([]*x509.Certificate, error) {
	defined, err := t.handles(tpm2.TPMHTNVIndex)
	if err != nil {
		return nil, err
	}
	var all []byte
	for _, h := range defined {
		if uint32(h) < ekChainFirst || uint32(h) > ekChainLast {
			continue
		}
		raw, err := t.NVRead(uint32(h))
		if errors.Is(err, ErrHandleEmpty) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading EK chain NV %#x: %w", uint32(h), err)
		}
		all = append(all, raw...)
	}
	certs, _ := parseDERSequence(all)
	return certs, nil
}

// parseDERSequence parses concatenated DER certificates, stopping at
// trailing padding (a run of one byte value, 0x00 or 0xFF).
func parseDERSequence(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for len(b) > 0 {
		if isPadding(b) {
			break
		}
		n, err := derLength(b)
		if err != nil {
			return out, err
		}
		c, err := x509.ParseCertificate(b[:n])
		if err != nil {
			return out, err
		}
		out = append(out, c)
		b = b[n:]
	}
	return out, nil
}

func isPadding(b []byte) bool {
	if b[0] != 0x00 && b[0] != 0xFF {
		return false
	}
	return len(bytes.Trim(b, string(b[:1]))) == 0
}

// EKCertFileName is the name an EK certificate has in the offline folder
// tpm.ek_cert_dir: the lower-case hex SHA-256 of the EK's DER
// SubjectPublicKeyInfo (what `openssl pkey -pubin -outform DER` writes),
// optionally followed by .der, .pem, .crt or .cer.
func EKCertFileName(ek crypto.PublicKey) (string, error) {
	spki, err := x509.MarshalPKIXPublicKey(ek)
	if err != nil {
		return "", fmt.Errorf("encoding the EK public key: %w", err)
	}
	s := sha256.Sum256(spki)
	return hex.EncodeToString(s[:]), nil
}

// offlineEKCert looks the EK's certificate up in dir; nil, nil when there
// is none. Nothing is fetched from anywhere.
func offlineEKCert(dir string, ek crypto.PublicKey) (*EKCertificate, error) {
	name, err := EKCertFileName(ek)
	if err != nil {
		return nil, err
	}
	for _, ext := range []string{"", ".der", ".pem", ".crt", ".cer"} {
		p := filepath.Join(dir, name+ext)
		raw, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("offline EK certificate: %w", err)
		}
		return ParseEKCertificate(p, raw)
	}
	return nil, nil
}

// FindEKCert returns the EK certificate that certifies ek: among every EK
// certificate in NV (any index, low or high range), else from the offline
// folder dir (tpm.ek_cert_dir; "" for none), plus the vendor intermediates
// stored in NV. A TPM holding certificates for other keys only, or a file
// in dir for another key, is ErrUntrustedEKCert naming them; no
// certificate anywhere is ErrNoEKCert.
func (t *TPM) FindEKCert(ek crypto.PublicKey, dir string) (*EKCertificate, []*x509.Certificate, error) {
	certs, err := t.ReadEKCertificates()
	if err != nil {
		return nil, nil, err
	}
	chain, err := t.ReadEKChain()
	if err != nil {
		return nil, nil, err
	}
	var others []string
	for _, c := range certs {
		if c.certifies(ek) {
			return c, chain, nil
		}
		if c.ParseErr != nil {
			others = append(others, fmt.Sprintf("%s (unparsable: %v)", c.Source, c.ParseErr))
		} else {
			others = append(others, c.Source)
		}
	}
	if dir != "" {
		c, err := offlineEKCert(dir, ek)
		if err != nil {
			return nil, nil, err
		}
		if c != nil {
			if !c.certifies(ek) {
				return nil, nil, fmt.Errorf("%w: %s is named after this EK but certifies another key", ErrUntrustedEKCert, c.Source)
			}
			return c, chain, nil
		}
	}
	if len(others) > 0 {
		return nil, nil, fmt.Errorf("%w: none of the EK certificates in NV (%s) certifies this EK", ErrUntrustedEKCert, strings.Join(others, ", "))
	}
	where := "in NV"
	if dir != "" {
		name, _ := EKCertFileName(ek)
		where = fmt.Sprintf("neither in NV nor in %s (looked for %s[.der|.pem|.crt|.cer])", dir, name)
	}
	return nil, nil, fmt.Errorf("no certificate for this EK %s: %w", where, ErrNoEKCert)
}

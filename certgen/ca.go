package certgen

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"strings"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/factory-id/station/internal/hint"
)

// CAOptions describe a CA certificate to make.
type CAOptions struct {
	// Subject is the CA's common name.
	Subject string
	// Validity is how long the CA is valid from Now.
	Validity time.Duration
	// PathLen is the basicConstraints pathLenConstraint: how many CA levels
	// may follow below this one; -1 leaves it unlimited (a root's default).
	PathLen int
	// NameConstraints are "dns:D", "email:E", "uri:D" or "ip:CIDR" (permitted
	// subtrees), each prefixed with "!" to exclude the subtree instead.
	NameConstraints []string
	// Now is the issuance time (time.Now() when zero).
	Now time.Time
	// ClipToIssuer ends an intermediate at its issuer's NotAfter when the
	// validity asked would run past it (else that is refused).
	ClipToIssuer bool
}

// backdate is how far NotBefore is set before now, so a unit whose clock
// lags a little still accepts a fresh certificate.
const backdate = 5 * time.Minute

func (o *CAOptions) check() error {
	if strings.TrimSpace(o.Subject) == "" {
		return errors.New("the CA needs a subject (common name)")
	}
	if o.Validity <= 0 {
		return errors.New("validity must be positive")
	}
	if o.PathLen < -1 {
		return fmt.Errorf("path length %d: want -1 (unlimited) or >= 0", o.PathLen)
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	return nil
}

func (o *CAOptions) template(pub crypto.PublicKey) (*x509.Certificate, error) {
	if err := checkPublicKey(pub); err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	serial, err := RandomSerial()
	if err != nil {
		return nil, err
	}
	ski, err := x509util.GenerateSubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	c := &x509util.Certificate{
		Subject:          x509util.Subject{CommonName: o.Subject},
		SerialNumber:     x509util.SerialNumber{Int: serial},
		NotBefore:        o.Now.Add(-backdate).UTC().Truncate(time.Second),
		NotAfter:         o.Now.Add(o.Validity).UTC().Truncate(time.Second),
		KeyUsage:         x509util.KeyUsage(x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature),
		SubjectKeyID:     x509util.SubjectKeyID(ski),
		BasicConstraints: &x509util.BasicConstraints{IsCA: true, MaxPathLen: o.PathLen},
		PublicKey:        pub,
	}
	if len(o.NameConstraints) > 0 {
		nc, err := ParseNameConstraints(o.NameConstraints)
		if err != nil {
			return nil, err
		}
		c.NameConstraints = nc
	}
	return c.GetCertificate(), nil
}

// ParseNameConstraints turns "dns:example.com", "!uri:.bad.example",
// "email:example.com", "ip:10.0.0.0/8" into a critical name constraints
// extension.
func ParseNameConstraints(list []string) (*x509util.NameConstraints, error) {
	nc := &x509util.NameConstraints{Critical: true}
	for _, s := range list {
		excl := strings.HasPrefix(s, "!")
		kind, val, ok := strings.Cut(strings.TrimPrefix(s, "!"), ":")
		if !ok || val == "" {
			return nil, fmt.Errorf("name constraint %q: want dns:, email:, uri: or ip: followed by a value", s)
		}
		switch kind {
		case "dns":
			if excl {
				nc.ExcludedDNSDomains = append(nc.ExcludedDNSDomains, val)
			} else {
				nc.PermittedDNSDomains = append(nc.PermittedDNSDomains, val)
			}
		case "email":
			if excl {
				nc.ExcludedEmailAddresses = append(nc.ExcludedEmailAddresses, val)
			} else {
				nc.PermittedEmailAddresses = append(nc.PermittedEmailAddresses, val)
			}
		case "uri":
			if excl {
				nc.ExcludedURIDomains = append(nc.ExcludedURIDomains, val)
			} else {
				nc.PermittedURIDomains = append(nc.PermittedURIDomains, val)
			}
		case "ip":
			_, n, err := net.ParseCIDR(val)
			if err != nil {
				return nil, fmt.Errorf("name constraint %q: %w", s, err)
			}
			if excl {
				nc.ExcludedIPRanges = append(nc.ExcludedIPRanges, n)
			} else {
				nc.PermittedIPRanges = append(nc.PermittedIPRanges, n)
			}
		default:
			return nil, fmt.Errorf("name constraint %q: want one of dns, email, uri, ip before the colon", s)
		}
	}
	return nc, nil
}

// NewRoot makes a self-signed root CA certificate for signer's key.
func NewRoot(signer crypto.Signer, o CAOptions) (*x509.Certificate, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	tmpl, err := o.template(signer.Public())
	if err != nil {
		return nil, err
	}
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	cert, err := x509util.CreateCertificate(tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("signing root: %w", err)
	}
	return cert, nil
}

// CheckCA verifies that c may issue certificates: a CA (basicConstraints)
// with the keyCertSign usage.
func CheckCA(c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return issuerf("%q is not a CA certificate (basicConstraints CA:TRUE missing)", c.Subject.CommonName)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return issuerf("%q lacks the keyCertSign key usage", c.Subject.CommonName)
	}
	return nil
}

// NewIntermediate makes a CA certificate for pub signed by the parent CA
// (a root or another intermediate). The parent must be a CA with
// keyCertSign whose path length allows one more level, signer must hold its
// key, and the new CA must not outlive it.
func NewIntermediate(parent *x509.Certificate, signer crypto.Signer, pub crypto.PublicKey, o CAOptions) (*x509.Certificate, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := CheckCA(parent); err != nil {
		return nil, err
	}
	if err := checkKeyMatches(signer, parent.PublicKey); err != nil {
		return nil, issuerf("issuer key for %q: %v", parent.Subject.CommonName, err)
	}
	if o.Now.Before(parent.NotBefore) || o.Now.After(parent.NotAfter) {
		return nil, issuerf("issuer %q is not valid now (valid %s to %s)", parent.Subject.CommonName,
			parent.NotBefore.Format(time.RFC3339), parent.NotAfter.Format(time.RFC3339))
	}
	switch {
	case parent.MaxPathLen == 0 && parent.MaxPathLenZero:
		return nil, policyf("issuer %q has path length 0: it may issue only end-entity certificates", parent.Subject.CommonName)
	case parent.MaxPathLen > 0 && (o.PathLen < 0 || o.PathLen >= parent.MaxPathLen):
		return nil, hint.Wrap(policyf("issuer %q allows %d CA level(s) below it, so this CA needs a path length below %d",
			parent.Subject.CommonName, parent.MaxPathLen, parent.MaxPathLen), fmt.Sprintf("pass --path-len %d or less", parent.MaxPathLen-1))
	}
	tmpl, err := o.template(pub)
	if err != nil {
		return nil, err
	}
	if tmpl.NotAfter.After(parent.NotAfter) && o.ClipToIssuer {
		tmpl.NotAfter = parent.NotAfter
	}
	if tmpl.NotAfter.After(parent.NotAfter) {
		return nil, hint.Wrap(policyf("the new CA would be valid until %s, past its issuer's end (%s)",
			tmpl.NotAfter.Format(time.RFC3339), parent.NotAfter.Format(time.RFC3339)),
			fmt.Sprintf("ask for a validity of at most %s", parent.NotAfter.Sub(o.Now).Truncate(time.Hour)))
	}
	if tmpl.NotBefore.Before(parent.NotBefore) {
		tmpl.NotBefore = parent.NotBefore
	}
	tmpl.AuthorityKeyId = parent.SubjectKeyId
	cert, err := x509util.CreateCertificate(tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("signing intermediate: %w", err)
	}
	if err := cert.CheckSignatureFrom(parent); err != nil {
		return nil, fmt.Errorf("new intermediate does not verify under its issuer: %w", err)
	}
	return cert, nil
}

// RandomSerial returns a positive random serial number of 128 bits (RFC
// 5280 allows up to 20 octets; CA/B asks for at least 64 random bits).
func RandomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("serial number: %w", err)
		}
		b[0] &= 0x7f // keep the DER encoding at 16 octets
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialHex is the form a certificate serial takes in the station database:
// lowercase hex without leading zeros.
func SerialHex(c *x509.Certificate) string { return c.SerialNumber.Text(16) }

// Fingerprint is the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

// EncodeCertificates returns the PEM of certs, in order.
func EncodeCertificates(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// WriteCertificates writes certs as PEM to path (0644), refusing to replace
// an existing file unless overwrite is set.
func WriteCertificates(path string, overwrite bool, certs ...*x509.Certificate) error {
	return writeFile(path, EncodeCertificates(certs...), 0o644, overwrite)
}

// ParseCertificates reads every CERTIFICATE block of a PEM bundle; data
// without any block gives an empty list, anything else in it is an error.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(data)) != 0 {
		return nil, errors.New("trailing data that is not PEM")
	}
	return out, nil
}

// ReadCertificates reads a PEM bundle file (possibly empty).
func ReadCertificates(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ReadCertificate reads a file holding exactly one PEM certificate.
func ReadCertificate(path string) (*x509.Certificate, error) {
	certs, err := ReadCertificates(path)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%s: want one certificate, found %d", path, len(certs))
	}
	return certs[0], nil
}

package tpmops

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"
)

var oidExtSAN = asn1.ObjectIdentifier{2, 5, 29, 17}

// VerifyEKCert parses the DER EK certificate and checks that it chains to
// roots (through intermediates, optional) at now, with any extended key
// usage (EK certificates carry no web-PKI EKU), and that its public key is
// ek. The TCG profile's critical subjectAltName holding only a
// directoryName (TPM manufacturer, model, version) or otherName is parsed
// and accepted; any other unhandled critical extension is refused. Every
// failure wraps ErrUntrustedEKCert.
func VerifyEKCert(der []byte, ek crypto.PublicKey, roots, intermediates *x509.CertPool, now time.Time) (*x509.Certificate, error) {
	fail := func(format string, a ...any) (*x509.Certificate, error) {
		return nil, fmt.Errorf("%w: %s", ErrUntrustedEKCert, fmt.Sprintf(format, a...))
	}
	if roots == nil {
		// A nil pool would make x509 use the system's web roots.
		return fail("no TPM vendor roots configured")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fail("parsing: %v", err)
	}
	if i := slices.IndexFunc(cert.UnhandledCriticalExtensions, func(o asn1.ObjectIdentifier) bool { return o.Equal(oidExtSAN) }); i >= 0 {
		for _, e := range cert.Extensions {
			if e.Id.Equal(oidExtSAN) {
				if err := checkTCGSAN(e.Value); err != nil {
					return fail("critical subjectAltName: %v", err)
				}
			}
		}
		cert.UnhandledCriticalExtensions = slices.Delete(slices.Clone(cert.UnhandledCriticalExtensions), i, i+1)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return fail("%v", err)
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || ek == nil || !pub.Equal(ek) {
		return fail("its public key is not this TPM's EK")
	}
	return cert, nil
}

// checkTCGSAN accepts a SubjectAltName whose entries are all directoryName
// [4] or otherName [0], both constructed (what the TCG EK credential profile puts there).
func checkTCGSAN(v []byte) error {
	var names []asn1.RawValue
	rest, err := asn1.Unmarshal(v, &names)
	if err != nil || len(rest) != 0 {
		return errors.New("malformed")
	}
	if len(names) == 0 {
		return errors.New("empty")
	}
	for _, n := range names {
		if n.Class != asn1.ClassContextSpecific || !n.IsCompound || (n.Tag != 4 && n.Tag != 0) {
			return fmt.Errorf("unexpected GeneralName (class %d, tag %d)", n.Class, n.Tag)
		}
	}
	return nil
}

// LoadVendorRoots reads TPM vendor CA certificates from a PEM file or from a
// folder (recursively) of PEM or DER files. Self-signed certificates become
// roots. The other certificates are intermediates, except those whose issuer
// is not in the set: they can chain to nothing else, and the operator who put
// them in the trusted folder trusts them, so they are anchors too.
// A file holding no certificate is an error naming it.
func LoadVendorRoots(path string) (roots, intermediates *x509.CertPool, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, fmt.Errorf("TPM vendor roots: %w", err)
	}
	var files []string
	if fi.IsDir() {
		err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() && !isDocFile(d.Name()) {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("TPM vendor roots: %w", err)
		}
	} else {
		files = []string{path}
	}
	var certs []*x509.Certificate
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("TPM vendor roots: %w", err)
		}
		cs, err := parseCerts(b)
		if err != nil {
			return nil, nil, fmt.Errorf("TPM vendor roots: %s: %w", f, err)
		}
		certs = append(certs, cs...)
	}
	if len(certs) == 0 {
		return nil, nil, fmt.Errorf("TPM vendor roots: no certificate in %s", path)
	}
	roots, intermediates = x509.NewCertPool(), x509.NewCertPool()
	for _, c := range certs {
		if selfSigned(c) || !hasIssuerIn(c, certs) {
			roots.AddCert(c)
		} else {
			intermediates.AddCert(c)
		}
	}
	return roots, intermediates, nil
}

func isDocFile(name string) bool {
	switch filepath.Ext(name) {
	case ".md", ".txt":
		return true
	}
	return name[0] == '.'
}

func parseCerts(b []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{c}, nil
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

func hasIssuerIn(c *x509.Certificate, set []*x509.Certificate) bool {
	for _, p := range set {
		if p != c && bytes.Equal(p.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(p) == nil {
			return true
		}
	}
	return false
}

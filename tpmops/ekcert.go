package tpmops

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
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
// the vendor roots at now (through the untrusted intermediates, optional:
// those a TPM stores in NV) and that its public key is ek. The TCG
// profile's critical subjectAltName holding only a directoryName (TPM
// manufacturer, model, version) or otherName is parsed and accepted; any
// other unhandled critical extension is refused. Every failure wraps
// ErrUntrustedEKCert (a *ChainError when the chain is what fails).
func VerifyEKCert(der []byte, ek crypto.PublicKey, roots *VendorRoots, intermediates []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, &ChainError{Reason: fmt.Sprintf("parsing: %v", err)}
	}
	if _, err := roots.Chain(cert, intermediates, now); err != nil {
		return nil, err
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || ek == nil || !pub.Equal(ek) {
		return nil, &ChainError{Reason: "its public key is not this TPM's EK"}
	}
	return cert, nil
}

// ChainError says why an EK certificate is not trusted. It wraps
// ErrUntrustedEKCert.
type ChainError struct {
	Reason string
	// MissingIssuer is set when the chain stops at a certificate whose
	// issuer is neither in the roots folder nor among the intermediates:
	// that issuer's name and the authority key identifier it is known by.
	MissingIssuer *x509.Certificate // the certificate whose issuer is missing
}

func (e *ChainError) Error() string { return ErrUntrustedEKCert.Error() + ": " + e.Reason }
func (e *ChainError) Unwrap() error { return ErrUntrustedEKCert }

// maxChain bounds chain building (EK, intermediates, anchor).
const maxChain = 8

// Chain builds the chain from cert to a certificate of the roots folder,
// through intermediates (untrusted) where needed, and returns it (cert
// first, the anchor last). Chains are built by signature: a candidate
// issuer is any certificate whose subject is cert's issuer name or whose
// subject key identifier is cert's authority key identifier, and it is
// taken when cert's signature (over its original TBS bytes) verifies under
// its key. Every certificate of the roots folder is an anchor (the
// operator put it there): a chain ends at the first one reached, so an
// intermediate given without its root, a cross-signed root or a re-issued
// root with the same key all anchor their vendor's chips. Each certificate
// of the chain must be valid at now; each issuer must be a CA allowed to
// sign certificates; an intermediate from the TPM with an unknown critical
// extension is refused.
func (v *VendorRoots) Chain(cert *x509.Certificate, intermediates []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	if v == nil || len(v.Certs) == 0 {
		// Never fall back to the system's web roots.
		return nil, &ChainError{Reason: "no TPM vendor roots configured"}
	}
	if now.IsZero() {
		now = time.Now()
	}
	if err := checkEKExtensions(cert); err != nil {
		return nil, &ChainError{Reason: err.Error()}
	}
	if err := validAt(cert, now); err != nil {
		return nil, &ChainError{Reason: "the EK certificate " + err.Error()}
	}
	chain, cerr := v.build(cert, intermediates, now, []*x509.Certificate{cert})
	if cerr != nil {
		return nil, cerr
	}
	return v.extend(chain, now), nil
}

// extend continues a chain that ends at an anchor through the folder's
// own certificates up to a self-signed root, where they link: for the
// report only, trust was settled at the anchor.
func (v *VendorRoots) extend(chain []*x509.Certificate, now time.Time) []*x509.Certificate {
	for len(chain) < maxChain {
		last := chain[len(chain)-1]
		if bytes.Equal(last.RawSubject, last.RawIssuer) {
			return chain
		}
		i := slices.IndexFunc(v.Certs, func(p *x509.Certificate) bool {
			return issuedBy(last, p) && !slices.ContainsFunc(chain, p.Equal) && link(last, p, now) == nil
		})
		if i < 0 {
			return chain
		}
		chain = append(chain, v.Certs[i])
	}
	return chain
}

func (v *VendorRoots) build(c *x509.Certificate, inters []*x509.Certificate, now time.Time, path []*x509.Certificate) ([]*x509.Certificate, *ChainError) {
	if len(path) >= maxChain {
		return nil, &ChainError{Reason: fmt.Sprintf("no anchor within %d certificates", maxChain)}
	}
	var first *ChainError
	keep := func(e *ChainError) {
		if first == nil {
			first = e
		}
	}
	found := false
	for _, p := range v.Certs {
		if !issuedBy(c, p) {
			continue
		}
		found = true
		if err := link(c, p, now); err != nil {
			keep(err)
			continue
		}
		return append(path, p), nil
	}
	for _, p := range inters {
		if !issuedBy(c, p) || slices.ContainsFunc(path, p.Equal) {
			continue
		}
		found = true
		if err := link(c, p, now); err != nil {
			keep(err)
			continue
		}
		if len(p.UnhandledCriticalExtensions) > 0 {
			keep(&ChainError{Reason: fmt.Sprintf("intermediate %q from the TPM has an unknown critical extension", name(p.Subject))})
			continue
		}
		chain, err := v.build(p, inters, now, append(slices.Clip(path), p))
		if err == nil {
			return chain, nil
		}
		keep(err)
	}
	if !found {
		return nil, &ChainError{Reason: fmt.Sprintf("issuer %s not in the roots folder", name(c.Issuer)), MissingIssuer: c}
	}
	return nil, first
}

// issuedBy reports whether p may be c's issuer: by name or by key identifier.
func issuedBy(c, p *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, p.RawSubject) ||
		(len(c.AuthorityKeyId) > 0 && bytes.Equal(c.AuthorityKeyId, p.SubjectKeyId))
}

// link checks that p signed c and is valid at now.
func link(c, p *x509.Certificate, now time.Time) *ChainError {
	if err := c.CheckSignatureFrom(p); err != nil {
		return &ChainError{Reason: fmt.Sprintf("signature of %s by %s does not verify: %v", name(c.Subject), name(p.Subject), err)}
	}
	if err := validAt(p, now); err != nil {
		return &ChainError{Reason: fmt.Sprintf("issuer %s %v", name(p.Subject), err)}
	}
	return nil
}

func validAt(c *x509.Certificate, now time.Time) error {
	switch {
	case now.Before(c.NotBefore):
		return fmt.Errorf("is not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	case now.After(c.NotAfter):
		return fmt.Errorf("expired on %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// name is a certificate name for messages: its CN, else the whole name
// (EK certificates have an empty subject).
func name(n pkix.Name) string {
	if n.CommonName != "" {
		return n.CommonName
	}
	if s := n.String(); s != "" {
		return s
	}
	return "(empty name)"
}

// checkEKExtensions accepts the TCG profile's critical SAN and refuses any
// other unhandled critical extension.
func checkEKExtensions(cert *x509.Certificate) error {
	for _, o := range cert.UnhandledCriticalExtensions {
		if !o.Equal(oidExtSAN) {
			return fmt.Errorf("unknown critical extension %v", o)
		}
		for _, e := range cert.Extensions {
			if e.Id.Equal(oidExtSAN) {
				if err := checkTCGSAN(e.Value); err != nil {
					return fmt.Errorf("critical subjectAltName: %v", err)
				}
			}
		}
	}
	return nil
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

// VendorRoots is the trusted folder of TPM vendor CA certificates
// (tpm.vendor_roots): roots and intermediates alike, each an anchor.
type VendorRoots struct {
	Path string
	// Certs are the distinct certificates, in file order; Files[i] is
	// where Certs[i] was read.
	Certs []*x509.Certificate
	Files []string
	// Skipped are certificates Go's X.509 parser rejects (for example
	// STMicro's original intermediates with a non-minimal serial): they
	// anchor nothing, and `station ek check` names them.
	Skipped []SkippedCert
}

// SkippedCert is a certificate of the roots folder that could not be used.
type SkippedCert struct {
	File string
	Err  error
}

// LoadVendorRoots reads TPM vendor CA certificates from a PEM file or from a
// folder (recursively) of PEM or DER files; .md and .txt files and dot
// files are ignored. Every certificate is an anchor (see Chain). A file
// holding no certificate at all is an error naming it; a certificate
// Go cannot parse is listed in Skipped.
func LoadVendorRoots(path string) (*VendorRoots, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("TPM vendor roots: %w", err)
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
			return nil, fmt.Errorf("TPM vendor roots: %w", err)
		}
	} else {
		files = []string{path}
	}
	v := &VendorRoots{Path: path}
	seen := map[[32]byte]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("TPM vendor roots: %w", err)
		}
		ders, err := certBlocks(b)
		if err != nil {
			return nil, fmt.Errorf("TPM vendor roots: %s: %w", f, err)
		}
		for _, der := range ders {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				v.Skipped = append(v.Skipped, SkippedCert{File: f, Err: err})
				continue
			}
			if fp := sha256.Sum256(c.Raw); !seen[fp] {
				seen[fp] = true
				v.Certs = append(v.Certs, c)
				v.Files = append(v.Files, f)
			}
		}
	}
	if len(v.Certs) == 0 {
		return nil, fmt.Errorf("TPM vendor roots: no usable certificate in %s", path)
	}
	return v, nil
}

func isDocFile(name string) bool {
	switch filepath.Ext(name) {
	case ".md", ".txt":
		return true
	}
	return name[0] == '.'
}

// certBlocks returns the DER of every certificate in a PEM or DER file.
func certBlocks(b []byte) ([][]byte, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		n, err := derLength(b)
		if err != nil {
			return nil, fmt.Errorf("no certificate: %w", err)
		}
		return [][]byte{b[:n]}, nil
	}
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

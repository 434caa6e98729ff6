package certgen

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"time"

	"github.com/factory-id/station/internal/hint"
)

// Issuer is the line intermediate that signs device certificates, with its
// key (in software or in a token) and the certificates up to the pinned root.
type Issuer struct {
	Cert   *x509.Certificate
	Signer crypto.Signer
	// Chain holds the intermediates above Cert, up to (not including) Root.
	Chain []*x509.Certificate
	// Root is the pinned trust anchor.
	Root *x509.Certificate

	key *Key
}

// OpenIssuer loads the line intermediate. keyRef is the path of an encrypted
// PEM file (its password comes from password, called only if needed) or a
// kms URI (pkcs11:..., softkms:...). It checks that the issuer is a CA with
// keyCertSign, that it and the chain verify up to the root now, and that the
// key is the certificate's. Configuration and policy failures wrap ErrIssuer;
// an unreachable token wraps ErrHSM; a wrong or missing password ErrPassword.
// chainPath may be "" when the issuer is signed by the root itself.
func OpenIssuer(certPath, keyRef, chainPath, rootPath string, password func() ([]byte, error)) (*Issuer, error) {
	is, err := LoadIssuer(certPath, chainPath, rootPath)
	if err != nil {
		return nil, err
	}
	key, err := OpenKey(keyRef, password)
	if err != nil {
		if errors.Is(err, ErrHSM) || errors.Is(err, ErrPassword) || errors.Is(err, ErrIssuer) || errors.Is(err, ErrKeyURI) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrIssuer, err)
	}
	if err := checkKeyMatches(key.Signer, is.Cert.PublicKey); err != nil {
		key.Close()
		return nil, issuerf("key %s for %q: %v", key.Ref, is.Cert.Subject.CommonName, err)
	}
	is.Signer, is.key = key.Signer, key
	return is, nil
}

// LoadIssuer loads the line intermediate's certificates without its key,
// with OpenIssuer's checks of the chain: for a process whose leaves another
// process signs (station agent). Its Issue refuses; VerifyLeaf checks
// what the signer returned.
func LoadIssuer(certPath, chainPath, rootPath string) (*Issuer, error) {
	cert, err := ReadCertificate(certPath)
	if err != nil {
		return nil, issuerf("issuer certificate: %v", err)
	}
	var chain []*x509.Certificate
	if chainPath != "" {
		if chain, err = ReadCertificates(chainPath); err != nil {
			return nil, issuerf("issuer chain: %v", err)
		}
	}
	root, err := ReadCertificate(rootPath)
	if err != nil {
		return nil, issuerf("root: %v", err)
	}
	if err := checkRoot(root); err != nil {
		return nil, err
	}
	// The chain file holds what is above the issuer: drop a root or the
	// issuer itself if someone bundled them in.
	var above []*x509.Certificate
	for _, c := range chain {
		if !c.Equal(root) && !c.Equal(cert) {
			above = append(above, c)
		}
	}
	is := &Issuer{Cert: cert, Chain: above, Root: root}
	if err := is.checkChain(time.Now()); err != nil {
		return nil, err
	}
	if len(cert.SubjectKeyId) == 0 {
		return nil, issuerf("%q has no subject key identifier, so its leaves could carry no authority key identifier", cert.Subject.CommonName)
	}
	return is, nil
}

// VerifyLeaf checks a device certificate signed elsewhere (by station
// agent) as Issue checks its own: it verifies through this issuer up to the
// root for clientAuth at now, and its key is the CSR's.
func (is *Issuer) VerifyLeaf(leaf *x509.Certificate, csr *x509.CertificateRequest, now time.Time) error {
	if _, err := is.verify(leaf, now, x509.ExtKeyUsageClientAuth); err != nil {
		return issuerf("the certificate for %s does not verify through %q up to the root: %v", leaf.Subject.CommonName, is.Cert.Subject.CommonName, err)
	}
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(csr.PublicKey) {
		return issuerf("the certificate for %s does not certify the requested key", leaf.Subject.CommonName)
	}
	return nil
}

// NewIssuer builds an Issuer from parts already in memory (tests, the demo)
// and applies the same checks as OpenIssuer.
func NewIssuer(cert *x509.Certificate, signer crypto.Signer, chain []*x509.Certificate, root *x509.Certificate) (*Issuer, error) {
	if err := checkRoot(root); err != nil {
		return nil, err
	}
	is := &Issuer{Cert: cert, Signer: signer, Chain: chain, Root: root}
	if err := is.checkChain(time.Now()); err != nil {
		return nil, err
	}
	if err := checkKeyMatches(signer, cert.PublicKey); err != nil {
		return nil, issuerf("key for %q: %v", cert.Subject.CommonName, err)
	}
	return is, nil
}

// InHSM reports whether the issuing key is held by a PKCS#11 token.
func (is *Issuer) InHSM() bool { return is.key != nil && is.key.InHSM }

// Close releases the issuer's key store.
func (is *Issuer) Close() error {
	if is == nil {
		return nil
	}
	return is.key.Close()
}

func checkRoot(root *x509.Certificate) error {
	if err := CheckCA(root); err != nil {
		return fmt.Errorf("pinned root: %w", err)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return issuerf("pinned root %q is not self-signed: %v", root.Subject.CommonName, err)
	}
	return nil
}

// checkChain requires the issuer to be a CA with keyCertSign that verifies
// through Chain up to Root at time t.
func (is *Issuer) checkChain(t time.Time) error {
	if err := CheckCA(is.Cert); err != nil {
		return err
	}
	if _, err := is.verify(is.Cert, t, x509.ExtKeyUsageAny); err != nil {
		return hint.Wrap(issuerf("issuer %q does not verify up to the pinned root %q at %s: %v",
			is.Cert.Subject.CommonName, is.Root.Subject.CommonName, t.UTC().Format(time.RFC3339), err),
			"check pki.issuer_cert, pki.chain and pki.root: the chain file holds the intermediates between the issuer and the root")
	}
	return nil
}

func (is *Issuer) verify(c *x509.Certificate, t time.Time, usage x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AddCert(is.Root)
	inter := x509.NewCertPool()
	for _, x := range is.Chain {
		inter.AddCert(x)
	}
	if c != is.Cert {
		inter.AddCert(is.Cert)
	}
	return c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: t, KeyUsages: []x509.ExtKeyUsage{usage}})
}

// NewCSR builds a certificate request for cn signed by signer (in
// production the unit's TPM-resident device key).
func NewCSR(signer crypto.Signer, cn string) (*x509.CertificateRequest, error) {
	if cn == "" {
		return nil, errors.New("CSR needs a common name")
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, signer)
	if err != nil {
		return nil, fmt.Errorf("signing CSR: %w", err)
	}
	return x509.ParseCertificateRequest(der)
}

// VerifyChain checks that cert is a CA with keyCertSign that verifies
// through chain up to the self-signed root at time t (failures wrap
// ErrIssuer).
func VerifyChain(cert *x509.Certificate, chain []*x509.Certificate, root *x509.Certificate, t time.Time) error {
	if err := checkRoot(root); err != nil {
		return err
	}
	is := &Issuer{Cert: cert, Chain: chain, Root: root}
	return is.checkChain(t)
}

// VerifyLeaf checks that a device certificate verifies for clientAuth
// through chain (the issuer first) up to the pinned root at now and at
// now+warehouse: a unit leaves the shelf and first connects at any time in
// between, and its certificate must still chain then. The error names the
// first instant at which it does not.
func VerifyLeaf(leaf *x509.Certificate, chain []*x509.Certificate, root *x509.Certificate, now time.Time, warehouse time.Duration) error {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	for _, at := range []time.Time{now, now.Add(warehouse)} {
		if _, err := leaf.Verify(x509.VerifyOptions{
			Roots: roots, Intermediates: inter, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return fmt.Errorf("does not chain to the pinned root at %s: %v", at.UTC().Format(time.RFC3339), err)
		}
	}
	return nil
}

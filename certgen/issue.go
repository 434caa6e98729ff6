package certgen

import (
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.step.sm/crypto/x509util"

	"github.com/factory-id/station/enroll/regid"
	"github.com/factory-id/station/internal/hint"
)

// DefaultSANURI binds a leaf to its unit's serial number.
const DefaultSANURI = "urn:station:serial:{serial}"

// serialTries bounds how many fresh random serials Issue draws when the
// station database already holds one.
const serialTries = 8

// LeafRequest is one device certificate to issue.
type LeafRequest struct {
	CSR            *x509.CertificateRequest // its signature is checked
	RegistrationID string                   // becomes the subject CN; DPS rules, at most 64 characters
	UnitSerial     string
	SANURI         string        // template, e.g. "urn:station:serial:{serial}" ("" = DefaultSANURI)
	Validity       time.Duration // field life
	Warehouse      time.Duration // time on the shelf before the field life starts
	Now            time.Time     // zero: time.Now()
	// SerialTaken reports whether a certificate serial (SerialHex form) is
	// already in the station database; nil skips the check.
	SerialTaken func(hexSerial string) bool
	// MaxIssued is the per-line issuance ceiling (pki.max_issued, 0: none);
	// Issued is how many leaves this station already issued from this issuer.
	MaxIssued int
	Issued    int
}

// ExpandSANURI fills a SAN URI template ({serial}, {registration_id}) and
// checks the result is an absolute URI naming the unit.
func ExpandSANURI(tmpl, serial, registrationID string) (*url.URL, error) {
	if tmpl == "" {
		tmpl = DefaultSANURI
	}
	if !strings.Contains(tmpl, "{serial}") {
		return nil, policyf("SAN URI template %q has no {serial}: the certificate would not be bound to its unit; use e.g. %s", tmpl, DefaultSANURI)
	}
	s := strings.NewReplacer("{serial}", url.PathEscape(serial), "{registration_id}", url.PathEscape(registrationID)).Replace(tmpl)
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" {
		return nil, policyf("SAN URI %q is not an absolute URI (template %q)", s, tmpl)
	}
	return u, nil
}

// ErrShortLived means the issuing chain expires before the warehouse
// period ends: every leaf would be refused, so it is a configuration
// problem (replace the intermediate or shorten pki.warehouse), found before
// any unit is touched. It wraps ErrPolicy.
var ErrShortLived = fmt.Errorf("%w: the issuing chain expires before the warehouse period ends", ErrPolicy)

// CheckLifetime returns the chain's first expiry (the issuer, the
// intermediates above it, the root), which bounds every leaf, and an error
// wrapping ErrShortLived when it comes before now+warehouse.
func (is *Issuer) CheckLifetime(now time.Time, warehouse time.Duration) (time.Time, error) {
	end, endBy := is.Cert.NotAfter, is.Cert
	for _, c := range append(append([]*x509.Certificate{}, is.Chain...), is.Root) {
		if c != nil && c.NotAfter.Before(end) {
			end, endBy = c.NotAfter, c
		}
	}
	shelfEnd := now.Add(warehouse)
	if end.Before(shelfEnd) {
		return end, hint.Wrap(fmt.Errorf("%w: %q expires %s, before the warehouse period ends (%s): units would leave the shelf with a dead certificate",
			ErrShortLived, endBy.Subject.CommonName, end.UTC().Format(time.RFC3339), shelfEnd.UTC().Format(time.RFC3339)),
			"issue a new line intermediate (station ca issue-intermediate) with a longer life, or shorten pki.warehouse")
	}
	return end, nil
}

// Issue applies the issuance policy to req and, when every check passes,
// signs the device certificate. Refusals wrap ErrPolicy (and
// regid.ErrInvalid for a bad ID) and say what to do; an issuer that no
// longer verifies up to the root wraps ErrIssuer.
//
// The policy: the CSR's signature verifies and its key is ECDSA P-256/P-384
// or RSA >= 2048; the registration ID passes DPS's rules for X.509 (it is the
// CN); the unit serial is set and the SAN URI binds to it; the issuer is a CA
// with keyCertSign that verifies to the pinned root now; every certificate
// of the chain outlives now+warehouse (else refused) and the leaf ends at
// now+warehouse+validity or at the chain's first expiry, whichever is
// earlier; the issuance ceiling is not reached; the serial is random and not
// in the station database. After signing, the leaf must verify up to the
// root for clientAuth, or it is discarded.
func (is *Issuer) Issue(req LeafRequest) (*x509.Certificate, error) {
	if is == nil || is.Signer == nil {
		return nil, issuerf("issuer is not open")
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	if req.CSR == nil {
		return nil, policyf("no certificate request")
	}
	if err := req.CSR.CheckSignature(); err != nil {
		return nil, policyf("the CSR's signature does not verify (%v): the request was not made with the unit's device key", err)
	}
	if err := checkPublicKey(req.CSR.PublicKey); err != nil {
		return nil, policyf("device key: %v", err)
	}
	if err := regid.Validate(req.RegistrationID, true); err != nil {
		return nil, hint.Wrap(fmt.Errorf("%w: %w", ErrPolicy, err),
			"a registration ID is 1-64 of a-z 0-9 . _ : - (not first or last); fix dps.registration_id or the unit's serial")
	}
	if strings.TrimSpace(req.UnitSerial) == "" {
		return nil, policyf("no unit serial: the certificate must name its unit")
	}
	sanURI, err := ExpandSANURI(req.SANURI, req.UnitSerial, req.RegistrationID)
	if err != nil {
		return nil, err
	}
	if req.Validity <= 0 {
		return nil, policyf("validity %s: the field life must be positive (pki.validity)", req.Validity)
	}
	if req.Warehouse < 0 {
		return nil, policyf("warehouse period %s must not be negative (pki.warehouse)", req.Warehouse)
	}
	if err := is.checkChain(now); err != nil {
		return nil, err
	}

	// Validity window: the chain's first expiry bounds the leaf.
	end, err := is.CheckLifetime(now, req.Warehouse)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(req.Warehouse).Add(req.Validity)
	if notAfter.After(end) {
		notAfter = end // clipped: never past the issuer's (or chain's) end
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(is.Cert.NotBefore) {
		notBefore = is.Cert.NotBefore
	}

	if req.MaxIssued > 0 && req.Issued >= req.MaxIssued {
		return nil, hint.Wrap(policyf("issuance ceiling reached: %d certificates issued from %q, pki.max_issued is %d",
			req.Issued, is.Cert.Subject.CommonName, req.MaxIssued),
			"the ceiling bounds what a stolen line key could sign; raise pki.max_issued deliberately or move to a new line intermediate")
	}

	var tmplSerial string
	sn, err := RandomSerial()
	for i := 0; err == nil && req.SerialTaken != nil && req.SerialTaken(sn.Text(16)); i++ {
		if i == serialTries-1 {
			return nil, policyf("%d random serial numbers in a row are already in the station database: the random source or the database is broken", serialTries)
		}
		sn, err = RandomSerial()
	}
	if err != nil {
		return nil, err
	}
	tmplSerial = sn.Text(16)

	ski, err := x509util.GenerateSubjectKeyID(req.CSR.PublicKey)
	if err != nil {
		return nil, err
	}
	c := &x509util.Certificate{
		Subject:          x509util.Subject{CommonName: req.RegistrationID},
		SerialNumber:     x509util.SerialNumber{Int: sn},
		URIs:             x509util.MultiURL{sanURI},
		NotBefore:        notBefore.UTC().Truncate(time.Second),
		NotAfter:         notAfter.UTC().Truncate(time.Second),
		KeyUsage:         x509util.KeyUsage(x509.KeyUsageDigitalSignature),
		ExtKeyUsage:      x509util.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		SubjectKeyID:     x509util.SubjectKeyID(ski),
		AuthorityKeyID:   x509util.AuthorityKeyID(is.Cert.SubjectKeyId),
		BasicConstraints: &x509util.BasicConstraints{IsCA: false},
		PublicKey:        req.CSR.PublicKey,
	}
	tmpl := c.GetCertificate()
	leaf, err := x509util.CreateCertificate(tmpl, is.Cert, req.CSR.PublicKey, is.Signer)
	if err != nil {
		return nil, fmt.Errorf("%w: signing certificate for %s: %w", ErrIssuer, req.UnitSerial, err)
	}
	if SerialHex(leaf) != tmplSerial {
		return nil, fmt.Errorf("signed certificate carries serial %s, not %s", SerialHex(leaf), tmplSerial)
	}
	if _, err := is.verify(leaf, now, x509.ExtKeyUsageClientAuth); err != nil {
		return nil, issuerf("the new certificate for %s does not verify up to the root (discarded): %v", req.UnitSerial, err)
	}
	return leaf, nil
}

package station

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/store"
)

// stepCertificate has the TPM sign a CSR with the device key and issues the
// leaf from the line intermediate. The issuance counter (pki.max_issued) is
// incremented in the transaction that records the certificate.
func (r *unitRun) stepCertificate() ([]audit.Event, error) {
	if err := r.ensureDeviceKey(); err != nil {
		return nil, err
	}
	p, cfg := r.p, r.p.env.Config
	// Reserve this signature against pki.max_issued in a write transaction
	// before signing, so parallel fixtures cannot all pass the ceiling at
	// once. A slot reserved for a signature that is then not recorded stays
	// used: the ceiling bounds signatures made, the safe side.
	counter := issuedKey(sha256hex(p.issuer.Cert.Raw))
	var issued int
	if err := p.env.DB.Update(func(tx *bolt.Tx) error {
		if err := p.issuerUsableIn(tx); err != nil { // revoked since the run began?
			return err
		}
		issued = parseCount(store.GetMeta(tx, counter))
		if max := cfg.PKI.MaxIssued; max > 0 && issued >= max {
			return nil // certgen refuses it below, with its message
		}
		return store.PutMeta(tx, counter, fmtCount(issued+1))
	}); err != nil {
		return nil, err
	}
	signer, err := r.tpm.Signer(r.devKey)
	if err != nil {
		return nil, err
	}
	csr, err := certgen.NewCSR(signer, r.u.RegistrationID)
	if err != nil {
		return nil, fmt.Errorf("CSR signed by the TPM: %w", err)
	}
	cert, err := p.leaves.Issue(certgen.LeafRequest{
		CSR:            csr,
		RegistrationID: r.u.RegistrationID,
		UnitSerial:     r.u.Serial,
		SANURI:         cfg.PKI.SANURI,
		Validity:       cfg.PKI.Validity.D(),
		Warehouse:      cfg.PKI.Warehouse.D(),
		Now:            time.Now(),
		SerialTaken:    p.certSerialTaken,
		MaxIssued:      cfg.PKI.MaxIssued,
		Issued:         issued,
	})
	if err != nil {
		return nil, err
	}
	if k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(r.devKey.Pub) {
		return nil, errors.New("the issued certificate does not certify the TPM-resident device key")
	}
	r.u.Cert = cert.Raw
	r.u.Chain = [][]byte{p.issuer.Cert.Raw}
	for _, c := range p.issuer.Chain {
		r.u.Chain = append(r.u.Chain, c.Raw)
	}
	r.u.CertSerial = certgen.SerialHex(cert)
	r.u.CertSHA256 = sha256hex(cert.Raw)
	r.u.NotAfter = cert.NotAfter.UTC()
	return []audit.Event{{Type: "provision.certificate", Payload: map[string]any{
		"cert_serial": r.u.CertSerial, "cert_sha256": r.u.CertSHA256, "subject_cn": cert.Subject.CommonName,
		"not_before": cert.NotBefore.UTC(), "not_after": r.u.NotAfter, "issuer": cert.Issuer.String(),
		"ek_sha256": r.u.EKSHA256,
	}}}, nil
}

// issuerUsable refuses to issue from a line intermediate that `station
// revoke --ca-cert` revoked, or that chains through a revoked CA: a leaf it
// signs would be disabled in DPS from the start.
func (p *Provisioner) issuerUsable() error {
	return p.env.DB.View(p.issuerUsableIn)
}

func (p *Provisioner) issuerUsableIn(tx *bolt.Tx) error {
	revoked, err := store.RevokedCAs(tx)
	if err != nil || len(revoked) == 0 {
		return err
	}
	for i, c := range append([]*x509.Certificate{p.issuer.Cert}, p.issuer.Chain...) {
		sum := sha256hex(c.Raw)
		rev, ok := revoked[sum]
		if !ok {
			continue
		}
		what := "the line intermediate (pki.issuer_cert " + p.env.Config.PKI.IssuerCert + ")"
		if i > 0 {
			what = "a CA above the line intermediate (in pki.chain " + p.env.Config.PKI.Chain + ")"
		}
		return fmt.Errorf("%w: %s %q, sha256 %s, was revoked on %s (%s): replace it with a new intermediate (pki.issuer_cert and pki.issuer_key) before provisioning",
			ErrIssuerRevoked, what, c.Subject.String(), sum, rev.At.UTC().Format(time.RFC3339), rev.Reason)
	}
	return nil
}

// certSerialTaken reports whether a certificate serial is already recorded.
func (p *Provisioner) certSerialTaken(hexSerial string) bool {
	var taken bool
	p.env.DB.View(func(tx *bolt.Tx) error {
		taken = store.SerialByCert(tx, hexSerial) != ""
		return nil
	})
	return taken
}

package station

import (
	"crypto"
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
	counter := issuedKey(sha256hex(p.issuer.Cert.Raw))
	if max := cfg.PKI.MaxIssued; max > 0 {
		var n int
		p.env.DB.View(func(tx *bolt.Tx) error {
			n = parseCount(store.GetMeta(tx, counter))
			return nil
		})
		if n >= max {
			return nil, fmt.Errorf("%w (%d of %d issued): the line needs a new intermediate", ErrIssuanceCeiling, n, max)
		}
	}
	signer, err := r.tpm.Signer(r.devKey)
	if err != nil {
		return nil, err
	}
	csr, err := certgen.NewCSR(signer, r.u.RegistrationID)
	if err != nil {
		return nil, fmt.Errorf("CSR signed by the TPM: %w", err)
	}
	cert, err := p.issuer.Issue(certgen.LeafRequest{
		CSR:            csr,
		RegistrationID: r.u.RegistrationID,
		UnitSerial:     r.u.Serial,
		SANURI:         cfg.PKI.SANURI,
		Validity:       cfg.PKI.Validity.D(),
		Warehouse:      cfg.PKI.Warehouse.D(),
		Now:            time.Now(),
		SerialTaken:    p.certSerialTaken,
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
	r.u.CertSerial = fmt.Sprintf("%x", cert.SerialNumber)
	r.u.CertSHA256 = sha256hex(cert.Raw)
	r.u.NotAfter = cert.NotAfter.UTC()
	r.extra = append(r.extra, func(tx *bolt.Tx) error {
		return store.PutMeta(tx, counter, fmtCount(parseCount(store.GetMeta(tx, counter))+1))
	})
	return []audit.Event{{Type: "provision.certificate", Payload: map[string]any{
		"cert_serial": r.u.CertSerial, "cert_sha256": r.u.CertSHA256, "subject_cn": cert.Subject.CommonName,
		"not_before": cert.NotBefore.UTC(), "not_after": r.u.NotAfter, "issuer": cert.Issuer.String(),
		"ek_sha256": r.u.EKSHA256,
	}}}, nil
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

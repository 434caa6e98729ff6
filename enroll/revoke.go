package enroll

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/store"
)

// bucketCACerts keeps the DER of every revoked intermediate by its SHA-256
// (hex), so dps-group can write the disabled group keyed on it.
var bucketCACerts = []byte("enroll-revoked-ca-certs")

// ErrNotCA means the certificate given to revoke is not a CA certificate.
var ErrNotCA = errors.New("not a CA certificate")

// RevokeUnit marks a unit revoked; later exports disable its enrollment. A
// unit already revoked keeps its first revocation (changed reports false).
func RevokeUnit(tx *bolt.Tx, serial string, r store.Revocation) (u *store.Unit, changed bool, err error) {
	u, err = store.GetUnit(tx, serial)
	if err != nil {
		return nil, false, err
	}
	if u.Status == store.StatusRevoked && u.Revocation != nil {
		return u, false, nil
	}
	u.Status = store.StatusRevoked
	u.Revocation = &r
	return u, true, store.PutUnit(tx, u)
}

// ParseCACert reads a CA certificate from PEM or DER.
func ParseCACert(b []byte) (*x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q, want CERTIFICATE", blk.Type)
		}
		b = blk.Bytes
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, err
	}
	if !c.IsCA || !c.BasicConstraintsValid {
		return nil, fmt.Errorf("%s: %w", c.Subject, ErrNotCA)
	}
	return c, nil
}

// CARevocation is the outcome of revoking an intermediate.
type CARevocation struct {
	SHA256  string   // hex SHA-256 of the CA's DER
	GroupID string   // the enrollment group that dps-group now writes disabled
	Units   []string // every unit under the CA, in serial order
	Newly   []string // those this call revoked (the others already were)
	Already bool     // the CA was revoked before (its first revocation stands)
	// Revocation is the one in force (given to the newly revoked units).
	Revocation store.Revocation
}

// RevokeCA records an intermediate as revoked and revokes every unit whose
// certificate chains through it (its recorded chain holds the CA, or its
// leaf is signed by it): an enabled individual enrollment beats a disabled
// group in DPS, so the units must be disabled one by one as well.
func RevokeCA(tx *bolt.Tx, ca *x509.Certificate, r store.Revocation) (*CARevocation, error) {
	sum := sha256.Sum256(ca.Raw)
	out := &CARevocation{SHA256: hex.EncodeToString(sum[:]), GroupID: GroupID(ca.Raw)}
	r.Issuer = out.SHA256
	prev, err := store.RevokedCAs(tx)
	if err != nil {
		return nil, err
	}
	if first, ok := prev[out.SHA256]; ok {
		// Revoked before: the first revocation stands; units issued under
		// it since (or missed) are revoked with it.
		r = first
		r.Issuer = out.SHA256
		out.Already = true
	} else if err := store.RevokeCA(tx, out.SHA256, r); err != nil {
		return nil, err
	}
	b, err := tx.CreateBucketIfNotExists(bucketCACerts)
	if err != nil {
		return nil, err
	}
	if err := b.Put([]byte(out.SHA256), ca.Raw); err != nil {
		return nil, err
	}
	// Collect first: bbolt forbids changing a bucket while walking it.
	err = store.ForEachUnit(tx, func(u *store.Unit) error {
		if under(u, ca) {
			out.Units = append(out.Units, u.Serial)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out.Revocation = r
	for _, s := range out.Units {
		_, changed, err := RevokeUnit(tx, s, r)
		if err != nil {
			return nil, err
		}
		if changed {
			out.Newly = append(out.Newly, s)
		}
	}
	return out, nil
}

func under(u *store.Unit, ca *x509.Certificate) bool {
	for _, c := range u.Chain {
		if bytes.Equal(c, ca.Raw) {
			return true
		}
	}
	if len(u.Cert) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(u.Cert)
	if err != nil || !bytes.Equal(leaf.RawIssuer, ca.RawSubject) {
		return false
	}
	return leaf.CheckSignatureFrom(ca) == nil
}

// NewRevocation is a revocation made now by operator for reason.
func NewRevocation(reason, operator string, now time.Time) store.Revocation {
	return store.Revocation{At: now.UTC(), Reason: reason, Operator: operator}
}

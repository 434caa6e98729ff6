package tpmops

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"testing"
	"time"
)

// testCA is a Go-made TPM vendor: a self-signed root and an issuing
// intermediate.
type testCA struct {
	root, issuer       *x509.Certificate
	rootKey, issuerKey *ecdsa.PrivateKey
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	ca := &testCA{}
	ca.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca.issuerKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test TPM Vendor Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &ca.rootKey.PublicKey, ca.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	ca.root, _ = x509.ParseCertificate(der)
	issTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test TPM Vendor EK Issuing CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err = x509.CreateCertificate(rand.Reader, issTmpl, ca.root, &ca.issuerKey.PublicKey, ca.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	ca.issuer, _ = x509.ParseCertificate(der)
	return ca
}

var (
	oidSAN             = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidTPMManufacturer = asn1.ObjectIdentifier{2, 23, 133, 2, 1}
	oidTPMModel        = asn1.ObjectIdentifier{2, 23, 133, 2, 2}
	oidTPMVersion      = asn1.ObjectIdentifier{2, 23, 133, 2, 3}
)

// tcgSAN is the TCG EK certificate's critical SAN: one directoryName with
// the TPM manufacturer, model and version attributes.
func tcgSAN(t testing.TB) []byte {
	t.Helper()
	rdn := pkix.RDNSequence{
		{{Type: oidTPMManufacturer, Value: "id:00001014"}},
		{{Type: oidTPMModel, Value: "swtpm"}},
		{{Type: oidTPMVersion, Value: "id:20191023"}},
	}
	name, err := asn1.Marshal(rdn)
	if err != nil {
		t.Fatal(err)
	}
	// GeneralNames ::= SEQUENCE OF GeneralName; directoryName is [4] EXPLICIT Name.
	dn, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 4, IsCompound: true, Bytes: name})
	if err != nil {
		t.Fatal(err)
	}
	san, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: dn})
	if err != nil {
		t.Fatal(err)
	}
	return san
}

// issueEK issues an EK certificate for pub in the TCG style: empty subject,
// critical SAN with a directoryName, keyEncipherment.
func (ca *testCA) issueEK(t testing.TB, pub crypto.PublicKey, extra ...pkix.Extension) []byte {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:        x509.KeyUsageKeyEncipherment,
		ExtraExtensions: append([]pkix.Extension{{Id: oidSAN, Critical: true, Value: tcgSAN(t)}}, extra...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.issuer, pub, ca.issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// testEKCertDER is some EK-certificate-shaped DER (for NV tests).
func testEKCertDER(t testing.TB) []byte {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return newTestCA(t).issueEK(t, &k.PublicKey)
}

func testKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issueWithSAN issues an EK certificate whose critical SAN is san.
func (ca *testCA) issueWithSAN(t testing.TB, pub crypto.PublicKey, san []byte) []byte {
	t.Helper()
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:        x509.KeyUsageKeyEncipherment,
		ExtraExtensions: []pkix.Extension{{Id: oidSAN, Critical: true, Value: san}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.issuer, pub, ca.issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

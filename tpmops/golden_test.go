package tpmops

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
)

// Frozen data from a swtpm 0.7.1 manufactured by swtpm_setup with a private
// local CA: the RSA EK certificate as stored in NV 0x01C00002, the EK's
// TPM2B_PUBLIC (tpm2_readpublic -o) and the CA's root and issuer. Later
// releases must keep verifying it.
func TestGoldenSwtpmEKCert(t *testing.T) {
	raw, err := os.ReadFile("testdata/swtpm-rsa-ek.der")
	if err != nil {
		t.Fatal(err)
	}
	ekPub, err := os.ReadFile("testdata/swtpm-rsa-ek.tpm2b")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](ekPub)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pub.Contents()
	if err != nil {
		t.Fatal(err)
	}
	ek, err := tpm2.Pub(*c)
	if err != nil {
		t.Fatal(err)
	}
	der, err := UnwrapEKCert(raw)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := os.ReadFile("testdata/swtpm-localca-root.pem")
	issuer, _ := os.ReadFile("testdata/swtpm-localca-issuer.pem")
	roots, inter := rootsFrom(t, root, issuer)
	at := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	cert, err := VerifyEKCert(der, ek, roots, inter, at)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Issuer.CommonName != "swtpm-localca" {
		t.Fatalf("issuer %q", cert.Issuer.CommonName)
	}
	// The same certificate is refused by the real vendors' bundle, before
	// it was issued, and for another key.
	vr, vi, err := LoadVendorRoots("../configs/tpm-vendor-roots")
	if err != nil {
		t.Fatal(err)
	}
	other := testKey(t).Public()
	for name, check := range map[string]func() error{
		"vendor bundle": func() error { _, err := VerifyEKCert(der, ek, vr, vi, at); return err },
		"before issuance": func() error {
			_, err := VerifyEKCert(der, ek, roots, inter, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
			return err
		},
		"another key":        func() error { _, err := VerifyEKCert(der, other, roots, inter, at); return err },
		"issuer not trusted": func() error { _, err := VerifyEKCert(der, ek, roots, nil, at); return err },
	} {
		if err := check(); !errors.Is(err, ErrUntrustedEKCert) {
			t.Errorf("%s: %v, want ErrUntrustedEKCert", name, err)
		}
	}
}

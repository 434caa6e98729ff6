package tpmops

import (
	"crypto/x509"
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
	roots := rootsFrom(t, root, issuer)
	at := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	cert, err := VerifyEKCert(der, ek, roots, nil, at)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Issuer.CommonName != "swtpm-localca" {
		t.Fatalf("issuer %q", cert.Issuer.CommonName)
	}
	// The issuer given as an untrusted intermediate (as a TPM stores it in
	// NV) chains to the root alone.
	rootOnly := rootsFrom(t, root)
	if _, err := VerifyEKCert(der, ek, rootOnly, []*x509.Certificate{pemCert(t, issuer)}, at); err != nil {
		t.Fatal(err)
	}
	// The same certificate is refused before it was issued, for another
	// key, and without its issuer.
	other := testKey(t).Public()
	for name, check := range map[string]func() error{
		"before issuance": func() error {
			_, err := VerifyEKCert(der, ek, roots, nil, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
			return err
		},
		"another key":        func() error { _, err := VerifyEKCert(der, other, roots, nil, at); return err },
		"issuer not trusted": func() error { _, err := VerifyEKCert(der, ek, rootOnly, nil, at); return err },
	} {
		if err := check(); !errors.Is(err, ErrUntrustedEKCert) {
			t.Errorf("%s: %v, want ErrUntrustedEKCert", name, err)
		}
	}
}

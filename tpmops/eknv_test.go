package tpmops

import (
	"bytes"
	"encoding/pem"
	"errors"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
)

// TestEKP384Swtpm checks template H-3 against the key swtpm's P-384 EK
// certificate (NV 0x01C00016) certifies, and that FindEKCert picks each
// EK's own certificate among the two swtpm carries.
func TestEKP384Swtpm(t *testing.T) {
	sw := swtpmtest.Start(t, swtpmtest.Options{})
	e := &env{name: "swtpm", sw: sw}
	openChecked(t, e, sw.Addr)
	certs, err := e.tpm.ReadEKCertificates()
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || certs[0].Index != 0x01C00002 || certs[1].Index != 0x01C00016 {
		t.Fatalf("EK certificates %+v, want RSA at 0x01c00002 and P-384 at 0x01c00016", certs)
	}
	roots := rootsFrom(t, sw.CA.RootPEM, sw.CA.IssuerPEM)
	for _, tc := range []struct {
		alg   Alg
		index uint32
	}{{RSA2048, 0x01C00002}, {ECCP384, 0x01C00016}} {
		ek, persisted, err := e.tpm.EnsureEK(tc.alg, nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.alg, err)
		}
		if persisted {
			t.Errorf("%s: swtpm_setup's EK was not found at %#x", tc.alg, uint32(ek.Handle))
		}
		c, chain, err := e.tpm.FindEKCert(ek.Pub, "")
		if err != nil {
			t.Fatalf("%s: %v", tc.alg, err)
		}
		if c.Index != tc.index || len(chain) != 0 || c.Header || c.Padding != 0 {
			t.Errorf("%s: found %+v", tc.alg, c)
		}
		if _, err := VerifyEKCert(c.DER, ek.Pub, roots, nil, time.Now()); err != nil {
			t.Errorf("%s: %v", tc.alg, err)
		}
	}
	// A key no certificate certifies: refused, naming what NV holds.
	if _, _, err := e.tpm.FindEKCert(testKey(t).Public(), ""); !errors.Is(err, ErrUntrustedEKCert) {
		t.Fatalf("another key: %v, want ErrUntrustedEKCert", err)
	}
}

// TestParseEKCertificate records what was cut around the DER.
func TestParseEKCertificate(t *testing.T) {
	der := testEKCertDER(t)
	n := len(der) + 2
	hdr := []byte{0x10, 0x01, 0x00, byte(n >> 8), byte(n), 0x10, 0x02}
	for _, tc := range []struct {
		name    string
		raw     []byte
		header  bool
		padding int
	}{
		{"DER", der, false, 0},
		{"PEM", certPEMBytes(der), false, 0},
		{"0xFF padding", append(bytes.Clone(der), bytes.Repeat([]byte{0xff}, 431)...), false, 431},
		{"header", append(bytes.Clone(hdr), der...), true, 0},
		{"header and 0x00 padding", append(append(bytes.Clone(hdr), der...), make([]byte, 300)...), true, 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseEKCertificate("x", tc.raw)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(c.DER, der) || c.Header != tc.header || c.Padding != tc.padding || c.Cert == nil {
				t.Fatalf("header %v padding %d, want %v %d", c.Header, c.Padding, tc.header, tc.padding)
			}
		})
	}
	if _, err := ParseEKCertificate("x", bytes.Repeat([]byte{0xff}, 64)); err == nil {
		t.Fatal("erased NV parsed as a certificate")
	}
}

// TestParseDERSequence reads intermediates as a TPM stores them.
func TestParseDERSequence(t *testing.T) {
	ca := newTestCA(t)
	seq := append(append(bytes.Clone(ca.issuer.Raw), ca.root.Raw...), bytes.Repeat([]byte{0xff}, 20)...)
	got, err := parseDERSequence(seq)
	if err != nil || len(got) != 2 || !got[0].Equal(ca.issuer) || !got[1].Equal(ca.root) {
		t.Fatalf("%d certificates, %v", len(got), err)
	}
	if got, err := parseDERSequence(append(bytes.Clone(ca.issuer.Raw), 0x30, 0x82, 0x10)); err == nil || len(got) != 1 {
		t.Fatalf("truncated second certificate: %d, %v", len(got), err)
	}
}

func certPEMBytes(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

package tpmops

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/sharedtest"
	"github.com/factory-id/station/internal/swtpmtest"
)

// rootsFrom builds a roots folder from PEM files and loads it through
// LoadVendorRoots as the station does.
func rootsFrom(t testing.TB, pems ...[]byte) *VendorRoots {
	t.Helper()
	dir := t.TempDir()
	for i, p := range pems {
		if err := os.WriteFile(filepath.Join(dir, "ca"+string(rune('a'+i))+".pem"), p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	roots, err := LoadVendorRoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	return roots
}

// pemCert parses one PEM certificate.
func pemCert(t testing.TB, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func TestEKCertSwtpm(t *testing.T) {
	sw := swtpmtest.Start(t, swtpmtest.Options{})
	e := &env{name: "swtpm", sw: sw}
	openChecked(t, e, sw.Addr)
	ek, _, err := e.tpm.EnsureEK(RSA2048, nil)
	if err != nil {
		t.Fatal(err)
	}
	der, err := e.tpm.ReadEKCert(RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.tpm.ReadEKCert(ECCP256); !errors.Is(err, ErrNoEKCert) {
		t.Fatalf("ECC P-256 EK cert on swtpm (it writes P-384 only): %v, want ErrNoEKCert", err)
	}
	vendorRoots, err := LoadVendorRoots(sharedtest.Dir(t, "tpm-vendor-cas"))
	if err != nil {
		t.Fatal(err)
	}
	other := swtpmtest.NewCA(t)
	oRoots := rootsFrom(t, other.RootPEM, other.IssuerPEM)
	roots := rootsFrom(t, sw.CA.RootPEM, sw.CA.IssuerPEM)
	rootOnly := rootsFrom(t, sw.CA.RootPEM)
	issuerOnly := rootsFrom(t, sw.CA.IssuerPEM)
	issuer := []*x509.Certificate{pemCert(t, sw.CA.IssuerPEM)}
	srk, _, err := e.tpm.EnsureSRK(RSA2048, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		roots       *VendorRoots
		int         []*x509.Certificate
		key         any
		now         time.Time
		wantTrusted bool
	}{
		{"swtpm CA", roots, nil, ek.Pub, time.Now(), true},
		{"root, intermediate from the TPM", rootOnly, issuer, ek.Pub, time.Now(), true},
		{"intermediate alone as anchor", issuerOnly, nil, ek.Pub, time.Now(), true},
		{"vendor bundle", vendorRoots, nil, ek.Pub, time.Now(), false},
		{"another swtpm CA", oRoots, issuer, ek.Pub, time.Now(), false},
		{"no roots", nil, nil, ek.Pub, time.Now(), false},
		{"root without its intermediate", rootOnly, nil, ek.Pub, time.Now(), false},
		{"key is not the EK", roots, nil, srk.Pub, time.Now(), false},
		{"not yet valid", roots, nil, ek.Pub, time.Now().Add(-20 * 365 * 24 * time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := VerifyEKCert(der, tc.key, tc.roots, tc.int, tc.now)
			if tc.wantTrusted {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(cert.Raw, der) {
					t.Fatal("returned certificate differs")
				}
				return
			}
			if !errors.Is(err, ErrUntrustedEKCert) {
				t.Fatalf("got %v, want ErrUntrustedEKCert", err)
			}
		})
	}
}

func TestEKCertProvisionSim(t *testing.T) {
	e := &env{name: "sim"}
	openChecked(t, e, "sim")
	ca := newTestCA(t)
	roots := rootsFrom(t, certPEM(ca.root), certPEM(ca.issuer))
	for _, alg := range []Alg{RSA2048, ECCP256} {
		t.Run(string(alg), func(t *testing.T) {
			if _, err := e.tpm.ReadEKCert(alg); !errors.Is(err, ErrNoEKCert) {
				t.Fatalf("simulator EK cert before provisioning: %v, want ErrNoEKCert", err)
			}
			ek, _, err := e.tpm.EnsureEK(alg, nil)
			if err != nil {
				t.Fatal(err)
			}
			der := ca.issueEK(t, ek.Pub)
			// As some vendors store it: TCG header, then padding after the DER.
			stored := append([]byte{0x10, 0x01, 0x00, byte(len(der) >> 8), byte(len(der))}, der...)
			stored = append(stored, bytes.Repeat([]byte{0xff}, 7)...)
			if err := e.tpm.ProvisionEKCert(alg, stored); err != nil {
				t.Fatal(err)
			}
			if err := e.tpm.ProvisionEKCert(alg, stored); err != nil {
				t.Fatalf("provisioning the same certificate again: %v", err)
			}
			if err := e.tpm.ProvisionEKCert(alg, ca.issueEK(t, ek.Pub)); err == nil {
				t.Fatal("another certificate overwrote the EK certificate")
			}
			got, err := e.tpm.ReadEKCert(alg)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, der) {
				t.Fatal("ReadEKCert did not return the provisioned DER")
			}
			idx, _ := ekCertIndices(alg)
			info, err := e.tpm.NVPublic(idx[0])
			if err != nil {
				t.Fatal(err)
			}
			a := info.Attrs
			if !a.PPWrite || !a.AuthRead || !a.OwnerRead || !a.PPRead || !a.NoDA || !a.PlatformCreate || !a.Written || a.OwnerWrite || a.AuthWrite {
				t.Fatalf("EK cert NV attributes %+v", a)
			}
			if _, err := VerifyEKCert(got, ek.Pub, roots, nil, time.Now()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestVerifyEKCertExtensions breaks the critical-extension handling: only a
// SAN holding directoryName/otherName entries is tolerated.
func TestVerifyEKCertExtensions(t *testing.T) {
	ca := newTestCA(t)
	roots := rootsFrom(t, certPEM(ca.root))
	inter := []*x509.Certificate{ca.issuer}
	ekKey := testKey(t)
	registeredIDSAN, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 8, Bytes: []byte{0x2a, 0x03}})})
	otherNameSAN, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true,
		Bytes: mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true,
			Bytes: append(mustMarshal(t, asn1.ObjectIdentifier{2, 23, 133, 2, 4}), mustMarshal(t, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: mustMarshal(t, "x")})...)})})
	for _, tc := range []struct {
		name string
		der  []byte
		ok   bool
	}{
		{"TCG directoryName SAN", ca.issueEK(t, ekKey.Public()), true},
		{"unknown critical extension", ca.issueEK(t, ekKey.Public(), pkix.Extension{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Critical: true, Value: []byte{0x05, 0x00}}), false},
		{"critical SAN with a registeredID", ca.issueWithSAN(t, ekKey.Public(), registeredIDSAN), false},
		{"critical SAN with an otherName", ca.issueWithSAN(t, ekKey.Public(), otherNameSAN), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyEKCert(tc.der, ekKey.Public(), roots, inter, time.Now())
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok && !errors.Is(err, ErrUntrustedEKCert) {
				t.Fatalf("got %v, want ErrUntrustedEKCert", err)
			}
		})
	}
	// Bit flips anywhere in the signed part break it.
	der := ca.issueEK(t, ekKey.Public())
	for i := 4; i < len(der); i += 37 {
		bad := bytes.Clone(der)
		bad[i] ^= 0x01
		if _, err := VerifyEKCert(bad, ekKey.Public(), roots, inter, time.Now()); err == nil {
			t.Fatalf("certificate with bit %d flipped verifies", i*8)
		}
	}
}

func TestLoadVendorRoots(t *testing.T) {
	roots, err := LoadVendorRoots(sharedtest.Dir(t, "tpm-vendor-cas"))
	if err != nil {
		t.Fatal(err)
	}
	// 51 files, 45 distinct certificates (6 files repeat another under a
	// second name): every one is an anchor.
	if len(roots.Certs) != 45 || len(roots.Skipped) != 0 {
		t.Fatalf("%d certificates loaded, %d skipped; want 45 and 0", len(roots.Certs), len(roots.Skipped))
	}
	ca := newTestCA(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.der"), ca.root.Raw, 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("notes"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "issuer.pem"), certPEM(ca.issuer), 0o644)
	os.WriteFile(filepath.Join(dir, "sub", "again.pem"), certPEM(ca.issuer), 0o644)
	roots, err = LoadVendorRoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(roots.Certs) != 2 {
		t.Fatalf("%d certificates, want 2 (a copy counts once)", len(roots.Certs))
	}
	// A lone intermediate (its root absent) is an anchor.
	r2, err := LoadVendorRoots(filepath.Join(dir, "sub", "issuer.pem"))
	if err != nil || len(r2.Certs) != 1 {
		t.Fatalf("lone intermediate: %v", err)
	}
	empty := t.TempDir()
	if _, err := LoadVendorRoots(empty); err == nil {
		t.Fatal("an empty folder gave vendor roots")
	}
	os.WriteFile(filepath.Join(empty, "junk.pem"), []byte("not a certificate"), 0o644)
	if _, err := LoadVendorRoots(empty); err == nil || !strings.Contains(err.Error(), "junk.pem") {
		t.Fatalf("a junk file gave vendor roots, or the error does not name it: %v", err)
	}
	// A certificate Go's parser rejects is set aside and named, and the
	// rest of the folder still loads.
	bad := bytes.Clone(ca.issuer.Raw)
	i := bytes.Index(bad, ca.issuer.SerialNumber.Bytes())
	bad = append(append(bad[:i-2:i-2], 0x02, byte(len(ca.issuer.SerialNumber.Bytes())+1), 0x00), bad[i:]...) // non-minimal INTEGER
	// Fix the outer and TBS lengths (both 0x82 LL LL).
	for _, off := range []int{2, 6} {
		if bad[off-1] != 0x82 {
			t.Fatalf("unexpected DER length form at %d", off-1)
		}
		binary.BigEndian.PutUint16(bad[off:], binary.BigEndian.Uint16(bad[off:])+1)
	}
	mixed := t.TempDir()
	os.WriteFile(filepath.Join(mixed, "root.der"), ca.root.Raw, 0o644)
	os.WriteFile(filepath.Join(mixed, "nonder.der"), bad, 0o644)
	roots, err = LoadVendorRoots(mixed)
	if err != nil {
		t.Fatal(err)
	}
	if len(roots.Certs) != 1 || len(roots.Skipped) != 1 || filepath.Base(roots.Skipped[0].File) != "nonder.der" {
		t.Fatalf("certs %d, skipped %+v", len(roots.Certs), roots.Skipped)
	}
}

func TestUnwrapEKCert(t *testing.T) {
	der := testEKCertDER(t)
	hdr := func(n int) []byte { return []byte{0x10, 0x01, 0x00, byte(n >> 8), byte(n)} }
	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"plain", der, true},
		{"padded", append(bytes.Clone(der), 0xff, 0xff, 0xff), true},
		{"header", append(hdr(len(der)), der...), true},
		{"header and padding", append(append(hdr(len(der)+2), der...), 0, 0), true},
		{"header too long", append(hdr(len(der)+1), der...), false},
		{"truncated", der[:len(der)-1], false},
		{"header truncated", append(hdr(len(der)), der[:100]...), false},
		{"empty", nil, false},
		{"erased NV", bytes.Repeat([]byte{0xff}, 64), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnwrapEKCert(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && !bytes.Equal(got, der) {
				t.Fatal("unwrapped bytes are not the DER")
			}
		})
	}
}

func FuzzUnwrapEKCert(f *testing.F) {
	der := testEKCertDER(f)
	f.Add(der)
	f.Add(append([]byte{0x10, 0x01, 0x00, byte(len(der) >> 8), byte(len(der))}, der...))
	f.Add(append(bytes.Clone(der), 0xff, 0xff))
	f.Add([]byte{0x30, 0x82, 0x00})
	f.Add([]byte{0x10, 0x01, 0x00, 0xff, 0xff, 0x30})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := UnwrapEKCert(in)
		if err != nil {
			return
		}
		// The result is a complete DER SEQUENCE found inside the input.
		if len(out) < 2 || out[0] != 0x30 || !bytes.Contains(in, out) {
			t.Fatalf("UnwrapEKCert(%x) = %x", in, out)
		}
		if n, err := derLength(out); err != nil || n != len(out) {
			t.Fatalf("result is not exactly one DER element: n=%d err=%v", n, err)
		}
		// Unwrapping is idempotent on its result (plain DER, no header).
		if again, err := UnwrapEKCert(out); err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %v", err)
		}
	})
}

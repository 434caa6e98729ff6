package tpmops

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/factory-id/station/internal/swtpmtest"
)

// poolOf builds (roots, intermediates) from PEM files written to a folder,
// through LoadVendorRoots as the station does.
func rootsFrom(t *testing.T, pems ...[]byte) (*x509.CertPool, *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	for i, p := range pems {
		if err := os.WriteFile(filepath.Join(dir, "ca"+string(rune('a'+i))+".pem"), p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	roots, inter, err := LoadVendorRoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	return roots, inter
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
	vendorRoots, vendorInter, err := LoadVendorRoots("../configs/tpm-vendor-roots")
	if err != nil {
		t.Fatal(err)
	}
	other := swtpmtest.NewCA(t)
	oRoots, oInter := rootsFrom(t, other.RootPEM, other.IssuerPEM)
	roots, inter := rootsFrom(t, sw.CA.RootPEM, sw.CA.IssuerPEM)
	srk, _, err := e.tpm.EnsureSRK(RSA2048, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		roots, int  *x509.CertPool
		key         any
		now         time.Time
		wantTrusted bool
	}{
		{"swtpm CA", roots, inter, ek.Pub, time.Now(), true},
		{"vendor bundle", vendorRoots, vendorInter, ek.Pub, time.Now(), false},
		{"another swtpm CA", oRoots, oInter, ek.Pub, time.Now(), false},
		{"no roots", nil, nil, ek.Pub, time.Now(), false},
		{"root without its intermediate", roots, nil, ek.Pub, time.Now(), false},
		{"key is not the EK", roots, inter, srk.Pub, time.Now(), false},
		{"not yet valid", roots, inter, ek.Pub, time.Now().Add(-20 * 365 * 24 * time.Hour), false},
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
	roots, inter := rootsFrom(t, certPEM(ca.root), certPEM(ca.issuer))
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
			if _, err := VerifyEKCert(got, ek.Pub, roots, inter, time.Now()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestVerifyEKCertExtensions breaks the critical-extension handling: only a
// SAN holding directoryName/otherName entries is tolerated.
func TestVerifyEKCertExtensions(t *testing.T) {
	ca := newTestCA(t)
	roots, inter := rootsFrom(t, certPEM(ca.root), certPEM(ca.issuer))
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
	roots, inter, err := LoadVendorRoots("../configs/tpm-vendor-roots")
	if err != nil {
		t.Fatal(err)
	}
	// 51 files, 45 distinct certificates (6 files repeat another under a
	// second name): every one is a root or an intermediate.
	n := poolLen(roots) + poolLen(inter)
	if n != 45 {
		t.Fatalf("%d certificates loaded, want 45", n)
	}
	ca := newTestCA(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.der"), ca.root.Raw, 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("notes"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "issuer.pem"), certPEM(ca.issuer), 0o644)
	roots, inter, err = LoadVendorRoots(dir)
	if err != nil {
		t.Fatal(err)
	}
	if poolLen(roots) != 1 || poolLen(inter) != 1 {
		t.Fatalf("roots %d, intermediates %d; want 1 and 1", poolLen(roots), poolLen(inter))
	}
	// A lone intermediate (its root absent) is an anchor.
	r2, _, err := LoadVendorRoots(filepath.Join(dir, "sub", "issuer.pem"))
	if err != nil || poolLen(r2) != 1 {
		t.Fatalf("lone intermediate: %v", err)
	}
	empty := t.TempDir()
	if _, _, err := LoadVendorRoots(empty); err == nil {
		t.Fatal("an empty folder gave vendor roots")
	}
	os.WriteFile(filepath.Join(empty, "junk.pem"), []byte("not a certificate"), 0o644)
	if _, _, err := LoadVendorRoots(empty); err == nil {
		t.Fatal("a junk file gave vendor roots")
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

// poolLen counts a pool's certificates.
func poolLen(p *x509.CertPool) int {
	//lint:ignore SA1019 not a system pool: Subjects lists every certificate
	return len(p.Subjects())
}

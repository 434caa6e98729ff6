package enroll

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/factory-id/station/internal/dirtest"
	"github.com/factory-id/station/internal/storetest"
)

// signedExport makes a 25-unit bulk export (3 files) signed by key seed 1.
func signedExport(t *testing.T) string {
	t.Helper()
	db := openDB(t)
	storetest.PutUnits(t, db, tpmUnits(25, "SN")...)
	out := filepath.Join(t.TempDir(), "export")
	runExport(t, db, baseOpts(t, FormatBulk, out))
	return out
}

func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	os.MkdirAll(dst, 0o755)
	for name, b := range dirtest.Read(t, src) {
		os.WriteFile(filepath.Join(dst, name), b, 0o644)
	}
	return dst
}

func edit(t *testing.T, dir, name string, fn func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, fn(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

// resign rewrites manifest.json with fn and signs it with signer.
func resign(t *testing.T, dir string, signer crypto.Signer, fn func(*Manifest)) {
	t.Helper()
	var m Manifest
	b, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	json.Unmarshal(b, &m)
	fn(&m)
	mb, _ := Marshal(m)
	sig, err := SignManifest(signer, mb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, ManifestFile), mb, 0o644)
	os.WriteFile(filepath.Join(dir, SignatureFile), sig, 0o644)
}

// Every way of changing a signed export is caught, with the right class.
func TestVerifyExportTamper(t *testing.T) {
	src := signedExport(t)
	key := testSigner(t, 1)
	if _, err := VerifyExport(src, key.Public()); err != nil {
		t.Fatalf("untouched export: %v", err)
	}
	other := testSigner(t, 2)
	tests := []struct {
		name string
		mod  func(t *testing.T, dir string)
		key  crypto.PublicKey
		want error
		file string
	}{
		{"flip-bit-in-operation", func(t *testing.T, d string) {
			edit(t, d, "0002.json", func(b []byte) []byte { b[100] ^= 1; return b })
		}, nil, ErrTampered, "0002.json"},
		{"truncate-operation", func(t *testing.T, d string) {
			edit(t, d, "0003.json", func(b []byte) []byte { return b[:len(b)/2] })
		}, nil, ErrTampered, "0003.json"},
		{"delete-operation", func(t *testing.T, d string) { os.Remove(filepath.Join(d, "0001.json")) }, nil, ErrTampered, "0001.json"},
		{"add-file", func(t *testing.T, d string) {
			os.WriteFile(filepath.Join(d, "0004.json"), []byte(`{"mode":"create","enrollments":[]}`), 0o644)
		}, nil, ErrTampered, "0004.json"},
		{"swap-operations", func(t *testing.T, d string) {
			a, _ := os.ReadFile(filepath.Join(d, "0001.json"))
			b, _ := os.ReadFile(filepath.Join(d, "0002.json"))
			os.WriteFile(filepath.Join(d, "0001.json"), b, 0o644)
			os.WriteFile(filepath.Join(d, "0002.json"), a, 0o644)
		}, nil, ErrTampered, "0001.json"},
		{"flip-bit-in-manifest", func(t *testing.T, d string) {
			edit(t, d, ManifestFile, func(b []byte) []byte { b[len(b)/2] ^= 1; return b })
		}, nil, ErrSignature, ""},
		{"reformat-manifest", func(t *testing.T, d string) {
			edit(t, d, ManifestFile, func(b []byte) []byte { return append(b, '\n') })
		}, nil, ErrSignature, ""},
		{"flip-bit-in-signature", func(t *testing.T, d string) {
			edit(t, d, SignatureFile, func(b []byte) []byte {
				i := bytes.Index(b, []byte(`"signature": "`)) + 20
				b[i] ^= 1
				return b
			})
		}, nil, ErrSignature, ""},
		{"missing-signature", func(t *testing.T, d string) { os.Remove(filepath.Join(d, SignatureFile)) }, nil, ErrSignature, SignatureFile},
		{"missing-manifest", func(t *testing.T, d string) { os.Remove(filepath.Join(d, ManifestFile)) }, nil, ErrSignature, ManifestFile},
		{"resigned-by-other-key", func(t *testing.T, d string) {
			resign(t, d, other, func(m *Manifest) {})
		}, nil, ErrSignature, ""},
		{"wrong-trusted-key", func(t *testing.T, d string) {}, other.Public(), ErrSignature, ""},
		{"key-id-lies", func(t *testing.T, d string) {
			claimTrustedKeyID := func(b []byte) []byte {
				var s signature
				json.Unmarshal(b, &s)
				s.KeyID, _ = KeyID(key.Public())
				out, _ := Marshal(s)
				return out
			}
			edit(t, d, SignatureFile, claimTrustedKeyID)
			resign(t, d, other, func(m *Manifest) {})
			edit(t, d, SignatureFile, claimTrustedKeyID)
		}, nil, ErrSignature, ""},
		// The signer itself cannot smuggle an over-full or mislabelled
		// operation past the checker.
		{"manifest-mode-lies", func(t *testing.T, d string) {
			resign(t, d, key, func(m *Manifest) { m.Files[0].Mode = ModeUpdate })
		}, nil, ErrTampered, "0001.json"},
		{"manifest-count-lies", func(t *testing.T, d string) {
			resign(t, d, key, func(m *Manifest) { m.Counts.Enrolled = 24 })
		}, nil, ErrTampered, ManifestFile},
		{"path-in-manifest", func(t *testing.T, d string) {
			resign(t, d, key, func(m *Manifest) { m.Files[0].Name = "../0001.json" })
		}, nil, ErrTampered, "../0001.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			tc.mod(t, dir)
			k := tc.key
			if k == nil {
				k = key.Public()
			}
			_, err := VerifyExport(dir, k)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var ve *VerifyError
			if tc.file != "" && (!errors.As(err, &ve) || ve.File != tc.file) {
				t.Fatalf("err = %v, want it to name %s", err, tc.file)
			}
		})
	}
	if _, err := VerifyExport(src, nil); !errors.Is(err, ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
}

// ECDSA and RSA station keys sign and verify too; ECDSA in-memory keys
// sign deterministically; a signature never verifies over other bytes.
func TestManifestKeyTypes(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, s := range []crypto.Signer{testSigner(t, 3), ec, rk} {
		m := []byte(`{"version":1}`)
		sig, err := SignManifest(s, m)
		if err != nil {
			t.Fatal(err)
		}
		if err := VerifyManifest(s.Public(), m, sig); err != nil {
			t.Fatalf("%T: %v", s, err)
		}
		if err := VerifyManifest(s.Public(), []byte(`{"version":2}`), sig); !errors.Is(err, ErrSignature) {
			t.Fatalf("%T: other bytes verified: %v", s, err)
		}
		if _, ok := s.(*rsa.PrivateKey); !ok {
			sig2, _ := SignManifest(s, m)
			if !bytes.Equal(sig, sig2) {
				t.Fatalf("%T: signature not deterministic", s)
			}
		}
	}
}

// A recipient key comes as a PUBLIC KEY block or in a certificate.
func TestParseRecipientKeyPEM(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(ec.Public())
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	cert, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, ec.Public(), ec)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		append([]byte("text before\n"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})...),
	} {
		pub, err := ParseRecipientKeyPEM(b)
		if err != nil || !ec.PublicKey.Equal(pub) {
			t.Errorf("ParseRecipientKeyPEM = %v, %v, want the key", pub, err)
		}
	}
	for _, b := range [][]byte{[]byte("nothing"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}})} {
		if _, err := ParseRecipientKeyPEM(b); err == nil {
			t.Errorf("%q parsed as a key", b)
		}
	}
}

// Whatever the fuzzer makes of the manifest and the signature file, only
// the manifest the key signed verifies.
func FuzzVerifyManifest(f *testing.F) {
	key := ed25519Key(1)
	m := []byte(`{"version":1}`)
	sig, _ := SignManifest(key, m)
	f.Add(m, sig)
	f.Add([]byte(""), []byte(`{"alg":"ed25519","key_id":"","signature":"AAAA"}`))
	f.Fuzz(func(t *testing.T, data, sigFile []byte) {
		if VerifyManifest(key.Public(), data, sigFile) == nil && !bytes.Equal(data, m) {
			t.Fatalf("verified a manifest the key never signed: %q", data)
		}
	})
}

// Any change to any file of a signed export is caught: the fuzzer picks a
// file and its new content; only the original bytes verify.
func FuzzExportMalleability(f *testing.F) {
	db := openDB(f)
	storetest.PutUnits(f, db, tpmUnits(12, "SN")...)
	src := filepath.Join(f.TempDir(), "export")
	runExport(f, db, baseOpts(f, FormatBulk, src))
	files := dirtest.Read(f, src)
	list := names(files)
	for i, n := range list {
		f.Add(uint8(i), files[n])
		f.Add(uint8(i), append([]byte(nil), files[n][:len(files[n])/2]...))
	}
	pub := testSigner(f, 1).Public()
	f.Fuzz(func(t *testing.T, which uint8, content []byte) {
		name := list[int(which)%len(list)]
		dir := t.TempDir()
		for n, b := range files {
			if n == name {
				b = content
			}
			if err := os.WriteFile(filepath.Join(dir, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		_, err := VerifyExport(dir, pub)
		same := bytes.Equal(content, files[name])
		if name == SignatureFile && !same && err == nil {
			// manifest.sig itself is not signed: another spelling of the
			// same signature object is fine, another signature is not.
			var a, b signature
			json.Unmarshal(content, &a)
			json.Unmarshal(files[name], &b)
			same = a == b
		}
		if same != (err == nil) {
			t.Fatalf("%s changed=%v: VerifyExport = %v", name, !same, err)
		}
		if err != nil && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrTampered) {
			t.Fatalf("unclassified failure: %v", err)
		}
	})
}

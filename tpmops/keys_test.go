package tpmops

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/google/go-tpm/tpm2"
)

// putKey persists a primary made from tmpl at handle, as another tool would
// (test setup only: the package never does this to a foreign key).
func putKey(t *testing.T, tp *TPM, hierarchy tpm2.TPMHandle, tmpl tpm2.TPMTPublic, handle tpm2.TPMHandle) Key {
	t.Helper()
	if k, err := tp.ReadPublic(handle); err == nil {
		_, err := tpm2.EvictControl{
			Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			ObjectHandle:     tpm2.NamedHandle{Handle: handle, Name: tpm2.TPM2BName{Buffer: k.Name}},
			PersistentHandle: handle,
		}.Execute(tp.Transport())
		if err != nil {
			t.Fatalf("test setup: evicting %#x: %v", uint32(handle), err)
		}
	}
	k, err := tp.createPrimary(hierarchy, nil, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	defer tp.flush(k.Handle)
	if err := tp.persist(k, handle, nil); err != nil {
		t.Fatal(err)
	}
	return persistedAs(k, handle)
}

// checkTemplate checks a key's public area has the template's type,
// attributes, policy and parameters (everything but the unique field).
func checkTemplate(t *testing.T, k Key, tmpl tpm2.TPMTPublic) {
	t.Helper()
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](k.Public)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pub.Contents()
	if err != nil {
		t.Fatal(err)
	}
	got, want := *c, tmpl
	got.Unique, want.Unique = tpm2.TPMUPublicID{}, tpm2.TPMUPublicID{}
	if !bytes.Equal(tpm2.Marshal(got), tpm2.Marshal(want)) {
		t.Fatalf("public area %x does not follow the template %x", tpm2.Marshal(got), tpm2.Marshal(want))
	}
	name, err := tpm2.ObjectName(c)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(name.Buffer, k.Name) {
		t.Fatal("Name does not match the public area")
	}
	if int(k.Public[0])<<8|int(k.Public[1]) != len(k.Public)-2 {
		t.Fatal("Public is not a TPM2B_PUBLIC")
	}
}

func TestEnsureEK(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			alg Alg
			// swtpm_setup persists the RSA EK; ECC P-256 is never there.
			preexisting bool
		}{
			{RSA2048, e.sw != nil},
			{ECCP256, false},
		} {
			t.Run(string(tc.alg), func(t *testing.T) {
				tmpl, handle, _ := EKTemplate(tc.alg)
				std, err := e.tpm.standardEK(tc.alg)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := e.tpm.ReadPublic(handle); tc.preexisting == errors.Is(err, ErrHandleEmpty) {
					t.Fatalf("standardEK changed what is persisted at %#x: %v", uint32(handle), err)
				}
				ek, persisted, err := e.tpm.EnsureEK(tc.alg, nil)
				if err != nil {
					t.Fatal(err)
				}
				if persisted == tc.preexisting {
					t.Fatalf("persistedNow = %v, want %v", persisted, !tc.preexisting)
				}
				if ek.Handle != handle {
					t.Fatalf("handle %#x, want %#x", uint32(ek.Handle), uint32(handle))
				}
				checkTemplate(t, ek, tmpl)
				if !bytes.Equal(std.Public, ek.Public) || std.Handle != ek.Handle {
					t.Fatal("standardEK differs from the persisted EK")
				}
				if tc.alg == RSA2048 && (len(ek.Public) != 316 || !bytes.HasPrefix(ek.Public, []byte{0x01, 0x3a, 0x00, 0x01, 0x00, 0x0b, 0x00, 0x03, 0x00, 0xb2})) {
					t.Fatalf("RSA EK TPM2B_PUBLIC: %d bytes, starts %x", len(ek.Public), ek.Public[:10])
				}
				again, persisted, err := e.tpm.EnsureEK(tc.alg, nil)
				if err != nil || persisted || !bytes.Equal(again.Public, ek.Public) {
					t.Fatalf("second EnsureEK: persisted=%v err=%v same=%v", persisted, err, bytes.Equal(again.Public, ek.Public))
				}
				if e.sw != nil {
					// What tpm2-tools reads at the handle is the same TPM2B_PUBLIC.
					out := filepath.Join(t.TempDir(), "ek.pub")
					e.tool(t, "tpm2_readpublic", "-c", handleHex(handle), "-o", out)
					b, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(b, ek.Public) {
						t.Fatalf("tpm2_readpublic gives %x...\nEnsureEK gives %x...", b[:16], ek.Public[:16])
					}
				}
			})
		}
	})
}

func handleHex(h tpm2.TPMHandle) string { return fmt.Sprintf("%#x", uint32(h)) }

// azureEmptyUniqueEK is the EK some Azure SDKs create when 0x81010001 is
// empty: the standard template with an empty unique field, a different key.
func azureEmptyUniqueEK() tpm2.TPMTPublic {
	tmpl := tpm2.RSAEKTemplate
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{})
	return tmpl
}

func TestEKMismatch(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		foreign := putKey(t, e.tpm, tpm2.TPMRHEndorsement, azureEmptyUniqueEK(), EKHandleRSA)
		before, err := e.tpm.Persistent()
		if err != nil {
			t.Fatal(err)
		}
		_, persisted, err := e.tpm.EnsureEK(RSA2048, nil)
		if !errors.Is(err, ErrEKMismatch) || persisted {
			t.Fatalf("EnsureEK over a foreign key: persisted=%v err=%v, want ErrEKMismatch", persisted, err)
		}
		if after, err := e.tpm.Persistent(); err != nil || !slices.Equal(before, after) {
			t.Fatalf("persistent handles changed: %v -> %v (%v)", before, after, err)
		}
		still, err := e.tpm.ReadPublic(EKHandleRSA)
		if err != nil || !bytes.Equal(still.Name, foreign.Name) {
			t.Fatalf("the foreign key at 0x81010001 was touched: %v", err)
		}
		if e.sw != nil {
			out := e.tool(t, "tpm2_readpublic", "-c", "0x81010001")
			if !bytes.Contains([]byte(out), []byte(hex.EncodeToString(foreign.Name))) {
				t.Fatalf("tpm2_readpublic no longer shows the foreign key:\n%s", out)
			}
		}
	})
}

func TestEnsureSRK(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		for _, alg := range []Alg{RSA2048, ECCP256} {
			t.Run(string(alg), func(t *testing.T) {
				tmpl, handle, _ := SRKTemplate(alg)
				srk, persisted, err := e.tpm.EnsureSRK(alg, nil, nil)
				if err != nil || !persisted || srk.Handle != handle {
					t.Fatalf("first EnsureSRK: persisted=%v handle=%#x err=%v", persisted, uint32(srk.Handle), err)
				}
				checkTemplate(t, srk, tmpl)
				if alg == RSA2048 {
					pub, _ := tpm2.Unmarshal[tpm2.TPM2BPublic](srk.Public)
					c, _ := pub.Contents()
					attrs := tpm2.Marshal(c.ObjectAttributes)
					if !bytes.Equal(attrs, []byte{0x00, 0x03, 0x04, 0x72}) {
						t.Fatalf("RSA SRK attributes %x, want 00030472", attrs)
					}
				}
				for _, rec := range [][]byte{nil, srk.Name} {
					again, persisted, err := e.tpm.EnsureSRK(alg, nil, rec)
					if err != nil || persisted || !bytes.Equal(again.Name, srk.Name) {
						t.Fatalf("EnsureSRK again (recorded=%x): persisted=%v err=%v", rec, persisted, err)
					}
				}
			})
		}
		t.Run("foreign", func(t *testing.T) {
			other := tpm2.RSASRKTemplate
			other.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: []byte("someone else's SRK")})
			foreign := putKey(t, e.tpm, tpm2.TPMRHOwner, other, SRKHandleRSA)
			for _, rec := range [][]byte{nil, bytes.Repeat([]byte{0}, 34)} {
				if _, _, err := e.tpm.EnsureSRK(RSA2048, nil, rec); !errors.Is(err, ErrForeignKey) {
					t.Fatalf("EnsureSRK over a foreign SRK (recorded=%x): %v, want ErrForeignKey", rec, err)
				}
			}
			if k, err := e.tpm.ReadPublic(SRKHandleRSA); err != nil || !bytes.Equal(k.Name, foreign.Name) {
				t.Fatalf("the foreign SRK was touched: %v", err)
			}
			// The one this station recorded is reused.
			k, persisted, err := e.tpm.EnsureSRK(RSA2048, nil, foreign.Name)
			if err != nil || persisted || !bytes.Equal(k.Name, foreign.Name) {
				t.Fatalf("EnsureSRK with the recorded name: persisted=%v err=%v", persisted, err)
			}
		})
	})
}

func TestDeviceKey(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		srk, pub, priv, k := persistDeviceKey(t, e.tpm, RSA2048)
		const h = DefaultDeviceKeyHandle
		if !bytes.Equal(k.Public, pub) || k.Handle != h {
			t.Fatal("persisted key differs from the created one")
		}
		checkTemplate(t, k, DeviceKeyTemplate)
		rp, err := e.tpm.ReadPublic(h)
		if err != nil || !bytes.Equal(rp.Name, k.Name) {
			t.Fatalf("ReadPublic(%#x): %v", uint32(h), err)
		}
		// Resuming: the same key again is fine; another key is refused.
		if again, err := e.tpm.PersistDeviceKey(srk, pub, priv, h, nil); err != nil || !bytes.Equal(again.Name, k.Name) {
			t.Fatalf("PersistDeviceKey again: %v", err)
		}
		pub2, priv2, err := e.tpm.CreateDeviceKey(srk)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.tpm.PersistDeviceKey(srk, pub2, priv2, h, nil); !errors.Is(err, ErrForeignKey) {
			t.Fatalf("PersistDeviceKey over another key: %v, want ErrForeignKey", err)
		}
		for _, bad := range []tpm2.TPMHandle{DPSKeyHandle, EKHandleRSA, SRKHandleRSA, 0x81800000, 0x80000001} {
			if _, err := e.tpm.PersistDeviceKey(srk, pub2, priv2, bad, nil); err == nil {
				t.Fatalf("PersistDeviceKey at %#x accepted", uint32(bad))
			}
		}
		if _, err := e.tpm.ReadPublic(0x81000011); !errors.Is(err, ErrHandleEmpty) {
			t.Fatalf("ReadPublic of an empty handle: %v, want ErrHandleEmpty", err)
		}

		s, err := e.tpm.Signer(k)
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256([]byte("challenge"))
		sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		ecPub := k.Pub.(*ecdsa.PublicKey)
		if !ecdsa.VerifyASN1(ecPub, digest[:], sig) {
			t.Fatal("TPM signature does not verify")
		}
		digest[0] ^= 1
		if ecdsa.VerifyASN1(ecPub, digest[:], sig) {
			t.Fatal("signature verifies over another digest")
		}
		csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "unit-0001"}}, s)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := x509.ParseCertificateRequest(csrDER)
		if err != nil {
			t.Fatal(err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("CSR signed in the TPM: %v", err)
		}
		if !csr.PublicKey.(*ecdsa.PublicKey).Equal(ecPub) {
			t.Fatal("CSR key is not the device key")
		}
	})
}

// The blob TPM2_Create returned loads under its SRK (what a TSS2 key file
// holder does) and gives the persisted key's Name; an edited blob, or the
// blob under another parent, is refused by the TPM.
func TestCheckKeyBlob(t *testing.T) {
	eachTPM(t, swtpmtest.Options{}, func(t *testing.T, e *env) {
		srk, pub, priv, k := persistDeviceKey(t, e.tpm, RSA2048)
		loaded, err := e.tpm.CheckKeyBlob(srk, pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(loaded.Name, k.Name) || loaded.Handle != 0 {
			t.Fatalf("loaded blob: name %x handle %#x, want the persisted key's name %x", loaded.Name, uint32(loaded.Handle), k.Name)
		}
		bad := bytes.Clone(priv)
		bad[len(bad)-1] ^= 1
		if _, err := e.tpm.CheckKeyBlob(srk, pub, bad); err == nil {
			t.Fatal("an edited private blob loads")
		}
		other, _, err := e.tpm.EnsureSRK(ECCP256, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.tpm.CheckKeyBlob(other, pub, priv); err == nil {
			t.Fatal("the blob loads under another parent")
		}
		if _, err := e.tpm.CheckKeyBlob(srk, pub[:len(pub)-1], priv); err == nil {
			t.Fatal("a truncated public loads")
		}
	})
}

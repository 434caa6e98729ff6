package credbundle_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
)

func TestBundleRoundTrip(t *testing.T) {
	pki := bundletest.NewPKI(t)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edKey := bundletest.NewEd25519(t)
	for _, s := range []struct {
		name   string
		signer crypto.Signer
		alg    string
	}{{"ed25519", edKey, credbundle.SigEd25519}, {"ecdsa-p256", ecKey, credbundle.SigECDSAP256}} {
		t.Run(s.name, func(t *testing.T) {
			b, err := credbundle.NewBundle(pki.BaseBundle(t, "SN-0001"))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Sign(s.signer); err != nil {
				t.Fatal(err)
			}
			if b.SigAlg != s.alg {
				t.Errorf("sig alg %q, want %q", b.SigAlg, s.alg)
			}
			img, err := b.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			got, err := credbundle.VerifyBundle(img, s.signer.Public())
			if err != nil {
				t.Fatalf("VerifyBundle: %v", err)
			}
			if !bytes.Equal(got.Digest, b.Digest) || got.Serial != "SN-0001" || got.IDScope != "0ne00002193" ||
				got.DeviceKeyHandle != 0x81000010 || !bytes.Equal(got.CertPEM, b.CertPEM) || !bytes.Equal(got.ChainPEM, b.ChainPEM) {
				t.Errorf("image round trip changed the bundle: %v vs %v", got, b)
			}
			img2, _ := got.MarshalBinary()
			if !bytes.Equal(img, img2) {
				t.Error("re-encoding a parsed image changes its bytes")
			}
			files, err := b.Folder()
			if err != nil {
				t.Fatal(err)
			}
			fb, err := credbundle.ParseFolder(files)
			if err != nil {
				t.Fatalf("ParseFolder: %v", err)
			}
			if err := fb.Verify(s.signer.Public()); err != nil {
				t.Fatalf("folder Verify: %v", err)
			}
			if !bytes.Equal(fb.Digest, b.Digest) {
				t.Error("folder and image digests differ")
			}
		})
	}
}

func TestBundleDigestDeterministic(t *testing.T) {
	pki := bundletest.NewPKI(t)
	base := pki.BaseBundle(t, "SN-0001")
	a, b := bundletest.Signed(t, base, bundletest.NewEd25519(t)), bundletest.Signed(t, base, bundletest.NewEd25519(t))
	// Different keys, different key IDs: different digests.
	if bytes.Equal(a.Digest, b.Digest) {
		t.Error("digest does not cover the signer's key ID")
	}
	k := bundletest.NewEd25519(t)
	c, d := bundletest.Signed(t, base, k), bundletest.Signed(t, base, k)
	if !bytes.Equal(c.Digest, d.Digest) {
		t.Error("same contents, same key: digests differ")
	}
}

// Every bit of the image matters: flipping any one makes verification fail.
func TestBundleBitFlips(t *testing.T) {
	f := bundletest.NewFixture(t)
	b := f.SymBundle(t, "SN-0002", bytes.Repeat([]byte{0x5a}, 32))
	img, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	pub := f.Key.Public()
	if _, err := credbundle.VerifyBundle(img, pub); err != nil {
		t.Fatal(err)
	}
	for i := range img {
		for bit := 0; bit < 8; bit++ {
			mod := bytes.Clone(img)
			mod[i] ^= 1 << bit
			if _, err := credbundle.VerifyBundle(mod, pub); err == nil {
				t.Fatalf("flipping bit %d of byte %d still verifies", bit, i)
			}
		}
	}
	for n := 0; n < len(img); n++ {
		if _, err := credbundle.VerifyBundle(img[:n], pub); err == nil {
			t.Fatalf("truncated to %d bytes still verifies", n)
		}
	}
	if _, err := credbundle.VerifyBundle(append(bytes.Clone(img), 0), pub); err == nil {
		t.Fatal("a trailing byte still verifies")
	}
}

func TestBundleWrongKey(t *testing.T) {
	f := bundletest.NewFixture(t)
	img, _ := f.Bundle(t, "SN-0003").MarshalBinary()
	other := bundletest.NewEd25519(t)
	if _, err := credbundle.VerifyBundle(img, other.Public()); !errors.Is(err, credbundle.ErrSignature) {
		t.Errorf("other Ed25519 key: %v, want credbundle.ErrSignature", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := credbundle.VerifyBundle(img, ec.Public()); !errors.Is(err, credbundle.ErrSignature) {
		t.Errorf("ECDSA key: %v, want credbundle.ErrSignature", err)
	}
	// A forger re-signs an edited bundle with their own key: their key ID is
	// in it, and the station key rejects it.
	b, _ := credbundle.ParseImage(img)
	b.IDScope = "0ne0000evil"
	if err := b.Sign(other); err != nil {
		t.Fatal(err)
	}
	forged, _ := b.MarshalBinary()
	if _, err := credbundle.VerifyBundle(forged, f.Key.Public()); !errors.Is(err, credbundle.ErrSignature) {
		t.Errorf("re-signed by another key: %v, want credbundle.ErrSignature", err)
	}
}

func TestBundleSignerKinds(t *testing.T) {
	pki := bundletest.NewPKI(t)
	b, _ := credbundle.NewBundle(pki.BaseBundle(t, "SN-1"))
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	if err := b.Sign(rk); err == nil {
		t.Error("an RSA station key was accepted")
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err := b.Sign(p384); err == nil {
		t.Error("a P-384 station key was accepted")
	}
	// A signer whose signatures do not verify (a broken HSM) is caught.
	if err := b.Sign(badSigner{bundletest.NewEd25519(t)}); err == nil {
		t.Error("a broken signer's output was accepted")
	}
}

type badSigner struct{ ed25519.PrivateKey }

func (s badSigner) Sign(r io.Reader, m []byte, o crypto.SignerOpts) ([]byte, error) {
	sig, err := s.PrivateKey.Sign(r, m, o)
	sig[0] ^= 1
	return sig, err
}

// Hand edits of the folder form are caught: any field of the manifest, a
// swapped certificate, an added or removed file.
func TestFolderEdits(t *testing.T) {
	f := bundletest.NewFixture(t)
	b := f.SymBundle(t, "SN-0004", bytes.Repeat([]byte{7}, 32))
	files, _ := b.Folder()
	pub := f.Key.Public()
	check := func(t *testing.T, files map[string][]byte) error {
		t.Helper()
		b, err := credbundle.ParseFolder(files)
		if err != nil {
			return err
		}
		return b.Verify(pub)
	}
	if err := check(t, files); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(files[credbundle.FileManifest], &m); err != nil {
		t.Fatal(err)
	}
	for key, val := range map[string]any{
		"serial": "SN-0005", "registration_id": "reg-other", "id_scope": "0ne0000beef",
		"global_endpoint": "evil.example.com", "device_key_handle": "0x81000011",
		"firmware_sha256": strings.Repeat("0", 64), "firmware_version": "9.9", "station_id": "rogue",
		"attestation": "x509", "version": 2, "format": "other", "sig_alg": credbundle.SigECDSAP256, "extra": "x",
	} {
		t.Run("manifest."+key, func(t *testing.T) {
			mm := map[string]any{}
			for k, v := range m {
				mm[k] = v
			}
			mm[key] = val
			mod := cloneFiles(files)
			mod[credbundle.FileManifest], _ = json.Marshal(mm)
			if err := check(t, mod); err == nil {
				t.Errorf("editing %s went unnoticed", key)
			}
		})
	}
	t.Run("cert swapped", func(t *testing.T) {
		mod := cloneFiles(files)
		mod[credbundle.FileCert] = f.PKI.LeafPEM(t, "reg-sn-0004")
		if err := check(t, mod); !errors.Is(err, credbundle.ErrSignature) {
			t.Errorf("got %v, want credbundle.ErrSignature", err)
		}
	})
	t.Run("chain dropped", func(t *testing.T) {
		mod := cloneFiles(files)
		mod[credbundle.FileChain] = nil
		if err := check(t, mod); !errors.Is(err, credbundle.ErrSignature) {
			t.Errorf("got %v, want credbundle.ErrSignature", err)
		}
	})
	t.Run("key edited", func(t *testing.T) {
		mod := cloneFiles(files)
		mod[credbundle.FileSymmetricKey] = bytes.Repeat([]byte{8}, 32)
		if err := check(t, mod); !errors.Is(err, credbundle.ErrSignature) {
			t.Errorf("got %v, want credbundle.ErrSignature", err)
		}
	})
	t.Run("key removed", func(t *testing.T) {
		mod := cloneFiles(files)
		delete(mod, credbundle.FileSymmetricKey)
		if err := check(t, mod); err == nil {
			t.Error("removing the key went unnoticed")
		}
	})
	t.Run("file added", func(t *testing.T) {
		mod := cloneFiles(files)
		mod["extra.txt"] = []byte("x")
		if err := check(t, mod); !errors.Is(err, credbundle.ErrBundle) {
			t.Errorf("got %v, want credbundle.ErrBundle", err)
		}
	})
	t.Run("key block in chain", func(t *testing.T) {
		mod := cloneFiles(files)
		mod[credbundle.FileChain] = append(bytes.Clone(mod[credbundle.FileChain]), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"...)
		if err := check(t, mod); !errors.Is(err, credbundle.ErrBundle) {
			t.Errorf("got %v, want credbundle.ErrBundle", err)
		}
	})
	t.Run("signature edited", func(t *testing.T) {
		mm := map[string]any{}
		for k, v := range m {
			mm[k] = v
		}
		sig, _ := base64.StdEncoding.DecodeString(m["signature"].(string))
		sig[len(sig)-1] ^= 1
		mm["signature"] = base64.StdEncoding.EncodeToString(sig)
		mod := cloneFiles(files)
		mod[credbundle.FileManifest], _ = json.Marshal(mm)
		if err := check(t, mod); !errors.Is(err, credbundle.ErrSignature) {
			t.Errorf("got %v, want credbundle.ErrSignature", err)
		}
	})
}

func cloneFiles(m map[string][]byte) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range m {
		out[k] = bytes.Clone(v)
	}
	return out
}

func TestNewBundleChecks(t *testing.T) {
	pki := bundletest.NewPKI(t)
	sealed := append(append([]byte{0, 3}, "pub"...), append([]byte{0, 4}, "priv"...)...)
	for _, tc := range []struct {
		name string
		edit func(*credbundle.Bundle)
	}{
		{"serial injection", func(b *credbundle.Bundle) { b.Serial = "; rm -rf /" }},
		{"serial traversal", func(b *credbundle.Bundle) { b.Serial = "../../etc" }},
		{"serial option", func(b *credbundle.Bundle) { b.Serial = "-rf" }},
		{"registration ID upper case", func(b *credbundle.Bundle) { b.RegistrationID = "REG-1" }},
		{"CN is not the registration ID", func(b *credbundle.Bundle) { b.CertPEM = pki.LeafPEM(t, "someone-else") }},
		{"two certificates", func(b *credbundle.Bundle) { b.CertPEM = append(pki.LeafPEM(t, b.RegistrationID), pki.ChainPEM()...) }},
		{"key in the chain", func(b *credbundle.Bundle) {
			b.ChainPEM = append(b.ChainPEM, "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"...)
		}},
		{"garbage chain", func(b *credbundle.Bundle) { b.ChainPEM = []byte("hello") }},
		{"attestation", func(b *credbundle.Bundle) { b.Attestation = "none" }},
		{"ID scope with newline", func(b *credbundle.Bundle) { b.IDScope = "0ne\n" }},
		{"empty endpoint", func(b *credbundle.Bundle) { b.GlobalEndpoint = "" }},
		{"non-persistent device key", func(b *credbundle.Bundle) { b.DeviceKeyHandle = 0x80000001 }},
		{"firmware hash", func(b *credbundle.Bundle) { b.FirmwareSHA256 = "abc" }},
		{"firmware hash upper case", func(b *credbundle.Bundle) { b.FirmwareSHA256 = strings.ToUpper(bundletest.FirmwareSHA()) }},
		{"symmetric key with TPM attestation", func(b *credbundle.Bundle) { b.SymmetricKey = make([]byte, 32) }},
		{"sealed key with x509", func(b *credbundle.Bundle) { b.Attestation = credbundle.AttestX509; b.SealedKey = sealed }},
		{"both keys", func(b *credbundle.Bundle) {
			b.Attestation = credbundle.AttestSymmetricKey
			b.SealedKey, b.SymmetricKey = sealed, make([]byte, 32)
		}},
		{"short symmetric key", func(b *credbundle.Bundle) {
			b.Attestation, b.DeviceKeyHandle, b.SymmetricKey = credbundle.AttestSymmetricKey, 0, make([]byte, 8)
		}},
		{"clear key for a unit with a TPM", func(b *credbundle.Bundle) {
			b.Attestation, b.SymmetricKey = credbundle.AttestSymmetricKey, make([]byte, 32)
		}},
		{"sealed blob with trailing bytes", func(b *credbundle.Bundle) {
			b.Attestation = credbundle.AttestSymmetricKey
			b.SealedKey = append(bytes.Clone(sealed), 0)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := pki.BaseBundle(t, "SN-1")
			tc.edit(&b)
			if _, err := credbundle.NewBundle(b); !errors.Is(err, credbundle.ErrBundle) {
				t.Errorf("got %v, want credbundle.ErrBundle", err)
			}
		})
	}
	t.Run("sealed key ok", func(t *testing.T) {
		b := pki.BaseBundle(t, "SN-1")
		b.Attestation, b.SealedKey = credbundle.AttestSymmetricKey, sealed
		if _, err := credbundle.NewBundle(b); err != nil {
			t.Error(err)
		}
	})
}

// Key material never leaves through fmt, encoding/json, Summary or errors.
func TestSecretsNeverPrinted(t *testing.T) {
	f := bundletest.NewFixture(t)
	key := []byte("THIS-IS-THE-DEVICE-KEY-0123456789")
	b := f.SymBundle(t, "SN-0006", key)
	js, _ := json.Marshal(b)
	jv, _ := json.Marshal(*b)
	sm, _ := json.Marshal(b.Summary())
	outs := []string{
		fmt.Sprintf("%v %+v %#v %s", b, b, b, b),
		fmt.Sprintf("%v %+v %#v", *b, *b, *b),
		fmt.Sprintf("%x %X %s %q %v", b.SymmetricKey, b.SymmetricKey, b.SymmetricKey, b.SymmetricKey, []any{b.SymmetricKey}),
		string(js), string(jv), string(sm), b.String(),
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("flash", "bundle", b, "value", *b, "key", b.SymmetricKey)
	}
	outs = append(outs, logs.String())
	for _, o := range outs {
		bundletest.AssertNoSecret(t, o, key)
	}
	if !strings.Contains(string(sm), "clear (33 bytes)") {
		t.Errorf("summary does not say a key is there: %s", sm)
	}
	// The encodings (the device's credential store) do hold it.
	img, _ := b.MarshalBinary()
	if !bytes.Contains(img, key) {
		t.Error("the image lost the key")
	}
}

func TestParseImageStrict(t *testing.T) {
	f := bundletest.NewFixture(t)
	img, _ := f.Bundle(t, "SN-7").MarshalBinary()
	// Re-order two records: refused even though the content is the same.
	hdr := len(credbundle.ImageMagic) + 2
	l1 := int(binary.BigEndian.Uint32(img[hdr+2:]))
	r1 := img[hdr : hdr+6+l1]
	l2 := int(binary.BigEndian.Uint32(img[hdr+6+l1+2:]))
	r2 := img[hdr+6+l1 : hdr+6+l1+6+l2]
	swapped := append(append(append(bytes.Clone(img[:hdr]), r2...), r1...), img[hdr+len(r1)+len(r2):]...)
	if _, err := credbundle.ParseImage(swapped); !errors.Is(err, credbundle.ErrBundle) {
		t.Errorf("swapped records: %v", err)
	}
	v2 := bytes.Clone(img)
	v2[len(credbundle.ImageMagic)+1] = 2
	if _, err := credbundle.ParseImage(v2); err == nil || !strings.Contains(err.Error(), "version 2") {
		t.Errorf("version 2: %v", err)
	}
	if _, err := credbundle.ParseImage(make([]byte, credbundle.MaxImageSize+1)); !errors.Is(err, credbundle.ErrBundle) {
		t.Errorf("oversized: %v", err)
	}
}

func FuzzParseImage(f *testing.F) {
	fx := bundletest.NewFixture(f)
	img, _ := fx.Bundle(f, "SN-8").MarshalBinary()
	f.Add(img)
	dk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	img2, _ := bundletest.Signed(f, fx.PKI.TPMKeyBundle(f, "SN-8", &dk.PublicKey), fx.Key).MarshalBinary()
	f.Add(img2)
	f.Add([]byte(credbundle.ImageMagic + "\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := credbundle.ParseImage(data)
		if err != nil {
			return
		}
		// Whatever parses re-encodes to the same bytes.
		out, err := b.MarshalBinary()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("parsed image does not re-encode to itself (%v)", err)
		}
	})
}

func FuzzParseFolderManifest(f *testing.F) {
	fx := bundletest.NewFixture(f)
	files, _ := fx.Bundle(f, "SN-9").Folder()
	f.Add(files[credbundle.FileManifest])
	f.Fuzz(func(t *testing.T, manifest []byte) {
		mod := cloneFiles(files)
		mod[credbundle.FileManifest] = manifest
		b, err := credbundle.ParseFolder(mod)
		if err != nil {
			return
		}
		if b.Verify(fx.Key.Public()) == nil && !bytes.Equal(b.Digest, mustDigest(files)) {
			t.Fatal("a different manifest verifies")
		}
	})
}

func mustDigest(files map[string][]byte) []byte {
	b, err := credbundle.ParseFolder(files)
	if err != nil {
		panic(err)
	}
	return b.Digest
}

package flash

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite testdata/golden-v1 (never for a released format)")

// Golden bundles are frozen: made once with fixed test keys, committed, and
// every later version of this package must keep reading and verifying them.
var goldens = []struct {
	dir    string
	serial string
	attest string
}{
	{"ed25519-sealed", "SN-GOLD-1", AttestSymmetricKey},
	{"ecdsa-tpm", "SN-GOLD-2", AttestTPM},
}

func goldenKey(name string) crypto.Signer {
	seed := bytes.Repeat([]byte{0x42}, 32)
	if name == "ed25519-sealed" {
		return ed25519.NewKeyFromSeed(seed)
	}
	// A fixed P-256 scalar (test only).
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), seed)
	if err != nil {
		panic(err)
	}
	return k
}

func writeGolden(t *testing.T) {
	pki := newTestPKI(t)
	for _, g := range goldens {
		dir := filepath.Join("testdata", "golden-v1", g.dir)
		os.RemoveAll(dir)
		if err := os.MkdirAll(filepath.Join(dir, DirBundle), 0o755); err != nil {
			t.Fatal(err)
		}
		b := pki.baseBundle(t, g.serial)
		b.Attestation = g.attest
		if g.attest == AttestSymmetricKey {
			b.DeviceKeyHandle = 0
			b.SealedKey = append(append([]byte{0, 6}, "public"...), append([]byte{0, 7}, "private"...)...)
		}
		key := goldenKey(g.dir)
		sb := signed(t, b, key)
		img, _ := sb.MarshalBinary()
		os.WriteFile(filepath.Join(dir, DirImage), img, 0o644)
		files, _ := sb.Folder()
		for n, data := range files {
			os.WriteFile(filepath.Join(dir, DirBundle, n), data, 0o644)
		}
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		os.WriteFile(filepath.Join(dir, "station.pub.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
		os.WriteFile(filepath.Join(dir, "digest.hex"), []byte(sb.DigestHex()+"\n"), 0o644)
	}
}

func TestGoldenV1(t *testing.T) {
	if *updateGolden {
		writeGolden(t)
	}
	for _, g := range goldens {
		t.Run(g.dir, func(t *testing.T) {
			dir := filepath.Join("testdata", "golden-v1", g.dir)
			pubPEM, err := os.ReadFile(filepath.Join(dir, "station.pub.pem"))
			if err != nil {
				t.Fatal(err)
			}
			blk, _ := pem.Decode(pubPEM)
			pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			img, _ := os.ReadFile(filepath.Join(dir, DirImage))
			b, err := VerifyBundle(img, pub)
			if err != nil {
				t.Fatalf("golden image no longer verifies: %v", err)
			}
			want, _ := os.ReadFile(filepath.Join(dir, "digest.hex"))
			if b.DigestHex()+"\n" != string(want) || b.Serial != g.serial || b.Attestation != g.attest {
				t.Errorf("golden image reads as %v", b)
			}
			fb, err := ReadFolder(filepath.Join(dir, DirBundle))
			if err != nil {
				t.Fatal(err)
			}
			if err := fb.Verify(pub); err != nil || !bytes.Equal(fb.Digest, b.Digest) {
				t.Fatalf("golden folder: %v", err)
			}
			// Re-encoding is stable: a parsed image writes the same bytes.
			again, _ := b.MarshalBinary()
			if !bytes.Equal(again, img) {
				t.Error("re-encoding the golden image changes it")
			}
		})
	}
}

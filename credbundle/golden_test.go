package credbundle_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
	"github.com/factory-id/station/internal/dirtest"
)

var (
	updateGolden   = flag.Bool("update-golden", false, "rewrite testdata/golden-v1 (never for a released format)")
	updateGoldenV2 = flag.Bool("update-golden-v2", false, "rewrite testdata/golden-v2 (never for a released format)")
)

// Golden bundles are frozen: made once with fixed test keys, committed, and
// every later version of this package must keep reading and verifying them.
var goldens = []struct {
	version int
	dir     string
	serial  string
	attest  string
}{
	{1, "ed25519-sealed", "SN-GOLD-1", credbundle.AttestSymmetricKey},
	{1, "ecdsa-tpm", "SN-GOLD-2", credbundle.AttestTPM},
	// credbundle.Version 2: the device key as a TSS2 key file (its TPM2B_PRIVATE a
	// stand-in: no TPM loads it) and device.json.
	{2, "ecdsa-x509-tpmkey", "SN-GOLD-3", credbundle.AttestX509},
}

// goldenFolder holds a golden bundle's folder form (named as the dir:
// target of package flash names it).
const goldenFolder = "station-bundle"

func goldenDir(version int, dir string) string {
	return filepath.Join("testdata", fmt.Sprintf("golden-v%d", version), dir)
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

func writeGolden(t *testing.T, version int) {
	pki := bundletest.NewPKI(t)
	for _, g := range goldens {
		if g.version != version {
			continue
		}
		dir := goldenDir(g.version, g.dir)
		os.RemoveAll(dir)
		if err := os.MkdirAll(filepath.Join(dir, goldenFolder), 0o755); err != nil {
			t.Fatal(err)
		}
		b := pki.BaseBundle(t, g.serial)
		if g.version == credbundle.Version2 {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			b = pki.TPMKeyBundle(t, g.serial, &k.PublicKey)
		}
		b.Attestation = g.attest
		if g.attest == credbundle.AttestSymmetricKey {
			b.DeviceKeyHandle = 0
			b.SealedKey = append(append([]byte{0, 6}, "public"...), append([]byte{0, 7}, "private"...)...)
		}
		key := goldenKey(g.dir)
		sb := bundletest.Signed(t, b, key)
		img, _ := sb.MarshalBinary()
		os.WriteFile(filepath.Join(dir, credbundle.FileImage), img, 0o644)
		files, _ := sb.Folder()
		for n, data := range files {
			os.WriteFile(filepath.Join(dir, goldenFolder, n), data, 0o644)
		}
		der, _ := x509.MarshalPKIXPublicKey(key.Public())
		os.WriteFile(filepath.Join(dir, "station.pub.pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
		os.WriteFile(filepath.Join(dir, "digest.hex"), []byte(sb.DigestHex()+"\n"), 0o644)
	}
}

func TestGolden(t *testing.T) {
	if *updateGolden {
		writeGolden(t, credbundle.Version1)
	}
	if *updateGoldenV2 {
		writeGolden(t, credbundle.Version2)
	}
	for _, g := range goldens {
		t.Run(fmt.Sprintf("v%d/%s", g.version, g.dir), func(t *testing.T) {
			dir := goldenDir(g.version, g.dir)
			pubPEM, err := os.ReadFile(filepath.Join(dir, "station.pub.pem"))
			if err != nil {
				t.Fatal(err)
			}
			blk, _ := pem.Decode(pubPEM)
			pub, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			img, _ := os.ReadFile(filepath.Join(dir, credbundle.FileImage))
			b, err := credbundle.VerifyBundle(img, pub)
			if err != nil {
				t.Fatalf("golden image no longer verifies: %v", err)
			}
			want, _ := os.ReadFile(filepath.Join(dir, "digest.hex"))
			if b.DigestHex()+"\n" != string(want) || b.Serial != g.serial || b.Attestation != g.attest || b.Version != g.version {
				t.Errorf("golden image reads as %v", b)
			}
			fb, err := credbundle.ParseFolder(dirtest.Read(t, filepath.Join(dir, goldenFolder)))
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

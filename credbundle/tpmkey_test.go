package credbundle_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/internal/bundletest"
	"github.com/factory-id/station/tsskey"
)

// A bundle carrying the TPM key file is version 2 in both forms, reads back
// the same, and its folder holds the key file and device.json; one without
// it stays version 1.
func TestBundleV2RoundTrip(t *testing.T) {
	pki := bundletest.NewPKI(t)
	station := bundletest.NewEd25519(t)
	if v1 := bundletest.Signed(t, pki.BaseBundle(t, "SN-0001"), station); v1.Version != credbundle.Version1 {
		t.Fatalf("a bundle without a TPM key file is version %d, want 1", v1.Version)
	}
	dk := bundletest.NewDeviceKey(t)
	b := bundletest.Signed(t, pki.TPMKeyBundle(t, "SN-0002", &dk.PublicKey), station)
	if b.Version != credbundle.Version2 {
		t.Fatalf("a bundle with a TPM key file is version %d, want 2", b.Version)
	}
	img, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if v := binary.BigEndian.Uint16(img[len(credbundle.ImageMagic):]); v != 2 {
		t.Fatalf("image version %d", v)
	}
	// The documented digest rule, with the v2 context.
	off := bytes.LastIndex(img, []byte{0xff, 0xfe, 0, 0, 0, 32})
	if want := sha256.Sum256(append([]byte("station-bundle/v2 digest\x00"), img[:off]...)); !bytes.Equal(want[:], b.Digest) {
		t.Fatal("v2 digest is not SHA-256 of the v2 context and the records")
	}
	got, err := credbundle.VerifyBundle(img, station.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.TPMKey, b.TPMKey) || got.Version != credbundle.Version2 {
		t.Fatal("the TPM key file did not survive the image round trip")
	}
	files, err := b.Folder()
	if err != nil {
		t.Fatal(err)
	}
	k, err := tsskey.ParsePEM(files[credbundle.FileTPMKey])
	if err != nil {
		t.Fatalf("%s: %v", credbundle.FileTPMKey, err)
	}
	if pub, _ := k.PublicKey(); !dk.PublicKey.Equal(pub) || k.Parent != 0x81000001 || !k.EmptyAuth {
		t.Errorf("%s holds parent 0x%08x, empty auth %v, another key", credbundle.FileTPMKey, k.Parent, k.EmptyAuth)
	}
	var d credbundle.DeviceManifest
	if err := json.Unmarshal(files[credbundle.FileDevice], &d); err != nil {
		t.Fatal(err)
	}
	if d.Format != "station-device" || d.Version != 1 || d.RegistrationID != b.RegistrationID || d.IDScope != b.IDScope ||
		d.GlobalEndpoint != b.GlobalEndpoint || d.Key.Handle != "0x81000010" || d.Key.File != credbundle.FileTPMKey ||
		d.Key.Parent != "0x81000001" || !d.Key.EmptyAuth || d.Certificate != credbundle.FileCert || d.Chain != credbundle.FileChain {
		t.Errorf("device.json: %+v", d)
	}
	for _, n := range []string{d.Key.File, d.Certificate, d.Chain} {
		if _, ok := files[n]; !ok {
			t.Errorf("device.json names %s, not in the folder", n)
		}
	}
	fb, err := credbundle.ParseFolder(files)
	if err != nil {
		t.Fatal(err)
	}
	if err := fb.Verify(station.Public()); err != nil || !bytes.Equal(fb.Digest, b.Digest) {
		t.Fatalf("v2 folder: %v", err)
	}
	if !strings.Contains(b.Summary()["bundle.tpm_key"], "tss2") {
		t.Errorf("summary: %v", b.Summary())
	}
}

// reencode rebuilds an image from records, with a digest computed by the
// documented rule for version (a forger who knows the format, not the key).
func reencode(t *testing.T, version uint16, recs [][2][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString(credbundle.ImageMagic)
	binary.Write(&buf, binary.BigEndian, version)
	for _, r := range recs {
		buf.Write(r[0])
		binary.Write(&buf, binary.BigEndian, uint32(len(r[1])))
		buf.Write(r[1])
	}
	ctx := "station-bundle/v1 digest\x00"
	if version == 2 {
		ctx = "station-bundle/v2 digest\x00"
	}
	d := sha256.Sum256(append([]byte(ctx), buf.Bytes()...))
	buf.Write([]byte{0xff, 0xfe, 0, 0, 0, 32})
	buf.Write(d[:])
	buf.Write([]byte{0xff, 0xff, 0, 0, 0, 64})
	buf.Write(make([]byte, 64))
	return buf.Bytes()
}

// records splits an image into its records before the digest.
func records(img []byte) [][2][]byte {
	var out [][2][]byte
	for rest := img[len(credbundle.ImageMagic)+2:]; len(rest) > 0; {
		n := binary.BigEndian.Uint32(rest[2:])
		if binary.BigEndian.Uint16(rest) >= 0xfffe { // the digest record
			break
		}
		out = append(out, [2][]byte{rest[:2], rest[6 : 6+n]})
		rest = rest[6+n:]
	}
	return out
}

func TestBundleV2Refusals(t *testing.T) {
	pki := bundletest.NewPKI(t)
	station := bundletest.NewEd25519(t)
	dk := bundletest.NewDeviceKey(t)
	good := pki.TPMKeyBundle(t, "SN-0003", &dk.PublicKey)

	t.Run("new", func(t *testing.T) {
		other := bundletest.NewDeviceKey(t)
		for name, mutate := range map[string]func(*credbundle.Bundle){
			"key the certificate does not certify": func(b *credbundle.Bundle) { b.TPMKey = bundletest.TSSKeyDER(t, &other.PublicKey, 0x81000001, true) },
			"parent is the owner hierarchy": func(b *credbundle.Bundle) {
				b.TPMKey = bundletest.TSSKeyDER(t, &dk.PublicKey, tsskey.OwnerHierarchy, true)
			},
			"key with a password": func(b *credbundle.Bundle) { b.TPMKey = bundletest.TSSKeyDER(t, &dk.PublicKey, 0x81000001, false) },
			"no persistent device key handle": func(b *credbundle.Bundle) {
				b.Attestation, b.DeviceKeyHandle = credbundle.AttestX509, 0
			},
			"garbage": func(b *credbundle.Bundle) { b.TPMKey = []byte{0x30, 0x00} },
		} {
			b := good
			mutate(&b)
			if _, err := credbundle.NewBundle(b); !errors.Is(err, credbundle.ErrBundle) {
				t.Errorf("%s: credbundle.NewBundle accepted it (%v)", name, err)
			}
		}
	})

	sb := bundletest.Signed(t, good, station)
	img, _ := sb.MarshalBinary()
	recs := records(img)
	t.Run("image", func(t *testing.T) {
		// The key record in a version 1 image, and a version 2 image
		// without it: each refused before any signature check.
		if _, err := credbundle.ParseImage(reencode(t, 1, recs)); !errors.Is(err, credbundle.ErrBundle) || !strings.Contains(err.Error(), "version 1") {
			t.Errorf("v1 image with record 16: %v", err)
		}
		if _, err := credbundle.ParseImage(reencode(t, 2, recs[:len(recs)-1])); !errors.Is(err, credbundle.ErrBundle) || !strings.Contains(err.Error(), "without its TPM key") {
			t.Errorf("v2 image without record 16: %v", err)
		}
		// The key file swapped for another unit's (a valid file the
		// certificate does not certify), digest recomputed.
		other := bundletest.NewDeviceKey(t)
		swapped := append(recs[:len(recs)-1:len(recs)-1], [2][]byte{{0, 16}, bundletest.TSSKeyDER(t, &other.PublicKey, 0x81000001, true)})
		if _, err := credbundle.ParseImage(reencode(t, 2, swapped)); !errors.Is(err, credbundle.ErrBundle) || !strings.Contains(err.Error(), "certifies") {
			t.Errorf("another key's file: %v", err)
		}
		// A version this package does not know.
		if _, err := credbundle.ParseImage(reencode(t, 3, recs)); !errors.Is(err, credbundle.ErrBundle) {
			t.Errorf("v3 image: %v", err)
		}
	})

	t.Run("folder", func(t *testing.T) {
		files, _ := sb.Folder()
		edit := func(f func(map[string][]byte)) map[string][]byte {
			c := map[string][]byte{}
			for k, v := range files {
				c[k] = bytes.Clone(v)
			}
			f(c)
			return c
		}
		flipped, _ := tsskey.ParseDER(sb.TPMKey)
		flipped.Private[len(flipped.Private)-1] ^= 1
		flippedPEM, _ := flipped.MarshalPEM()
		v1files, _ := bundletest.Signed(t, pki.BaseBundle(t, "SN-0004"), station).Folder()
		for name, c := range map[string]struct {
			files map[string][]byte
			want  error
		}{
			"device.json edited": {edit(func(m map[string][]byte) {
				m[credbundle.FileDevice] = bytes.Replace(m[credbundle.FileDevice], []byte("0x81000010"), []byte("0x81000011"), 1)
			}), credbundle.ErrBundle},
			"device.json missing": {edit(func(m map[string][]byte) { delete(m, credbundle.FileDevice) }), credbundle.ErrBundle},
			"key file missing":    {edit(func(m map[string][]byte) { delete(m, credbundle.FileTPMKey) }), credbundle.ErrBundle},
			"key file is a plain private key": {edit(func(m map[string][]byte) {
				m[credbundle.FileTPMKey] = bytes.ReplaceAll(m[credbundle.FileTPMKey], []byte("TSS2 PRIVATE KEY"), []byte("PRIVATE KEY"))
			}), credbundle.ErrBundle},
			"private blob flipped": {edit(func(m map[string][]byte) { m[credbundle.FileTPMKey] = flippedPEM }), credbundle.ErrSignature},
			"v1 folder with device.json": {func() map[string][]byte {
				m := map[string][]byte{credbundle.FileDevice: files[credbundle.FileDevice]}
				for k, v := range v1files {
					m[k] = v
				}
				return m
			}(), credbundle.ErrBundle},
		} {
			b, err := credbundle.ParseFolder(c.files)
			if err == nil {
				err = b.Verify(station.Public())
			}
			if !errors.Is(err, c.want) {
				t.Errorf("%s: got %v, want %v", name, err, c.want)
			}
		}
	})
}

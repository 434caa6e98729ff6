package credbundle_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/factory-id/station/credbundle"
)

// The format can be verified without this package: walk the records to the
// digest, hash the prefix as docs/BUNDLE.md says, and let openssl check the
// signature against the station public key.
func TestGoldenWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	for _, g := range goldens {
		t.Run(g.dir, func(t *testing.T) {
			dir := goldenDir(g.version, g.dir)
			img, err := os.ReadFile(filepath.Join(dir, credbundle.FileImage))
			if err != nil {
				t.Fatal(err)
			}
			var prefix, digest, sig []byte
			for off := 10; off < len(img); {
				tag := binary.BigEndian.Uint16(img[off:])
				n := int(binary.BigEndian.Uint32(img[off+2:]))
				switch tag {
				case 0xfffe:
					prefix, digest = img[:off], img[off+6:off+6+n]
				case 0xffff:
					sig = img[off+6 : off+6+n]
				}
				off += 6 + n
			}
			want := sha256.Sum256(append([]byte(fmt.Sprintf("station-bundle/v%d digest\x00", g.version)), prefix...))
			if !bytes.Equal(want[:], digest) {
				t.Fatal("digest recomputed by the documented rule differs")
			}
			tmp := t.TempDir()
			sigCtx := fmt.Sprintf("station-bundle/v%d signature\x00", g.version)
			msg := filepath.Join(tmp, "msg")
			sigf := filepath.Join(tmp, "sig")
			os.WriteFile(msg, append([]byte(sigCtx), digest...), 0o600)
			os.WriteFile(sigf, sig, 0o600)
			pub := filepath.Join(dir, "station.pub.pem")
			var cmd *exec.Cmd
			if g.dir == "ed25519-sealed" {
				cmd = exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msg, "-sigfile", sigf)
			} else {
				cmd = exec.Command("openssl", "dgst", "-sha256", "-verify", pub, "-signature", sigf, msg)
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("openssl: %v\n%s", err, out)
			}
			// and openssl refuses a flipped digest
			os.WriteFile(msg, append([]byte(sigCtx), append(bytes.Clone(digest[:31]), digest[31]^1)...), 0o600)
			if g.dir == "ed25519-sealed" {
				cmd = exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pub, "-rawin", "-in", msg, "-sigfile", sigf)
			} else {
				cmd = exec.Command("openssl", "dgst", "-sha256", "-verify", pub, "-signature", sigf, msg)
			}
			if err := cmd.Run(); err == nil {
				t.Fatal("openssl accepted a changed digest")
			}
		})
	}
}

package station

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/swtpmtest"
	"github.com/factory-id/station/tpmops"
)

// EK certificate NV indices the shapes below rewrite.
const (
	nvRSALow   = 0x01C00002
	nvECCLow   = 0x01C0000A
	nvRSAHigh  = 0x01C00012
	nvP384High = 0x01C00016
	nvChain    = 0x01C00100
)

// nvTool rewrites a swtpm's EK certificate indices with tpm2-tools, as a
// vendor's manufacturing would have left them (platform authorization).
type nvTool struct {
	t    *testing.T
	inst *swtpmtest.Instance
}

func (n nvTool) read(index uint32) []byte {
	n.t.Helper()
	tpm, err := tpmops.Open(n.inst.Addr)
	if err != nil {
		n.t.Fatal(err)
	}
	defer tpm.Close()
	raw, err := tpm.NVRead(index)
	if err != nil {
		n.t.Fatal(err)
	}
	der, err := tpmops.UnwrapEKCert(raw)
	if err != nil {
		n.t.Fatal(err)
	}
	return der
}

func (n nvTool) undefine(index uint32) {
	n.t.Helper()
	tpm2tools(n.t, n.inst, "tpm2_nvundefine", "-C", "p", fmt.Sprintf("%#x", index))
}

func (n nvTool) write(index uint32, data []byte) {
	n.t.Helper()
	f := filepath.Join(n.t.TempDir(), "nv.bin")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		n.t.Fatal(err)
	}
	idx := fmt.Sprintf("%#x", index)
	tpm2tools(n.t, n.inst, "tpm2_nvdefine", "-C", "p", "-s", fmt.Sprint(len(data)),
		"-a", "ppwrite|ppread|ownerread|authread|no_da|platformcreate", idx)
	tpm2tools(n.t, n.inst, "tpm2_nvwrite", "-C", "p", "-i", f, idx)
}

// move rewrites index from with data at index to.
func (n nvTool) move(from, to uint32, data []byte) {
	n.t.Helper()
	n.undefine(from)
	n.write(to, data)
}

func tcgHeader(der []byte) []byte {
	n := len(der) + 2
	return append([]byte{0x10, 0x01, 0x00, byte(n >> 8), byte(n), 0x10, 0x02}, der...)
}

func pemDER(t *testing.T, p []byte) []byte {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}

// TestEKCertShapes rewrites each swtpm unit's NV to hold its own EK
// certificate the way real chips carry theirs, under a test vendor CA, and
// requires provisioning to pass on each, enrolling exactly the certificate
// of the configured EK, and `station verify`'s ek-cert check to pass too.
func TestEKCertShapes(t *testing.T) {
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	stranger := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor}) // another chip of the same vendor
	strangerRSA := nvTool{t, stranger}.read(nvRSALow)
	issuerDER := pemDER(t, vendor.IssuerPEM)
	for _, tc := range []struct {
		name string
		ek   string
		// shape rewrites NV and returns the certificate that must be
		// enrolled; mutate adjusts the config.
		shape  func(t *testing.T, n nvTool) []byte
		mutate func(t *testing.T, c *configs.Config)
	}{
		{name: "padded with 0xFF (ST33)", shape: func(t *testing.T, n nvTool) []byte {
			der := n.read(nvRSALow)
			n.undefine(nvRSALow)
			n.write(nvRSALow, append(bytes.Clone(der), bytes.Repeat([]byte{0xff}, 431)...))
			return der
		}},
		{name: "TCG PC-Client header and 0x00 padding", shape: func(t *testing.T, n nvTool) []byte {
			der := n.read(nvRSALow)
			n.undefine(nvRSALow)
			n.write(nvRSALow, append(tcgHeader(der), make([]byte, 64)...))
			return der
		}},
		{name: "RSA certificate in the high range only", shape: func(t *testing.T, n nvTool) []byte {
			der := n.read(nvRSALow)
			n.move(nvRSALow, nvRSAHigh, der)
			n.undefine(nvP384High)
			return der
		}},
		// Subtest names become swtpm state paths: no commas (swtpm option separators).
		{name: "ECC P-384 EK from the high range beside an RSA one", ek: "ecc-p384", shape: func(t *testing.T, n nvTool) []byte {
			return n.read(nvP384High) // as swtpm_setup leaves it: RSA low, P-384 high
		}},
		{name: "another chip certificate at the low index and ours in the high range", shape: func(t *testing.T, n nvTool) []byte {
			der := n.read(nvRSALow)
			n.move(nvRSALow, nvRSAHigh, der)
			n.write(nvRSALow, strangerRSA)
			n.write(nvECCLow, n.read(nvP384High))
			return der
		}},
		{name: "vendor intermediate in NV and only the root in the folder", shape: func(t *testing.T, n nvTool) []byte {
			n.write(nvChain, append(bytes.Clone(issuerDER), bytes.Repeat([]byte{0xff}, 32)...))
			return n.read(nvRSALow)
		}, mutate: func(t *testing.T, c *configs.Config) {
			if err := os.Remove(filepath.Join(c.TPM.VendorRoots, "issuer.pem")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "no certificate in NV and the offline folder has it", shape: func(t *testing.T, n nvTool) []byte {
			der := n.read(nvRSALow)
			n.undefine(nvRSALow)
			n.undefine(nvP384High)
			return der
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
			want := tc.shape(t, nvTool{t, inst})
			offline := t.TempDir()
			if strings.HasPrefix(tc.name, "no certificate") {
				name, err := tpmops.EKCertFileName(mustParse(t, want).PublicKey)
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(filepath.Join(offline, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: want}), 0o644)
				// A file named after another EK is never taken.
				other, _ := tpmops.EKCertFileName(mustParse(t, strangerRSA).PublicKey)
				os.WriteFile(filepath.Join(offline, other+".der"), want, 0o644)
			}
			l := newTestLine(t, func(c *configs.Config) {
				trustSwtpm(t, vendor)(c)
				c.TPM.EKCertDir = offline
				if tc.ek != "" {
					c.TPM.EK = tc.ek
				}
				if tc.ek == "ecc-p384" {
					// The DPS SDKs' TPM attestation takes an RSA EK.
					c.DPS.Attestation, c.DPS.RegistrationID = "x509", "{serial}"
				}
				if tc.mutate != nil {
					tc.mutate(t, c)
				}
			})
			if _, err := l.provision(Request{Serial: "SHAPE-1", TPMAddr: inst.Addr}); err != nil {
				t.Fatalf("provision: %v", err)
			}
			if u := l.unit("SHAPE-1"); !bytes.Equal(u.EKCert, want) {
				t.Fatal("the recorded EK certificate is not the one that certifies the configured EK, byte for byte")
			}
			rep, err := Verify(context.Background(), l.env, VerifyRequest{Serial: "SHAPE-1", TPM: inst.Addr})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range rep.Checks {
				if c.Name == CheckEKCert && !c.Passed {
					t.Fatalf("verify ek-cert: %s", c.Detail)
				}
			}
		})
	}
}

// TestEKCertShapeRefusals attacks the shapes: a certificate in the offline
// folder named after this EK but certifying another key, a TPM whose only
// certificate is another chip's, an intermediate in NV from another vendor.
// Each is refused as untrusted (exit 3), with nothing recorded as done.
func TestEKCertShapeRefusals(t *testing.T) {
	vendor := swtpmtest.Start(t, swtpmtest.Options{}).CA
	stranger := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
	strangerRSA := nvTool{t, stranger}.read(nvRSALow)
	otherVendor := swtpmtest.NewCA(t)
	for _, tc := range []struct {
		name   string
		shape  func(t *testing.T, n nvTool, offline string)
		mutate func(t *testing.T, c *configs.Config)
		want   error
	}{
		{name: "offline file named after this EK certifies another key", shape: func(t *testing.T, n nvTool, offline string) {
			der := n.read(nvRSALow)
			n.undefine(nvRSALow)
			n.undefine(nvP384High)
			name, _ := tpmops.EKCertFileName(mustParse(t, der).PublicKey)
			os.WriteFile(filepath.Join(offline, name+".der"), strangerRSA, 0o644)
		}, want: tpmops.ErrUntrustedEKCert},
		{name: "no certificate anywhere", shape: func(t *testing.T, n nvTool, offline string) {
			n.undefine(nvRSALow)
			n.undefine(nvP384High)
		}, want: tpmops.ErrNoEKCert},
		{name: "only another chip certificate in NV", shape: func(t *testing.T, n nvTool, offline string) {
			n.undefine(nvRSALow)
			n.write(nvRSALow, strangerRSA)
		}, want: tpmops.ErrUntrustedEKCert},
		{name: "intermediate in NV from another vendor", shape: func(t *testing.T, n nvTool, offline string) {
			n.write(nvChain, pemDER(t, otherVendor.IssuerPEM))
		}, mutate: func(t *testing.T, c *configs.Config) {
			os.Remove(filepath.Join(c.TPM.VendorRoots, "issuer.pem"))
		}, want: tpmops.ErrUntrustedEKCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst := swtpmtest.Start(t, swtpmtest.Options{VendorCA: vendor})
			offline := t.TempDir()
			tc.shape(t, nvTool{t, inst}, offline)
			l := newTestLine(t, func(c *configs.Config) {
				trustSwtpm(t, vendor)(c)
				c.TPM.EKCertDir = offline
				if tc.mutate != nil {
					tc.mutate(t, c)
				}
			})
			_, err := l.provision(Request{Serial: "SHAPE-X", TPMAddr: inst.Addr})
			if !errors.Is(err, tc.want) {
				t.Fatalf("provision = %v, want %v", err, tc.want)
			}
			if u := l.unit("SHAPE-X"); u != nil && len(u.EKCert) > 0 {
				t.Error("a refused EK certificate was recorded")
			}
		})
	}
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

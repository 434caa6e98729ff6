package flash

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/tpmops"
	"github.com/factory-id/station/tsskey"
)

// testPKI is a root, an intermediate and leaves issued from it.
type testPKI struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{}
	var err error
	p.rootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.interKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mk := func(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Now()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	p.root = mk(rt, rt, p.rootKey.Public(), p.rootKey)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test line"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	p.inter = mk(it, p.root, p.interKey.Public(), p.rootKey)
	_ = err
	return p
}

func (p *testPKI) leafPEM(t testing.TB, cn string) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return p.leafFor(t, cn, &k.PublicKey)
}

// leafFor issues a leaf for pub.
func (p *testPKI) leafFor(t testing.TB, cn string, pub *ecdsa.PublicKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.inter, pub, p.interKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func (p *testPKI) chainPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.inter.Raw})
}

var testFirmware = []byte("\x7fELF fake firmware image 1.2.3 \x00\x01\x02\xff")

func firmwareSHA() string {
	s := sha256.Sum256(testFirmware)
	return hex.EncodeToString(s[:])
}

func newEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// baseBundle is a valid, unsigned TPM-attestation bundle for serial.
func (p *testPKI) baseBundle(t testing.TB, serial string) Bundle {
	t.Helper()
	regID := "reg-" + lower(serial)
	return Bundle{
		Serial: serial, RegistrationID: regID, Attestation: AttestTPM, IDScope: "0ne00002193",
		GlobalEndpoint: "global.azure-devices-provisioning.net", DeviceKeyHandle: 0x81000010,
		CertPEM: p.leafPEM(t, regID), ChainPEM: p.chainPEM(), FirmwareSHA256: firmwareSHA(),
		FirmwareVersion: "1.2.3", StationID: "line1-st03",
	}
}

// tpmKeyBundle is a valid, unsigned version 2 bundle: baseBundle whose
// leaf certifies key, carrying key as a TSS2 key file under the SRK at
// 0x81000001 (with a stand-in TPM2B_PRIVATE: only a TPM could tell).
func (p *testPKI) tpmKeyBundle(t testing.TB, serial string, key *ecdsa.PublicKey) Bundle {
	t.Helper()
	b := p.baseBundle(t, serial)
	b.CertPEM = p.leafFor(t, b.RegistrationID, key)
	b.TPMKey = tssKeyDER(t, key, 0x81000001, true)
	return b
}

// tssKeyDER is a TSS2 key file for pub as a TPM describes a device key.
func tssKeyDER(t testing.TB, pub *ecdsa.PublicKey, parent uint32, emptyAuth bool) []byte {
	t.Helper()
	raw, err := pub.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	xy := raw.Bytes()[1:]
	tmpl := tpmops.DeviceKeyTemplate
	tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
		X: tpm2.TPM2BECCParameter{Buffer: xy[:32]}, Y: tpm2.TPM2BECCParameter{Buffer: xy[32:]},
	})
	k := tsskey.Key{EmptyAuth: emptyAuth, Parent: parent, Public: tpm2.Marshal(tpm2.New2B(tmpl)),
		Private: append([]byte{0, 32}, bytes.Repeat([]byte{0x5c}, 32)...)}
	der, err := k.MarshalDER()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 32
		}
	}
	return string(b)
}

// signed returns a signed bundle made from b.
func signed(t testing.TB, b Bundle, key crypto.Signer) *Bundle {
	t.Helper()
	nb, err := NewBundle(b)
	if err != nil {
		t.Fatalf("NewBundle: %v", err)
	}
	if err := nb.Sign(key); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return nb
}

func testFW(t testing.TB) *Firmware {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.bin")
	if err := os.WriteFile(path, testFirmware, 0o644); err != nil {
		t.Fatal(err)
	}
	fw, err := LoadFirmware(path, firmwareSHA())
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

// fixture is a PKI, a station key and a firmware.
type fixture struct {
	pki *testPKI
	key ed25519.PrivateKey
	fw  *Firmware
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return &fixture{pki: newTestPKI(t), key: newEd25519(t), fw: testFW(t)}
}

func (f *fixture) job(t testing.TB, serial string) Job {
	t.Helper()
	return Job{Serial: serial, Firmware: f.fw, Bundle: signed(t, f.pki.baseBundle(t, serial), f.key)}
}

// symJob is a symmetric-key unit without a TPM: a clear key in the bundle.
func (f *fixture) symJob(t testing.TB, serial string, key []byte) Job {
	t.Helper()
	b := f.pki.baseBundle(t, serial)
	b.Attestation = AttestSymmetricKey
	b.DeviceKeyHandle = 0
	b.SymmetricKey = key
	return Job{Serial: serial, Firmware: f.fw, Bundle: signed(t, b, f.key)}
}

// Package bundletest builds credential bundles for tests: a root and an
// intermediate CA with leaves issued from them, station keys, TSS2 key
// files and signed bundles (package credbundle), for the tests of
// credbundle and of flash, which writes them.
package bundletest

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
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"

	"github.com/factory-id/station/credbundle"
	"github.com/factory-id/station/tpmops"
	"github.com/factory-id/station/tsskey"
)

// PKI is a root, an intermediate and leaves issued from it.
type PKI struct {
	Root, Inter       *x509.Certificate
	RootKey, InterKey *ecdsa.PrivateKey
}

// NewPKI makes a fresh root and intermediate, valid from an hour ago for a day.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{}
	p.RootKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p.InterKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
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
	p.Root = mk(rt, rt, p.RootKey.Public(), p.RootKey)
	it := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "test line"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	p.Inter = mk(it, p.Root, p.InterKey.Public(), p.RootKey)
	return p
}

// LeafPEM issues a leaf for cn with a fresh key.
func (p *PKI) LeafPEM(t testing.TB, cn string) []byte {
	t.Helper()
	return p.LeafFor(t, cn, &NewDeviceKey(t).PublicKey)
}

// LeafFor issues a leaf for pub.
func (p *PKI) LeafFor(t testing.TB, cn string, pub *ecdsa.PublicKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Inter, pub, p.InterKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ChainPEM is the chain a bundle carries: the intermediate.
func (p *PKI) ChainPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Inter.Raw})
}

// Firmware is the test firmware image the bundles name.
var Firmware = []byte("\x7fELF fake firmware image 1.2.3 \x00\x01\x02\xff")

// FirmwareSHA is Firmware's SHA-256 in hex.
func FirmwareSHA() string {
	s := sha256.Sum256(Firmware)
	return hex.EncodeToString(s[:])
}

// NewEd25519 is a fresh Ed25519 station key.
func NewEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// NewDeviceKey is a fresh ECDSA P-256 key, as a device key is.
func NewDeviceKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// BaseBundle is a valid, unsigned TPM-attestation bundle for serial.
func (p *PKI) BaseBundle(t testing.TB, serial string) credbundle.Bundle {
	t.Helper()
	regID := "reg-" + strings.ToLower(serial)
	return credbundle.Bundle{
		Serial: serial, RegistrationID: regID, Attestation: credbundle.AttestTPM, IDScope: "0ne00002193",
		GlobalEndpoint: "global.azure-devices-provisioning.net", DeviceKeyHandle: 0x81000010,
		CertPEM: p.LeafPEM(t, regID), ChainPEM: p.ChainPEM(), FirmwareSHA256: FirmwareSHA(),
		FirmwareVersion: "1.2.3", StationID: "line1-st03",
	}
}

// TPMKeyBundle is a valid, unsigned version 2 bundle: BaseBundle whose
// leaf certifies key, carrying key as a TSS2 key file under the SRK at
// 0x81000001 (with a stand-in TPM2B_PRIVATE: only a TPM could tell).
func (p *PKI) TPMKeyBundle(t testing.TB, serial string, key *ecdsa.PublicKey) credbundle.Bundle {
	t.Helper()
	b := p.BaseBundle(t, serial)
	b.CertPEM = p.LeafFor(t, b.RegistrationID, key)
	b.TPMKey = TSSKeyDER(t, key, 0x81000001, true)
	return b
}

// TSSKeyDER is a TSS2 key file for pub as a TPM describes a device key.
func TSSKeyDER(t testing.TB, pub *ecdsa.PublicKey, parent uint32, emptyAuth bool) []byte {
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

// Signed returns a signed bundle made from b.
func Signed(t testing.TB, b credbundle.Bundle, key crypto.Signer) *credbundle.Bundle {
	t.Helper()
	nb, err := credbundle.NewBundle(b)
	if err != nil {
		t.Fatalf("NewBundle: %v", err)
	}
	if err := nb.Sign(key); err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return nb
}

// Fixture is a PKI and a station key.
type Fixture struct {
	PKI *PKI
	Key ed25519.PrivateKey
}

// NewFixture makes a fresh PKI and station key.
func NewFixture(t testing.TB) *Fixture {
	t.Helper()
	return &Fixture{PKI: NewPKI(t), Key: NewEd25519(t)}
}

// Bundle is serial's signed TPM-attestation bundle.
func (f *Fixture) Bundle(t testing.TB, serial string) *credbundle.Bundle {
	t.Helper()
	return Signed(t, f.PKI.BaseBundle(t, serial), f.Key)
}

// SymBundle is the signed bundle of a symmetric-key unit without a TPM: a
// clear key in the bundle.
func (f *Fixture) SymBundle(t testing.TB, serial string, key []byte) *credbundle.Bundle {
	t.Helper()
	b := f.PKI.BaseBundle(t, serial)
	b.Attestation = credbundle.AttestSymmetricKey
	b.DeviceKeyHandle = 0
	b.SymmetricKey = key
	return Signed(t, b, f.Key)
}

// AssertNoSecret fails t when s holds key in any spelling a log might use
// (raw, hex, base64).
func AssertNoSecret(t testing.TB, s string, key []byte) {
	t.Helper()
	for _, form := range []string{string(key), hex.EncodeToString(key), strings.ToUpper(hex.EncodeToString(key)),
		base64.StdEncoding.EncodeToString(key), base64.RawStdEncoding.EncodeToString(key), base64.RawURLEncoding.EncodeToString(key)} {
		if strings.Contains(s, form) {
			t.Fatalf("key material leaked: %q", s)
		}
	}
}

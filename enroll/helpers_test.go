package enroll

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
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/store"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func openDB(tb testing.TB) *store.DB {
	tb.Helper()
	db, err := store.Create(filepath.Join(tb.TempDir(), "station.db"), store.Options{StationID: "line1-st03", Timeout: time.Second}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func testSigner(tb testing.TB, seed byte) crypto.Signer {
	tb.Helper()
	return ed25519Key(seed)
}

func ed25519Key(seed byte) crypto.Signer {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, 32))
}

// fakeEK is a TPM2B_PUBLIC-shaped blob: 2-byte size, then n deterministic bytes.
func fakeEK(seed string) []byte {
	body := make([]byte, 0, 314)
	for i := 0; len(body) < 314; i++ {
		s := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", seed, i)))
		body = append(body, s[:]...)
	}
	body = body[:314]
	out := binary.BigEndian.AppendUint16(nil, uint16(len(body)))
	return append(out, body...)
}

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(tb testing.TB, cn string, parent *testCA) *testCA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(20 * 365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	signer, pcert := crypto.Signer(key), tmpl
	if parent != nil {
		signer, pcert = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, pcert, key.Public(), signer)
	if err != nil {
		tb.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

func (ca *testCA) leaf(tb testing.TB, cn string) []byte {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    t0, NotAfter: t0.Add(5 * 365 * 24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// tpmUnit is a provisioned TPM unit with an EK derived from seed.
func tpmUnit(serial, seed string, i int) *store.Unit {
	ek := fakeEK(seed)
	sum := sha256.Sum256(ek)
	return &store.Unit{
		Serial: serial, StationID: "st1", Status: store.StatusProvisioned, Attestation: AttestTPM,
		RegistrationID: RegistrationID(ek), EKPublic: ek, EKSHA256: hex.EncodeToString(sum[:]),
		SRKPublic:     fakeEK("srk-" + seed),
		CreatedAt:     t0.Add(time.Duration(i) * time.Minute),
		ProvisionedAt: t0.Add(time.Duration(i)*time.Minute + 30*time.Second),
	}
}

func tpmUnits(n int, prefix string) []*store.Unit {
	var out []*store.Unit
	for i := range n {
		s := fmt.Sprintf("%s%05d", prefix, i)
		out = append(out, tpmUnit(s, s, i))
	}
	return out
}

func baseOpts(tb testing.TB, format, out string) Options {
	return Options{
		Format: format, Out: out, StationID: "st1", Signer: testSigner(tb, 1),
		Profile: Profile{Line: "line1", Factory: "plant1", FirmwareVersion: "1.2.3"},
	}
}

// runExport exports as station does: the files in a read-only transaction,
// then the bookkeeping and the install in a short writable one.
func runExport(tb testing.TB, db *store.DB, o Options) *Result {
	tb.Helper()
	var res *Result
	err := db.View(func(tx *bolt.Tx) error {
		var err error
		res, err = Export(tx, o)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Discard()
	err = db.Update(func(tx *bolt.Tx) error {
		if err := res.Record(tx); err != nil {
			return err
		}
		return res.Install()
	})
	if err != nil {
		tb.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(o.Out), "."+filepath.Base(o.Out)+"*")); len(left) != 0 {
		tb.Fatalf("temporary files left behind: %v", left)
	}
	return res
}

func names(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// mustDeviceKey derives a symmetric-key unit's device key.
func mustDeviceKey(t testing.TB, groupKey []byte, registrationID string) []byte {
	t.Helper()
	k, err := DeviceKey(groupKey, registrationID)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

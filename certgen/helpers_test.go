package certgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCA is a CA made in memory for tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func mustKey(t testing.TB, kt KeyType) crypto.Signer {
	t.Helper()
	k, err := CreateKey("", kt)
	if err != nil {
		t.Fatal(err)
	}
	return k.Signer
}

// RSA-3072 generation takes a second (a minute under -race): the test
// PKIs share a few keys per process.
var rsaKeys struct {
	sync.Mutex
	keys []crypto.Signer
}

// pooledKey returns the i-th shared key of type kt (fresh for EC types).
func pooledKey(t testing.TB, kt KeyType, i int) crypto.Signer {
	t.Helper()
	if kt != RSA3072 {
		return mustKey(t, kt)
	}
	rsaKeys.Lock()
	defer rsaKeys.Unlock()
	for len(rsaKeys.keys) <= i {
		rsaKeys.keys = append(rsaKeys.keys, mustKey(t, kt))
	}
	return rsaKeys.keys[i]
}

func mustRoot(t testing.TB, kt KeyType, o CAOptions) testCA {
	t.Helper()
	return rootWithKey(t, mustKey(t, kt), o)
}

func rootWithKey(t testing.TB, k crypto.Signer, o CAOptions) testCA {
	t.Helper()
	if o.Subject == "" {
		o.Subject = "Test Root"
	}
	if o.Validity == 0 {
		o.Validity = 20 * 365 * 24 * time.Hour
	}
	if o.PathLen == 0 {
		o.PathLen = -1
	}
	c, err := NewRoot(k, o)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{c, k}
}

func mustIntermediate(t testing.TB, parent testCA, kt KeyType, o CAOptions) testCA {
	t.Helper()
	return intermediateWithKey(t, parent, mustKey(t, kt), o)
}

func intermediateWithKey(t testing.TB, parent testCA, k crypto.Signer, o CAOptions) testCA {
	t.Helper()
	c, err := NewIntermediate(parent.cert, parent.key, k.Public(), o)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{c, k}
}

// testPKI is root -> factory -> line.
type testPKI struct {
	root, factory, line testCA
}

func newPKI(t testing.TB, kt KeyType) testPKI {
	t.Helper()
	root := rootWithKey(t, pooledKey(t, kt, 0), CAOptions{Subject: "Root " + string(kt)})
	factory := intermediateWithKey(t, root, pooledKey(t, kt, 1), CAOptions{Subject: "Factory " + string(kt), Validity: 15 * 365 * 24 * time.Hour, PathLen: 1})
	line := intermediateWithKey(t, factory, pooledKey(t, kt, 2), CAOptions{Subject: "Line " + string(kt), Validity: 10 * 365 * 24 * time.Hour, PathLen: 0})
	return testPKI{root, factory, line}
}

func (p testPKI) issuer(t testing.TB) *Issuer {
	t.Helper()
	is, err := NewIssuer(p.line.cert, p.line.key, []*x509.Certificate{p.factory.cert}, p.root.cert)
	if err != nil {
		t.Fatal(err)
	}
	return is
}

func deviceCSR(t testing.TB, cn string) (*x509.CertificateRequest, crypto.Signer) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(k, cn)
	if err != nil {
		t.Fatal(err)
	}
	return csr, k
}

func goodRequest(t testing.TB) LeafRequest {
	t.Helper()
	csr, _ := deviceCSR(t, "whatever")
	return LeafRequest{
		CSR:            csr,
		RegistrationID: "sn-0001",
		UnitSerial:     "SN-0001",
		Validity:       5 * 365 * 24 * time.Hour,
		Warehouse:      365 * 24 * time.Hour,
	}
}

func writePEM(t testing.TB, dir, name string, certs ...*x509.Certificate) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, EncodeCertificates(certs...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslVerify runs `openssl verify -CAfile root -untrusted chain leaf`.
func opensslVerify(t testing.TB, root, chain, leaf string, extra ...string) (string, error) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("openssl not installed")
		}
		t.Skip("openssl not installed")
	}
	args := append([]string{"verify", "-x509_strict", "-CAfile", root}, extra...)
	if chain != "" {
		args = append(args, "-untrusted", chain)
	}
	args = append(args, leaf)
	out, err := exec.Command("openssl", args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func isErr(err, target error) bool { return errors.Is(err, target) }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

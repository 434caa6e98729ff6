package certgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestChainOpenSSL issues root -> factory -> line -> leaf for each CA key
// type, writes the files as the station does, opens the issuer from them
// (encrypted PEM key) and has openssl verify the leaf; then breaks the chain
// and requires openssl to refuse it.
func TestChainOpenSSL(t *testing.T) {
	for _, kt := range KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			p := newPKI(t, kt)
			rootPath := writePEM(t, dir, "root.crt", p.root.cert)
			chainPath := writePEM(t, dir, "chain.pem", p.factory.cert)
			linePath := writePEM(t, dir, "line.crt", p.line.cert)
			keyPath := filepath.Join(dir, "line.key")
			pw := []byte("correct horse battery")
			if err := WriteKeyPEM(keyPath, p.line.key, pw, false); err != nil {
				t.Fatal(err)
			}
			calls := 0
			is, err := OpenIssuer(linePath, keyPath, chainPath, rootPath, func() ([]byte, error) { calls++; return append([]byte{}, pw...), nil })
			if err != nil {
				t.Fatal(err)
			}
			defer is.Close()
			if calls != 1 {
				t.Fatalf("password asked %d times", calls)
			}
			req := goodRequest(t)
			leaf, err := is.Issue(req)
			if err != nil {
				t.Fatal(err)
			}
			leafPath := writePEM(t, dir, "leaf.crt", leaf)
			out, err := opensslVerify(t, rootPath, chainPath+"", leafPath, "-untrusted", linePath, "-purpose", "sslclient")
			if err != nil || !strings.HasSuffix(out, "OK") {
				t.Fatalf("openssl verify: %v: %s", err, out)
			}
			// The CA signatures use the key type asked for.
			switch kt {
			case RSA3072:
				if k := p.line.cert.PublicKey.(*rsa.PublicKey); k.N.BitLen() != 3072 {
					t.Fatalf("RSA key of %d bits", k.N.BitLen())
				}
			case ECP384:
				if k := p.line.cert.PublicKey.(*ecdsa.PublicKey); k.Curve != elliptic.P384() {
					t.Fatal("not P-384")
				}
				if leaf.SignatureAlgorithm != x509.ECDSAWithSHA384 {
					t.Fatalf("leaf signed with %s", leaf.SignatureAlgorithm)
				}
			}
			// Break it: without the factory certificate, or against another root, openssl refuses.
			if out, err := opensslVerify(t, rootPath, "", leafPath, "-untrusted", linePath); err == nil {
				t.Fatalf("openssl accepted a chain without the factory CA: %s", out)
			}
			other := rootWithKey(t, pooledKey(t, kt, 3), CAOptions{Subject: p.root.cert.Subject.CommonName})
			otherPath := writePEM(t, dir, "other.crt", other.cert)
			if out, err := opensslVerify(t, otherPath, chainPath, leafPath, "-untrusted", linePath); err == nil {
				t.Fatalf("openssl accepted the leaf under another root of the same name: %s", out)
			}
		})
	}
}

func TestWriteKeyPEM(t *testing.T) {
	dir := t.TempDir()
	k := mustKey(t, ECP256)
	path := filepath.Join(dir, "ca.key")
	pw := []byte("s3cret-password")
	if err := WriteKeyPEM(path, k, []byte("short"), false); err == nil {
		t.Fatal("a 5-character password was accepted")
	}
	if err := WriteKeyPEM(path, k, pw, false); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "-----BEGIN ENCRYPTED PRIVATE KEY-----") {
		t.Fatalf("not PKCS#8 encrypted PEM:\n%s", data)
	}
	if strings.Contains(string(data), string(pw)) {
		t.Fatal("password in the file")
	}
	// Never overwritten without asking.
	if err := WriteKeyPEM(path, k, pw, false); !isErr(err, ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	k2 := mustKey(t, ECP256)
	if err := WriteKeyPEM(path, k2, pw, true); err != nil {
		t.Fatal(err)
	}
	// openssl reads it with the password: PBES2, PBKDF2 with HMAC-SHA256, AES-256-CBC.
	if _, err := exec.LookPath("openssl"); err == nil {
		out, err := exec.Command("openssl", "asn1parse", "-in", path).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		for _, want := range []string{"PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("encrypted key lacks %s:\n%s", want, out)
			}
		}
		out, err = exec.Command("openssl", "pkey", "-in", path, "-passin", "pass:"+string(pw), "-noout").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl cannot open the key with its password: %v: %s", err, out)
		}
		if out, err := exec.Command("openssl", "pkey", "-in", path, "-passin", "pass:wrong-password", "-noout").CombinedOutput(); err == nil {
			t.Fatalf("openssl opened the key with a wrong password: %s", out)
		}
	}
	// Our reader: right password, wrong password, no password.
	key, err := OpenKey(path, func() ([]byte, error) { return append([]byte{}, pw...), nil })
	if err != nil {
		t.Fatal(err)
	}
	if !key.Signer.Public().(*ecdsa.PublicKey).Equal(k2.Public()) {
		t.Fatal("read back another key")
	}
	if _, err := OpenKey(path, func() ([]byte, error) { return []byte("wrong-password"), nil }); !isErr(err, ErrPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := OpenKey(path, nil); !isErr(err, ErrPassword) {
		t.Fatalf("no password: %v", err)
	}
}

// TestPlaintextKeyRefused: a plain path must hold an encrypted key; softkms:
// opens a plaintext one on purpose, without asking for a password.
func TestPlaintextKeyRefused(t *testing.T) {
	dir := t.TempDir()
	k := mustKey(t, ECP256).(*ecdsa.PrivateKey)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	path := filepath.Join(dir, "plain.key")
	os.WriteFile(path, pemBlock("PRIVATE KEY", der), 0o600)
	if _, err := OpenKey(path, nil); !isErr(err, ErrIssuer) || !strings.Contains(err.Error(), "unencrypted") {
		t.Fatalf("plaintext key: %v", err)
	}
	key, err := OpenKey("softkms:path="+path, func() ([]byte, error) { t.Fatal("password asked"); return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	if !key.Signer.Public().(*ecdsa.PublicKey).Equal(k.Public()) {
		t.Fatal("another key")
	}
}

func TestOpenIssuerFiles(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, ECP256)
	rootPath := writePEM(t, dir, "root.crt", p.root.cert)
	chainPath := writePEM(t, dir, "chain.pem", p.factory.cert, p.root.cert) // a bundled root is tolerated
	linePath := writePEM(t, dir, "line.crt", p.line.cert)
	pw := []byte("password-1234")
	keyPath := filepath.Join(dir, "line.key")
	if err := WriteKeyPEM(keyPath, p.line.key, pw, false); err != nil {
		t.Fatal(err)
	}
	factoryKey := filepath.Join(dir, "factory.key")
	if err := WriteKeyPEM(factoryKey, p.factory.key, pw, false); err != nil {
		t.Fatal(err)
	}
	pwf := func() ([]byte, error) { return append([]byte{}, pw...), nil }
	is, err := OpenIssuer(linePath, keyPath, chainPath, rootPath, pwf)
	if err != nil {
		t.Fatal(err)
	}
	if len(is.Chain) != 1 || !is.Chain[0].Equal(p.factory.cert) {
		t.Fatalf("chain = %d certificates", len(is.Chain))
	}
	is.Close()
	emptyChain := filepath.Join(dir, "empty.pem")
	os.WriteFile(emptyChain, nil, 0o644)
	tests := []struct {
		name                   string
		cert, key, chain, root string
		target                 error
		want                   string
	}{
		{"wrong-key", linePath, factoryKey, chainPath, rootPath, ErrIssuer, "not the certificate's key"},
		{"no-chain", linePath, keyPath, emptyChain, rootPath, ErrIssuer, "does not verify up to the pinned root"},
		{"missing-cert", filepath.Join(dir, "nope.crt"), keyPath, chainPath, rootPath, ErrIssuer, "no such file"},
		{"root-as-issuer-key-mismatch", rootPath, keyPath, "", rootPath, ErrIssuer, "not the certificate's key"},
		{"missing-key", linePath, filepath.Join(dir, "nope.key"), chainPath, rootPath, ErrIssuer, "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			is, err := OpenIssuer(tc.cert, tc.key, tc.chain, tc.root, pwf)
			if err == nil {
				is.Close()
				t.Fatal("opened")
			}
			if !isErr(err, tc.target) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.target, tc.want)
			}
		})
	}
}

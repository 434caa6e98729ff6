//go:build cgo

package certgen

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/internal/softhsmtest"
)

// hsmPKI makes root, factory and line with every key generated inside a
// SoftHSM2 token, and writes the certificates to dir.
func hsmPKI(t *testing.T, tk *softhsmtest.Token, kt KeyType, dir string) (lineURI, rootPath, chainPath, linePath string) {
	t.Helper()
	var parent *x509.Certificate
	var parentKey *Key
	var certs []*x509.Certificate
	for i, name := range []string{"root", "factory", "line"} {
		uri := tk.URI(fmt.Sprintf("%02x", i+1), name+"-"+string(kt))
		k, err := CreateKey(uri, kt)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		if !k.InHSM {
			t.Fatal("key not in the token")
		}
		if _, ok := k.Signer.(*ecdsa.PrivateKey); ok {
			t.Fatal("the token handed out a software key")
		}
		if strings.Contains(k.Ref, tk.PIN) {
			t.Fatalf("key ref shows the PIN: %s", k.Ref)
		}
		o := CAOptions{Subject: "HSM " + name, Validity: time.Duration(20-5*i) * 365 * 24 * time.Hour, PathLen: 2 - i}
		var c *x509.Certificate
		if parent == nil {
			o.PathLen = -1
			c, err = NewRoot(k.Signer, o)
		} else {
			c, err = NewIntermediate(parent, parentKey.Signer, k.Signer.Public(), o)
			parentKey.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		parent, parentKey = c, k
		certs = append(certs, c)
		lineURI = uri
	}
	parentKey.Close()
	rootPath = writePEM(t, dir, "root.crt", certs[0])
	chainPath = writePEM(t, dir, "chain.pem", certs[1])
	linePath = writePEM(t, dir, "line.crt", certs[2])
	return lineURI, rootPath, chainPath, linePath
}

// TestSoftHSMEndToEnd: CA keys created inside a SoftHSM2 token, the leaf
// signed by the token-held line key, verified by openssl.
func TestSoftHSMEndToEnd(t *testing.T) {
	tk := softhsmtest.New(t, "station-e2e")
	for _, kt := range KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			dir := t.TempDir()
			start := time.Now()
			lineURI, rootPath, chainPath, linePath := hsmPKI(t, tk, kt, dir)
			t.Logf("%s: three CA keys generated in the token and certified in %s", kt, time.Since(start).Round(time.Millisecond))
			is, err := OpenIssuer(linePath, lineURI, chainPath, rootPath, func() ([]byte, error) {
				t.Fatal("password asked for a token key")
				return nil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			defer is.Close()
			if !is.InHSM() {
				t.Fatal("issuer key not in the token")
			}
			start = time.Now()
			leaf, err := is.Issue(goodRequest(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: leaf signed by the token in %s", kt, time.Since(start).Round(time.Millisecond))
			leafPath := writePEM(t, dir, "leaf.crt", leaf)
			out, err := opensslVerify(t, rootPath, chainPath, leafPath, "-untrusted", linePath, "-purpose", "sslclient")
			if err != nil || !strings.HasSuffix(out, "OK") {
				t.Fatalf("openssl verify: %v: %s", err, out)
			}
		})
	}
}

func TestSoftHSMRefusals(t *testing.T) {
	tk := softhsmtest.New(t, "station-refuse")
	uri := tk.URI("0a", "line")
	k, err := CreateKey(uri, ECP256)
	if err != nil {
		t.Fatal(err)
	}
	k.Close()
	// Never replace a key in the token.
	if _, err := CreateKey(uri, ECP256); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	tests := []struct {
		name   string
		uri    string
		target error
	}{
		{"no-such-key", tk.URI("0b", "missing"), ErrIssuer},
		{"no-object", strings.Replace(uri, ";object=line", "", 1), ErrKeyURI},
		{"no-id", strings.Replace(uri, ";id=%0a", "", 1), ErrKeyURI},
		{"wrong-pin", strings.Replace(uri, "pin-value="+tk.PIN, "pin-value=not-"+tk.PIN, 1), ErrPassword},
		{"no-such-token", strings.Replace(uri, "token="+tk.Label, "token=absent", 1), ErrHSM},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, err := OpenKey(tc.uri, nil)
			if err == nil {
				k.Close()
				t.Fatal("opened")
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Fatalf("err = %v, want %v", err, tc.target)
			}
			if strings.Contains(err.Error(), tk.PIN) {
				t.Fatalf("error shows the PIN: %v", err)
			}
		})
	}
}

// TestSoftHSMClientTLS: a device certificate issued by the token-held line
// intermediate is accepted by a Go TLS server that requires client
// certificates chaining to the root; a certificate from another PKI and no
// certificate at all are refused. The device key is in software here (the
// TPM-held variant belongs with tpmops).
func TestSoftHSMClientTLS(t *testing.T) {
	tk := softhsmtest.New(t, "station-tls")
	dir := t.TempDir()
	lineURI, rootPath, chainPath, linePath := hsmPKI(t, tk, ECP256, dir)
	is, err := OpenIssuer(linePath, lineURI, chainPath, rootPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	csr, devKey := deviceCSR(t, "ignored")
	req := goodRequest(t)
	req.CSR = csr
	leaf, err := is.Issue(req)
	if err != nil {
		t.Fatal(err)
	}

	// The server's own certificate comes from a separate software PKI.
	srvPKI := newPKI(t, ECP256)
	srvCSR, srvKey := deviceCSR(t, "server")
	srvIs := srvPKI.issuer(t)
	srvCert, err := x509.CreateCertificate(nilReader{}, &x509.Certificate{
		SerialNumber: leaf.SerialNumber, DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, srvIs.Cert, srvCSR.PublicKey, srvIs.Signer)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(is.Root)
	srvRoots := x509.NewCertPool()
	srvRoots.AddCert(srvPKI.root.cert)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvCert, srvIs.Cert.Raw, srvPKI.factory.cert.Raw}, PrivateKey: srvKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				fmt.Fprintf(c, "hello %s\n", tc.ConnectionState().PeerCertificates[0].Subject.CommonName)
			}(c)
		}
	}()

	dial := func(certs []tls.Certificate) (string, error) {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: srvRoots, ServerName: "localhost", Certificates: certs, MinVersion: tls.VersionTLS12})
		if err != nil {
			return "", err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second)) // against a hang, not a delay
		return bufio.NewReader(c).ReadString('\n')
	}
	chain := [][]byte{leaf.Raw, is.Cert.Raw}
	for _, c := range is.Chain {
		chain = append(chain, c.Raw)
	}
	got, err := dial([]tls.Certificate{{Certificate: chain, PrivateKey: devKey}})
	if err != nil || got != "hello sn-0001\n" {
		t.Fatalf("device with its certificate: %q, %v", got, err)
	}

	// Another PKI's certificate, and no certificate: refused (TLS 1.3 reports
	// the refusal on the first read).
	other := newPKI(t, ECP256).issuer(t)
	otherLeaf, err := other.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]tls.Certificate{
		"other-pki":  {{Certificate: [][]byte{otherLeaf.Raw, other.Cert.Raw, other.Chain[0].Raw}, PrivateKey: devKey}},
		"no-cert":    nil,
		"wrong-key":  {{Certificate: chain, PrivateKey: srvKey}},
		"leaf-alone": {{Certificate: [][]byte{leaf.Raw}, PrivateKey: devKey}},
	} {
		if got, err := dial(certs); err == nil {
			t.Errorf("%s: server accepted the client: %q", name, got)
		}
	}
	_ = filepath.Join
}

// nilReader makes x509.CreateCertificate use its own randomness for ECDSA.
type nilReader struct{}

func (nilReader) Read(p []byte) (int, error) { return len(p), nil }

// BenchmarkIssueSoftHSM measures a leaf signed by a token-held CA key.
func BenchmarkIssueSoftHSM(b *testing.B) {
	tk := softhsmtest.New(b, "station-bench")
	for i, kt := range KeyTypes {
		uri := tk.URI(fmt.Sprintf("%02x", 0x40+i), "bench-"+string(kt))
		k, err := CreateKey(uri, kt)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { k.Close() })
		root, err := NewRoot(k.Signer, CAOptions{Subject: "bench", Validity: 20 * 365 * 24 * time.Hour, PathLen: -1})
		if err != nil {
			b.Fatal(err)
		}
		is, err := NewIssuer(root, k.Signer, nil, root)
		if err != nil {
			b.Fatal(err)
		}
		req := goodRequest(b)
		b.Run(string(kt), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := is.Issue(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

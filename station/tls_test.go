package station

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/softhsmtest"
	"github.com/factory-id/station/tpmops"
)

// A provisioned unit authenticates to a TLS server that requires client
// certificates chained to the pinned root, with the private key never
// leaving its TPM (the handshake's CertificateVerify is signed by
// TPM2_Sign), its leaf issued by a line intermediate whose key never leaves
// its HSM (SoftHSM2).
func TestTLSClientKeyInTPM(t *testing.T) {
	tk := softhsmtest.New(t, "line")
	l := newTestLine(t, func(c *configs.Config) { hsmLine(t, c, tk) })
	if !l.prov.issuer.InHSM() {
		t.Fatal("the line intermediate's key is not in the HSM")
	}
	tpm := l.simUnit()
	if _, err := l.provision(Request{Serial: "TLS-1", TPM: tpm, TPMAddr: "sim"}); err != nil {
		t.Fatal(err)
	}
	u := l.unit("TLS-1")
	key, err := tpm.ReadPublic(tpmops.Handle(u.DeviceKeyHandle))
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tpm.Signer(key)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(l.cfg.File(configs.KeyRoot))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootPEM)

	// The server requires client certificates chained to the pinned root.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{serverCert(t)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client := tls.Certificate{Certificate: append([][]byte{u.Cert}, u.Chain...), PrivateKey: signer}
	if cn := handshake(t, ln, client); cn != u.RegistrationID {
		t.Fatalf("server saw %q, want the unit's registration ID %s", cn, u.RegistrationID)
	}
	noLeaks(t, tpm)

	// The same certificate with any key but the TPM's is refused.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if cn := handshake(t, ln, tls.Certificate{Certificate: client.Certificate, PrivateKey: other}); cn != "" {
		t.Fatalf("a forged client key was accepted as %s", cn)
	}
}

// handshake dials ln once with cert and returns the CN the server saw ("" if refused).
func handshake(t *testing.T, ln net.Listener, cert tls.Certificate) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- ""
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			got <- ""
			return
		}
		got <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()
	if conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12,
	}); err == nil {
		conn.Close()
	}
	return <-got
}

// serverCert is a throwaway self-signed server certificate.
func serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// hsmLine replaces the line's PKI with a root and a line intermediate whose
// key is generated inside the SoftHSM2 token.
func hsmLine(t *testing.T, c *configs.Config, tk *softhsmtest.Token) {
	t.Helper()
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	root, err := certgen.NewRoot(rootKey, certgen.CAOptions{Subject: "HSM Test Root", Validity: 10 * 365 * 24 * time.Hour, PathLen: -1})
	if err != nil {
		t.Fatal(err)
	}
	uri := tk.URI("07", "line")
	lineKey, err := certgen.CreateKey(uri, certgen.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	defer lineKey.Close()
	line, err := certgen.NewIntermediate(root, rootKey, lineKey.Signer.Public(), certgen.CAOptions{Subject: "HSM Line CA", Validity: 5 * 365 * 24 * time.Hour, PathLen: 0})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.crt"), certgen.EncodeCertificates(root), 0o644)
	os.WriteFile(filepath.Join(dir, "line.crt"), certgen.EncodeCertificates(line), 0o644)
	c.PKI.Root, c.PKI.IssuerCert, c.PKI.Chain = filepath.Join(dir, "root.crt"), filepath.Join(dir, "line.crt"), ""
	c.PKI.IssuerKey = uri
}

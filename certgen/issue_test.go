package certgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/factory-id/station/enroll/regid"
)

// craftCA signs a certificate for a fresh P-256 key under parent, after
// mutate has broken the template the way a test needs.
func craftCA(t *testing.T, parent testCA, mutate func(*x509.Certificate)) testCA {
	t.Helper()
	k := mustKey(t, ECP256)
	sn, _ := RandomSerial()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "Crafted"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          []byte{1, 2, 3, 4},
	}
	mutate(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent.cert, k.Public(), parent.key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{c, k}
}

func TestIssueGood(t *testing.T) {
	p := newPKI(t, ECP256)
	is := p.issuer(t)
	req := goodRequest(t)
	req.Now = time.Now()
	leaf, err := is.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "sn-0001" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "urn:station:serial:SN-0001" {
		t.Errorf("URIs = %v", leaf.URIs)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("EKU = %v", leaf.ExtKeyUsage)
	}
	if leaf.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("KeyUsage = %v", leaf.KeyUsage)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Error("leaf must carry CA:FALSE")
	}
	if len(leaf.SubjectKeyId) == 0 || string(leaf.AuthorityKeyId) != string(p.line.cert.SubjectKeyId) {
		t.Error("SKI/AKI missing or AKI is not the issuer's SKI")
	}
	want := req.Now.Add(req.Warehouse + req.Validity).UTC().Truncate(time.Second)
	if !leaf.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", leaf.NotAfter, want)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(req.CSR.PublicKey) {
		t.Error("leaf key is not the CSR's")
	}
	if n := leaf.SerialNumber.BitLen(); n < 64 {
		t.Errorf("serial has %d bits", n)
	}
}

// TestIssueClipsToIssuer: the leaf never outlives its issuer.
func TestIssueClipsToIssuer(t *testing.T) {
	p := newPKI(t, ECP256)
	short := mustIntermediate(t, p.factory, ECP256, CAOptions{Subject: "Short line", Validity: 2 * 365 * 24 * time.Hour, PathLen: 0})
	is, err := NewIssuer(short.cert, short.key, []*x509.Certificate{p.factory.cert}, p.root.cert)
	if err != nil {
		t.Fatal(err)
	}
	req := goodRequest(t) // 1 year warehouse + 5 years field > 2 years
	leaf, err := is.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.NotAfter.Equal(short.cert.NotAfter) {
		t.Fatalf("NotAfter = %s, want the issuer's %s", leaf.NotAfter, short.cert.NotAfter)
	}
}

func TestIssueRefusals(t *testing.T) {
	p := newPKI(t, ECP256)
	good := p.issuer(t)
	otherRoot := mustRoot(t, ECP256, CAOptions{Subject: "Other root"})
	notCA := craftCA(t, p.factory, func(c *x509.Certificate) { c.IsCA = false; c.KeyUsage = x509.KeyUsageDigitalSignature })
	noCertSign := craftCA(t, p.factory, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign })
	shortLine := mustIntermediate(t, p.factory, ECP256, CAOptions{Subject: "Dying line", Validity: 200 * 24 * time.Hour, PathLen: 0})
	constrained := mustIntermediate(t, p.factory, ECP256, CAOptions{Subject: "Constrained line", Validity: 5 * 365 * 24 * time.Hour, PathLen: 0,
		NameConstraints: []string{"uri:devices.example.com"}})
	chain := []*x509.Certificate{p.factory.cert}

	badSig := goodRequest(t)
	csrCopy := *badSig.CSR
	csrCopy.Signature = append([]byte{}, csrCopy.Signature...)
	csrCopy.Signature[len(csrCopy.Signature)-3] ^= 0x40
	badSig.CSR = &csrCopy

	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	weakCSR, err := NewCSR(p224, "weak")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		issuer *Issuer
		mod    func(*LeafRequest)
		target error
		want   string
	}{
		{"cn-too-long", good, func(r *LeafRequest) { r.RegistrationID = strings.Repeat("a", 65) }, regid.ErrInvalid, "at most 64"},
		{"cn-bad-chars", good, func(r *LeafRequest) { r.RegistrationID = "sn/0001" }, regid.ErrInvalid, "invalid registration ID"},
		{"cn-uppercase", good, func(r *LeafRequest) { r.RegistrationID = "SN-0001" }, regid.ErrInvalid, "invalid registration ID"},
		{"cn-leading-dash", good, func(r *LeafRequest) { r.RegistrationID = "-sn" }, regid.ErrInvalid, "invalid registration ID"},
		{"cn-empty", good, func(r *LeafRequest) { r.RegistrationID = "" }, regid.ErrInvalid, "invalid registration ID"},
		{"no-csr", good, func(r *LeafRequest) { r.CSR = nil }, ErrPolicy, "no certificate request"},
		{"csr-bad-signature", good, func(r *LeafRequest) { r.CSR = badSig.CSR }, ErrPolicy, "signature does not verify"},
		{"csr-weak-key", good, func(r *LeafRequest) { r.CSR = weakCSR }, ErrPolicy, "P-224"},
		{"no-serial", good, func(r *LeafRequest) { r.UnitSerial = " " }, ErrPolicy, "no unit serial"},
		{"san-without-serial", good, func(r *LeafRequest) { r.SANURI = "urn:station:unit" }, ErrPolicy, "has no {serial}"},
		{"san-not-uri", good, func(r *LeafRequest) { r.SANURI = "no scheme {serial}" }, ErrPolicy, "not an absolute URI"},
		{"validity-zero", good, func(r *LeafRequest) { r.Validity = 0 }, ErrPolicy, "must be positive"},
		{"warehouse-negative", good, func(r *LeafRequest) { r.Warehouse = -time.Hour }, ErrPolicy, "must not be negative"},
		{"issuer-not-ca", &Issuer{Cert: notCA.cert, Signer: notCA.key, Chain: chain, Root: p.root.cert}, nil, ErrIssuer, "not a CA"},
		{"issuer-no-keycertsign", &Issuer{Cert: noCertSign.cert, Signer: noCertSign.key, Chain: chain, Root: p.root.cert}, nil, ErrIssuer, "keyCertSign"},
		{"chain-not-to-root", &Issuer{Cert: p.line.cert, Signer: p.line.key, Chain: chain, Root: otherRoot.cert}, nil, ErrIssuer, "does not verify up to the pinned root"},
		{"chain-missing", &Issuer{Cert: p.line.cert, Signer: p.line.key, Root: p.root.cert}, nil, ErrIssuer, "does not verify up to the pinned root"},
		{"issuer-expired", good, func(r *LeafRequest) { r.Now = p.line.cert.NotAfter.Add(time.Hour) }, ErrIssuer, "does not verify"},
		{"issuer-expires-in-warehouse", &Issuer{Cert: shortLine.cert, Signer: shortLine.key, Chain: chain, Root: p.root.cert}, nil, ErrPolicy, "before the warehouse period ends"},
		{"ceiling-reached", good, func(r *LeafRequest) { r.MaxIssued, r.Issued = 100, 100 }, ErrPolicy, "issuance ceiling reached"},
		{"serial-always-taken", good, func(r *LeafRequest) { r.SerialTaken = func(string) bool { return true } }, ErrPolicy, "already in the station database"},
		{"wrong-issuer-key", &Issuer{Cert: p.line.cert, Signer: p.factory.key, Chain: chain, Root: p.root.cert}, nil, ErrIssuer, "doesn't match"},
		{"name-constraints-violated", &Issuer{Cert: constrained.cert, Signer: constrained.key, Chain: chain, Root: p.root.cert}, nil, ErrIssuer, "discarded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := goodRequest(t)
			if tc.mod != nil {
				tc.mod(&req)
			}
			leaf, err := tc.issuer.Issue(req)
			if err == nil {
				t.Fatalf("issued %v; want a refusal", leaf.Subject)
			}
			if !errors.Is(err, tc.target) {
				t.Fatalf("error %v does not wrap %v", err, tc.target)
			}
			if tc.target == regid.ErrInvalid && !errors.Is(err, ErrPolicy) {
				t.Fatalf("error %v does not wrap ErrPolicy", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestIssueCeilingBelow(t *testing.T) {
	is := newPKI(t, ECP256).issuer(t)
	req := goodRequest(t)
	req.MaxIssued, req.Issued = 100, 99
	if _, err := is.Issue(req); err != nil {
		t.Fatal(err)
	}
}

// TestIssueSerialRetry: a serial already in the database is never reused.
func TestIssueSerialRetry(t *testing.T) {
	is := newPKI(t, ECP256).issuer(t)
	var seen []string
	req := goodRequest(t)
	req.SerialTaken = func(s string) bool {
		seen = append(seen, s)
		return len(seen) == 1 // the first draw collides
	}
	leaf, err := is.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || SerialHex(leaf) != seen[1] || seen[0] == seen[1] {
		t.Fatalf("serials asked %v, issued %s", seen, SerialHex(leaf))
	}
}

func TestNewIssuerRefusals(t *testing.T) {
	p := newPKI(t, ECP256)
	otherRoot := mustRoot(t, ECP256, CAOptions{Subject: "Other root"})
	notCA := craftCA(t, p.factory, func(c *x509.Certificate) { c.IsCA = false })
	chain := []*x509.Certificate{p.factory.cert}
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"wrong-key", func() error { _, err := NewIssuer(p.line.cert, p.factory.key, chain, p.root.cert); return err }, "not the certificate's key"},
		{"not-ca", func() error { _, err := NewIssuer(notCA.cert, notCA.key, chain, p.root.cert); return err }, "not a CA"},
		{"other-root", func() error { _, err := NewIssuer(p.line.cert, p.line.key, chain, otherRoot.cert); return err }, "pinned root"},
		{"root-not-self-signed", func() error { _, err := NewIssuer(p.line.cert, p.line.key, chain, p.factory.cert); return err }, "not self-signed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			if !errors.Is(err, ErrIssuer) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrIssuer saying %q", err, tc.want)
			}
		})
	}
}

func TestNewIntermediateRefusals(t *testing.T) {
	root := mustRoot(t, ECP256, CAOptions{Subject: "R", Validity: 10 * 365 * 24 * time.Hour})
	line := mustIntermediate(t, root, ECP256, CAOptions{Subject: "L", Validity: 365 * 24 * time.Hour, PathLen: 0})
	factory := mustIntermediate(t, root, ECP256, CAOptions{Subject: "F", Validity: 365 * 24 * time.Hour, PathLen: 1})
	noSign := craftCA(t, root, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	pub := mustKey(t, ECP256).Public()
	tests := []struct {
		name   string
		parent testCA
		signer testCA
		o      CAOptions
		target error
		want   string
	}{
		{"outlives-parent", root, root, CAOptions{Subject: "X", Validity: 11 * 365 * 24 * time.Hour}, ErrPolicy, "past its issuer's end"},
		{"parent-pathlen-zero", line, line, CAOptions{Subject: "X", Validity: time.Hour}, ErrPolicy, "path length 0"},
		{"pathlen-too-long", factory, factory, CAOptions{Subject: "X", Validity: time.Hour, PathLen: 1}, ErrPolicy, "path length below 1"},
		{"pathlen-unlimited-under-limited", factory, factory, CAOptions{Subject: "X", Validity: time.Hour, PathLen: -1}, ErrPolicy, "path length below 1"},
		{"wrong-parent-key", root, line, CAOptions{Subject: "X", Validity: time.Hour}, ErrIssuer, "not the certificate's key"},
		{"parent-no-keycertsign", noSign, noSign, CAOptions{Subject: "X", Validity: time.Hour}, ErrIssuer, "keyCertSign"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewIntermediate(tc.parent.cert, tc.signer.key, pub, tc.o)
			if !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v saying %q", err, tc.target, tc.want)
			}
		})
	}
	// Asked to clip, the CA ends with its parent instead.
	clipped, err := NewIntermediate(root.cert, root.key, pub, CAOptions{Subject: "X", Validity: 11 * 365 * 24 * time.Hour, ClipToIssuer: true})
	if err != nil || !clipped.NotAfter.Equal(root.cert.NotAfter) {
		t.Fatalf("clipped intermediate: %v", err)
	}
	// The CA made with a path length in range works.
	if _, err := NewIntermediate(factory.cert, factory.key, pub, CAOptions{Subject: "ok", Validity: time.Hour, PathLen: 0}); err != nil {
		t.Fatal(err)
	}
}

// TestIssueTPMAttestation: with tpm attestation the registration ID is the
// EK-derived one (52 characters) and the leaf is still issued with it as CN.
func TestIssueTPMAttestation(t *testing.T) {
	is := newPKI(t, ECP256).issuer(t)
	req := goodRequest(t)
	req.RegistrationID = "fhe4gdqgarivz3mywpiu7wehkguprzfzxru5ja5gpisxyfflph5q" // enroll.RegistrationID([]byte("registration"))
	leaf, err := is.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != "fhe4gdqgarivz3mywpiu7wehkguprzfzxru5ja5gpisxyfflph5q" {
		t.Fatalf("CN = %s", leaf.Subject.CommonName)
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, kt := range KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			is := newPKI(b, kt).issuer(b)
			req := goodRequest(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := is.Issue(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEncryptedPEM(b *testing.B) {
	k := mustKey(b, ECP256)
	dir := b.TempDir()
	pw := []byte("benchmark-password")
	for i := 0; i < b.N; i++ {
		p := dir + "/k" + string(rune('a'+i%26)) + ".pem"
		if err := WriteKeyPEM(p, k, pw, true); err != nil {
			b.Fatal(err)
		}
		if _, err := OpenKey(p, func() ([]byte, error) { return append([]byte{}, pw...), nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// VerifyLeaf (station verify's certificate check) holds a leaf to its
// chain now and at the end of the warehouse period, and names the instant
// it fails at.
func TestVerifyLeaf(t *testing.T) {
	p := newPKI(t, ECP256)
	req := goodRequest(t)
	now := time.Now()
	req.Now = now
	leaf, err := p.issuer(t).Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{p.line.cert, p.factory.cert}
	if err := VerifyLeaf(leaf, chain, p.root.cert, now, req.Warehouse); err != nil {
		t.Fatalf("a good leaf: %v", err)
	}
	other := newPKI(t, ECP384)
	late := now.Add(req.Warehouse + req.Validity + time.Hour)
	for name, tc := range map[string]struct {
		chain []*x509.Certificate
		root  *x509.Certificate
		now   time.Time
		wh    time.Duration
		at    time.Time
	}{
		"another root":         {chain, other.root.cert, now, req.Warehouse, now},
		"intermediate missing": {chain[:1], p.root.cert, now, req.Warehouse, now},
		"expired by the shelf": {chain, p.root.cert, now, late.Sub(now), late},
		"not yet valid":        {chain, p.root.cert, now.Add(-48 * time.Hour), 0, now.Add(-48 * time.Hour)},
	} {
		err := VerifyLeaf(leaf, tc.chain, tc.root, tc.now, tc.wh)
		if err == nil || !strings.Contains(err.Error(), tc.at.UTC().Format(time.RFC3339)) {
			t.Errorf("%s: %v, want a failure at %s", name, err, tc.at.UTC().Format(time.RFC3339))
		}
	}
}

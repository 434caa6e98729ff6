package certgen_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/factory-id/station/certgen"
)

// The ceremony and one device certificate, all in memory. In production
// the CA keys are in a token (CreateKey with a pkcs11: URI) or encrypted
// PEM files, and the device key is in the unit's TPM.
func Example() {
	rootKey, _ := certgen.CreateKey("", certgen.ECP384)
	root, _ := certgen.NewRoot(rootKey.Signer, certgen.CAOptions{Subject: "Acme Root", Validity: 20 * 365 * 24 * time.Hour, PathLen: -1})

	factoryKey, _ := certgen.CreateKey("", certgen.ECP256)
	factory, _ := certgen.NewIntermediate(root, rootKey.Signer, factoryKey.Signer.Public(),
		certgen.CAOptions{Subject: "Acme Factory 1", Validity: 15 * 365 * 24 * time.Hour, PathLen: 1})

	lineKey, _ := certgen.CreateKey("", certgen.ECP256)
	line, _ := certgen.NewIntermediate(factory, factoryKey.Signer, lineKey.Signer.Public(),
		certgen.CAOptions{Subject: "Acme Line 1", Validity: 10 * 365 * 24 * time.Hour, PathLen: 0})

	is, err := certgen.NewIssuer(line, lineKey.Signer, []*x509.Certificate{factory}, root)
	if err != nil {
		fmt.Println(err)
		return
	}
	deviceKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := certgen.NewCSR(deviceKey, "sn-0001")
	leaf, err := is.Issue(certgen.LeafRequest{
		CSR: csr, RegistrationID: "sn-0001", UnitSerial: "SN-0001",
		Validity: 5 * 365 * 24 * time.Hour, Warehouse: 365 * 24 * time.Hour,
		SerialTaken: func(string) bool { return false },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(leaf.Subject.CommonName, leaf.URIs[0], leaf.Issuer.CommonName)

	// A registration ID longer than a CN allows is refused before signing.
	_, err = is.Issue(certgen.LeafRequest{CSR: csr, RegistrationID: "sn-0001-" + fmt.Sprintf("%060d", 0), UnitSerial: "SN-0001",
		Validity: time.Hour})
	fmt.Println(err != nil)
	// Output:
	// sn-0001 urn:station:serial:SN-0001 Acme Line 1
	// true
}

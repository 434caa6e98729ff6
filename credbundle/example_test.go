package credbundle_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"

	"github.com/factory-id/station/credbundle"
)

// A device, QA or an auditor checks a bundle against the station key it trusts.
func ExampleVerifyBundle() {
	img, _ := os.ReadFile("testdata/golden-v1/ecdsa-tpm/station-bundle.bin")
	pemBytes, _ := os.ReadFile("testdata/golden-v1/ecdsa-tpm/station.pub.pem")
	blk, _ := pem.Decode(pemBytes)
	pub, _ := x509.ParsePKIXPublicKey(blk.Bytes)
	b, err := credbundle.VerifyBundle(img, pub)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.Serial, b.Attestation, b.IDScope, b.GlobalEndpoint)
	// Output: SN-GOLD-2 tpm 0ne00002193 global.azure-devices-provisioning.net
}

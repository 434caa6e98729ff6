package station

import (
	"testing"

	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/softhsmtest"
)

// The station's audit signing key may live in an HSM (station.signing_key: a
// pkcs11: URI): init, provisioning and checkpoints sign inside the token, and
// the log verifies against the token key's public half.
func TestSigningKeyInHSM(t *testing.T) {
	tk := softhsmtest.New(t, "station")
	uri := tk.URI("0a", "audit")
	k, err := certgen.CreateKey(uri, certgen.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Signer.Public()
	k.Close()
	l := newTestLine(t, func(c *configs.Config) { c.Station.SigningKey = uri })
	if _, err := l.provision(Request{Serial: "HSMK-1", TPM: l.simUnit(), TPMAddr: "sim"}); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify(l.env.DB.DB, pub, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records < 8 || rep.Checkpoints < 1 || rep.Unsigned != 0 {
		t.Fatalf("report %+v: want the unit's records, all under a checkpoint signed in the token", rep)
	}
	other, err := certgen.CreateKey(tk.URI("0b", "other"), certgen.ECP256)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := audit.Verify(l.env.DB.DB, other.Signer.Public(), nil); err == nil {
		t.Fatal("the log verified under another key")
	}
}

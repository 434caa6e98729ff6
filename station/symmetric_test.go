package station

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/enroll"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/tpmops"
)

// A symmetric-key unit gets its DPS-derived key only sealed under its own
// SRK; no secret (derived key, group key, lockout auth) reaches the database
// in any encoding.
func TestSymmetricKeySealed(t *testing.T) {
	group := bytes.Repeat([]byte{0x5a, 0xa5, 0x3c}, 11) // 33 bytes
	t.Setenv("TEST_GROUP_KEY", base64.StdEncoding.EncodeToString(group))
	l := newTestLine(t, func(c *configs.Config) {
		c.DPS.Attestation, c.DPS.RegistrationID = "symmetric-key", "{serial}"
		c.DPS.GroupKey = "env:TEST_GROUP_KEY"
	})
	tpm := l.simUnit()
	if _, err := l.provision(Request{Serial: "SYM-1", TPM: tpm, TPMAddr: "sim"}); err != nil {
		t.Fatal(err)
	}
	u := l.unit("SYM-1")
	b, err := flash.ReadFolder(filepath.Join(l.dir, "units", "SYM-1", flash.DirBundle))
	if err != nil {
		t.Fatal(err)
	}
	if len(b.SymmetricKey) != 0 || len(b.SealedKey) == 0 {
		t.Fatalf("bundle: clear key %d bytes, sealed %d bytes", len(b.SymmetricKey), len(b.SealedKey))
	}
	srk, err := tpm.ReadPublic(tpmops.Handle(u.SRKHandle))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tpm.Unseal(srk, b.SealedKey)
	if err != nil {
		t.Fatal(err)
	}
	want, err := enroll.DeviceKey(group, "sym-1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the sealed key is not the DPS-derived device key")
	}
	noLeaks(t, tpm)

	l.env.Close() // flush the database file before scanning it
	db, err := os.ReadFile(l.cfg.Station.DB)
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string][]byte{"derived key": want, "group key": group, "lockout auth": l.escrowed(u, "lockout")} {
		for _, enc := range [][]byte{secret, []byte(base64.StdEncoding.EncodeToString(secret)), []byte(hex.EncodeToString(secret))} {
			if bytes.Contains(db, enc) {
				t.Errorf("the %s is in the station database", name)
			}
		}
	}
}

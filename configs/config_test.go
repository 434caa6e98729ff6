package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "station.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleLoads(t *testing.T) {
	c, err := Load("station.example.yaml", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Station.ID != "line1-st03" || c.TPM.DeviceKeyHandle != 0x81000010 || c.PKI.Warehouse.D() != 8760*time.Hour {
		t.Fatalf("example parsed to %+v", c)
	}
	if got := c.File(KeyVendorRoots); got != "/etc/station/tpm-vendor-roots/" {
		t.Fatalf("vendor roots resolve to %q", got)
	}
	if c.TPM.EKCertDir != "" || c.File(KeyEKCertDir) != "" {
		t.Fatalf("ek_cert_dir %q", c.TPM.EKCertDir)
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name, yaml string
		env        []string
		key        string // the key the error must name
		msg        string
	}{
		{"unknown key", "tpm:\n  adress: sim\n", nil, "", `unknown key "adress" in section "tpm"`},
		{"unknown section", "tmp:\n  address: sim\n", nil, "", `unknown section "tmp"`},
		{"bad handle", "tpm:\n  device_key_handle: 0x8100001G\n", nil, "", "not a TPM handle"},
		{"handle out of range", "tpm:\n  device_key_handle: 0x01000010\n", nil, "tpm.device_key_handle", "not a persistent handle"},
		{"handle reserved for DPS", "tpm:\n  device_key_handle: 0x81000100\n", nil, "tpm.device_key_handle", "DPS"},
		{"handle in EK range", "tpm:\n  device_key_handle: 0x81010001\n", nil, "tpm.device_key_handle", "endorsement"},
		{"bad duration", "pki:\n  validity: forever\n", nil, "", "not a duration"},
		{"negative warehouse", "pki:\n  warehouse: -1h\n", nil, "pki.warehouse", "negative"},
		{"escrow with tpm", "ownership:\n  owner_auth: escrow\n", nil, "ownership.owner_auth", "empty owner auth"},
		{"bad owner policy", "ownership:\n  owner_auth: random\n", nil, "ownership.owner_auth", "want empty or escrow"},
		{"bad ek", "tpm:\n  ek: rsa1024\n", nil, "tpm.ek", "rsa2048"},
		{"p384 srk", "tpm:\n  srk: ecc-p384\n", nil, "tpm.srk", "rsa2048 or ecc-p256"},
		{"p384 ek with tpm attestation", "tpm:\n  ek: ecc-p384\n", nil, "tpm.ek", "x509 attestation"},
		{"x509 without pattern", "dps:\n  attestation: x509\n", nil, "dps.registration_id", "pattern"},
		{"pattern without serial", "dps:\n  attestation: x509\n  registration_id: line1\n", nil, "dps.registration_id", "same registration ID"},
		{"symmetric without group key", "dps:\n  attestation: symmetric-key\n  registration_id: \"{serial}\"\n", nil, "dps.group_key", "group key"},
		{"bad firmware hash", "firmware:\n  sha256: abc\n", nil, "firmware.sha256", "SHA-256"},
		{"image without hash", "firmware:\n  image: app.bin\n", nil, "firmware.sha256", "published"},
		{"bad target", "flash:\n  target: ftp:x\n", nil, "flash.target", "dir:PATH"},
		{"unknown tool", "flash:\n  target: exec:esp\n", nil, "flash.target", `no tool "esp"`},
		{"env bad handle", "", []string{"STATION_TPM_DEVICE_KEY_HANDLE=zz"}, "tpm.device_key_handle", "STATION_TPM_DEVICE_KEY_HANDLE"},
		{"env bad bool", "", []string{"STATION_TPM_REQUIRE_EK_CERT=maybe"}, "tpm.require_ek_cert", "boolean"},
		{"env policy", "", []string{"STATION_OWNERSHIP_OWNER_AUTH=escrow"}, "ownership.owner_auth", "escrow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tc.yaml), true, tc.env)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want a *configs.Error", err)
			}
			if ce.Key != tc.key {
				t.Errorf("error names key %q, want %q (%v)", ce.Key, tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	p := writeConfig(t, "tpm:\n  address: /dev/tpmrm0\ndps:\n  attestation: x509\n  registration_id: \"{serial}\"\n")
	c, err := Load(p, true, []string{
		"STATION_TPM_ADDRESS=swtpm://127.0.0.1:2321",
		"STATION_TPM_DEVICE_KEY_HANDLE=0x81000020",
		"STATION_PKI_WAREHOUSE=30d",
		"STATION_DPS_IOT_HUBS=a.azure-devices.net, b.azure-devices.net",
		"STATION_OWNERSHIP_OWNER_AUTH=escrow",
		"STATION_OWNERSHIP_DA_MAX_TRIES=10",
		"STATION_CA_KEY_PASSWORD=not-a-config-key",
		"STATION_CONFIG=" + p,
		"STATION_TPM_EK=", // empty: not set
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.TPM.Address != "swtpm://127.0.0.1:2321" || c.TPM.DeviceKeyHandle != 0x81000020 ||
		c.PKI.Warehouse.D() != 30*24*time.Hour || len(c.DPS.IoTHubs) != 2 || c.DPS.IoTHubs[1] != "b.azure-devices.net" ||
		c.Ownership.OwnerAuth != "escrow" || c.Ownership.DAMaxTries != 10 || c.TPM.EK != "rsa2048" {
		t.Fatalf("overrides not applied: %+v", c)
	}
}

func TestMissingFiles(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), true, nil); err == nil {
		t.Fatal("an explicit missing config file was accepted")
	}
	c, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), false, nil)
	if err != nil {
		t.Fatalf("defaults without a file: %v", err)
	}
	c.Ownership.EscrowPublicKey = "missing.pem"
	c.PKI.IssuerCert, c.PKI.IssuerKey, c.PKI.Root = "a", "pkcs11:token=x;id=%01;object=k", "c"
	var ce *Error
	if err := c.CheckProvision(); !errors.As(err, &ce) || ce.Key != "ownership.escrow_public_key" {
		t.Fatalf("CheckProvision = %v, want an error naming ownership.escrow_public_key", err)
	}
	c.Ownership.EscrowPublicKey = ""
	if err := c.CheckProvision(); !errors.As(err, &ce) || ce.Key != "ownership.escrow_public_key" || !strings.Contains(err.Error(), "not set") {
		t.Fatalf("CheckProvision = %v, want 'not set'", err)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("tpm:\n  address: sim\n"))
	f.Add([]byte("flash:\n  tools:\n    esp:\n      command: x\n      args: [a]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, b, 0o600)
		c, err := Load(p, true, nil)
		if err == nil && c.Validate() != nil {
			t.Fatal("Load accepted a config Validate rejects")
		}
	})
}

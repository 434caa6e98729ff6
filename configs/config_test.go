package configs

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
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
		{"second placeholder in a dir target", "flash:\n  target: dir:/mnt/{port}\n", nil, "flash.target", "only placeholder is {serial}"},
		{"tpm-nv with an argument", "flash:\n  target: tpm-nv:0x1500010\n", nil, "flash.target", "no argument"},
		{"empty file", "", nil, "", "the file is empty"},
		{"only comments", "# station config\n", nil, "", "the file is empty"},
		{"null document", "~\n", nil, "", "the file is empty"},
		{"second document", "station:\n  id: a\n---\nstation:\n  id: b\n", nil, "", "more than one YAML document"},
		{"malformed id scope", "dps:\n  id_scope: scope one\n", nil, "dps.id_scope", "not a DPS ID scope"},
		{"control character in firmware.version", "firmware:\n  version: \"1.0\\a\"\n", nil, "firmware.version", "control character"},
		{"newline in operator", "station:\n  operator: \"a\\nb\"\n", nil, "station.operator", "control character"},
		{"control character in a tool argument", "flash:\n  tools:\n    esp:\n      command: esptool\n      args: [\"a\\tb\"]\n", nil, "flash.tools.esp.args[0]", "control character"},
		{"endpoint with scheme", "dps:\n  global_endpoint: https://global.azure-devices-provisioning.net/\n", nil, "dps.global_endpoint", "not a host name"},
		{"empty endpoint", "dps:\n  global_endpoint: \"\"\n", nil, "dps.global_endpoint", "not a host name"},
		{"bad hub", "dps:\n  iot_hubs: [\"hub one\"]\n", nil, "dps.iot_hubs[0]", "host name"},
		{"long firmware version", "firmware:\n  version: " + strings.Repeat("v", 65) + "\n", nil, "firmware.version", "at most 64"},
		{"group key in a STATION_ variable", "dps:\n  group_key: env:STATION_GROUP\n", nil, "dps.group_key", "outside STATION_"},
		{"fixture without address", "line:\n  fixtures: [\"f1=\"]\n", nil, "line.fixtures[0]", "no TPM address"},
		{"bad fixture name", "line:\n  fixtures: [\"f 1=sim\"]\n", nil, "line.fixtures[0]", "fixture name"},
		{"fixture name twice", "line:\n  fixtures: [\"f1=swtpm://127.0.0.1:2321\", \"f1=swtpm://127.0.0.1:2323\"]\n", nil, "line.fixtures[1]", "already line.fixtures[0]"},
		{"fixture TPM twice", "line:\n  fixtures: [\"f1=/dev/tpmrm0\", \"f2=/dev/tpmrm0\"]\n", nil, "line.fixtures[1]", "own name and TPM"},
		{"fixture bad flash", "line:\n  fixtures: [\"f1=/dev/tpmrm0;exec:esp\"]\n", nil, "line.fixtures[0]", `no tool "esp"`},
		{"misspelt env override", "station:\n  id: a\n", []string{"STATION_TPM_ADRESS=sim"}, "", "$STATION_TPM_ADRESS"},
		{"misspelt env names the real one", "station:\n  id: a\n", []string{"STATION_FIRMWARE_SHA265=00"}, "", "did you mean $STATION_FIRMWARE_SHA256"},
		{"env bad handle", "station:\n  id: a\n", []string{"STATION_TPM_DEVICE_KEY_HANDLE=zz"}, "tpm.device_key_handle", "STATION_TPM_DEVICE_KEY_HANDLE"},
		{"env bad bool", "station:\n  id: a\n", []string{"STATION_TPM_REQUIRE_EK_CERT=maybe"}, "tpm.require_ek_cert", "boolean"},
		{"env policy", "station:\n  id: a\n", []string{"STATION_OWNERSHIP_OWNER_AUTH=escrow"}, "ownership.owner_auth", "escrow"},
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
	var ce *Error
	if err := c.CheckProvision(); !errors.As(err, &ce) || ce.Key != "dps.id_scope" {
		t.Fatalf("CheckProvision without dps.id_scope = %v", err)
	}
	c.DPS.IDScope = "0ne00000A0A"
	c.Ownership.EscrowPublicKey = "missing.pem"
	c.PKI.IssuerCert, c.PKI.IssuerKey, c.PKI.Root = "a", "pkcs11:token=x;id=%01;object=k", "c"
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

// Relative paths in the file resolve against its folder, flash.target's
// dir: folders included; URIs and absolute paths stay.
func TestRelativePaths(t *testing.T) {
	p := writeConfig(t, "station:\n  id: a\n  db: state/station.db\nflash:\n  target: dir:units/{serial}, tpm-nv,dir:/mnt/abs\n")
	dir := filepath.Dir(p)
	c, err := Load(p, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "dir:" + filepath.Join(dir, "units/{serial}") + ",tpm-nv,dir:/mnt/abs"; c.Flash.Target != want {
		t.Errorf("flash.target = %q, want %q", c.Flash.Target, want)
	}
	if got := c.Path(c.Station.DB); got != filepath.Join(dir, "state/station.db") {
		t.Errorf("station.db resolves to %q", got)
	}
}

// Every STATION_* name the code reads is in the one list (NonKeyEnv) or
// is a config key: nothing else would get past CheckEnv.
func TestEnvNamesKnown(t *testing.T) {
	known := map[string]bool{}
	for _, n := range append(EnvKeys(), NonKeyEnv...) {
		known[n] = true
	}
	re := regexp.MustCompile(`"(STATION_[A-Z0-9_]*[A-Z0-9])"`)
	root := ".."
	found := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range re.FindAllSubmatch(b, -1) {
			found++
			if !known[string(m[1])] {
				t.Errorf("%s reads $%s, which is neither a config key nor in configs.NonKeyEnv", p, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("no STATION_* names found: the scan is broken")
	}
	if err := CheckEnv(append([]string{"PATH=/bin", "STATION_TPM_ADDRESS=sim"}, func() (out []string) {
		for _, n := range NonKeyEnv {
			out = append(out, n+"=x")
		}
		return
	}()...)); err != nil {
		t.Fatalf("CheckEnv refuses a known variable: %v", err)
	}
}

// One grammar for every flash target list: what Load, CheckTargets (batch
// rows, --flash) and flash.Open accept or refuse is Flash.ParseTargets'.
func TestParseTargets(t *testing.T) {
	f := Flash{Tools: map[string]FlashTool{"esp": {Command: "esptool"}}}
	got, err := f.ParseTargets(" dir:/mnt/{serial} ,exec:esp@/dev/ttyUSB3,, tpm-nv,exec:esp")
	if err != nil {
		t.Fatal(err)
	}
	want := []FlashTarget{
		{Spec: "dir:/mnt/{serial}", Kind: TargetDir, Path: "/mnt/{serial}"},
		{Spec: "exec:esp@/dev/ttyUSB3", Kind: TargetExec, Tool: "esp", Port: "/dev/ttyUSB3", HasPort: true},
		{Spec: "tpm-nv", Kind: TargetTPMNV},
		{Spec: "exec:esp", Kind: TargetExec, Tool: "esp"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	c := Defaults()
	c.Flash = f
	for spec, msg := range map[string]string{
		"":                  "no flash target",
		" , ":               "no flash target",
		"dir:":              "needs a folder",
		"dir:/a\nb":         "control characters",
		"dir:/a/{serial}/b": "last path element",
		"dir:/a/{port}":     "only placeholder",
		"dir:/a,dir:/a":     "listed twice",
		"exec:nope":         `no tool "nope"`,
		"tpm-nv:1":          "no argument",
		"ftp:x":             "want dir:PATH, exec:NAME or tpm-nv",
	} {
		_, err := f.ParseTargets(spec)
		var ce *Error
		if !errors.As(err, &ce) || ce.Key != "flash.target" || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseTargets(%q) = %v, want a flash.target error saying %q", spec, err, msg)
		}
		if err2 := c.CheckTargets(spec); err2 == nil || err2.Error() != err.Error() {
			t.Errorf("CheckTargets(%q) = %v, ParseTargets said %v", spec, err2, err)
		}
	}
}

// Every file-valued key names a string field by its yaml tags: raw finds
// the value a STATION_<SECTION>_<KEY> override (or the file) put there.
func TestFileKeysNameStringFields(t *testing.T) {
	keys := []FileKey{KeyVendorRoots, KeyEKCertDir, KeyEscrowKey, KeyIssuerCert, KeyIssuerKey, KeyChain, KeyRoot, KeyFirmware, KeyGroupKey}
	var env []string
	for _, k := range keys {
		env = append(env, "STATION_"+strings.ToUpper(strings.Replace(string(k), ".", "_", 1))+"=/x/"+string(k))
	}
	var c Config
	if err := applyEnv(&c, env); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if got := c.raw(k); got != "/x/"+string(k) {
			t.Errorf("raw(%s) = %q", k, got)
		}
	}
	if got := c.raw("tpm.no_such_key"); got != "" {
		t.Errorf("raw of an unknown key = %q", got)
	}
}

func TestLineFixtures(t *testing.T) {
	c, err := Load(writeConfig(t, "tpm:\n  address: /dev/tpmrm0\n"), true, []string{"STATION_LINE_FIXTURES=f1=swtpm://127.0.0.1:2321;dir:/mnt/{serial}, swtpm://127.0.0.1:2323"})
	if err != nil {
		t.Fatal(err)
	}
	got := c.LineFixtures()
	want := []Fixture{{Name: "f1", TPM: "swtpm://127.0.0.1:2321", Flash: "dir:/mnt/{serial}"}, {Name: "swtpm://127.0.0.1:2323", TPM: "swtpm://127.0.0.1:2323"}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("fixtures %+v, want %+v", got, want)
	}
	c.Line.Fixtures = nil
	if got := c.LineFixtures(); len(got) != 1 || got[0].TPM != "/dev/tpmrm0" {
		t.Fatalf("no line.fixtures: %+v, want tpm.address alone", got)
	}
}

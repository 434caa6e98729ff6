package configs

import (
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/factory-id/station/enroll"
	"os"
	"reflect"
	"regexp"
	"strings"
	"unicode"
)

var stationIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// idScopeRe is a DPS ID scope: "0ne" and eight hex digits (0ne00000A0A).
var idScopeRe = regexp.MustCompile(`^0[nN][eE][0-9A-Fa-f]{8}$`)

// hostnameRe is a DNS host name of at least two labels (no scheme, port
// or path): what the device's DPS client connects to.
var hostnameRe = regexp.MustCompile(`^(?i:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.(?i:[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?))+$`)

// maxFirmwareVersion is the longest firmware.version the credential
// bundle carries.
const maxFirmwareVersion = 64

// CheckIDScope requires dps.id_scope: the device's DPS client cannot
// register without it, and verify signs it into the SAS token.
func (c *Config) CheckIDScope() error {
	if c.DPS.IDScope == "" {
		return &Error{Key: "dps.id_scope", Err: errors.New("not set: the DPS instance's ID scope (0ne...), as the Azure portal shows it")}
	}
	return nil
}

// checkStrings refuses a control character in any string value of the
// config (keys of maps included): such a value reaches certificates,
// bundles, audit records and flashing tools' arguments.
func checkStrings(v reflect.Value, key string) error {
	switch v.Kind() {
	case reflect.String:
		if i := strings.IndexFunc(v.String(), func(r rune) bool { return unicode.IsControl(r) }); i >= 0 {
			return &Error{Key: key, Err: fmt.Errorf("%q holds a control character (at byte %d)", v.String(), i)}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			name := t.Field(i).Tag.Get("yaml")
			if name == "-" || !t.Field(i).IsExported() {
				continue
			}
			k := name
			if key != "" {
				k = key + "." + name
			}
			if err := checkStrings(v.Field(i), k); err != nil {
				return err
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			if err := checkStrings(v.Index(i), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			k := fmt.Sprint(iter.Key().Interface())
			if err := checkStrings(iter.Key(), key); err != nil {
				return err
			}
			if err := checkStrings(iter.Value(), key+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reserved persistent handles the device key must not take: the EKs, the
// SRKs, and 0x81000100 where the DPS SDKs import the key DPS sends.
var reservedHandles = map[Handle]string{
	0x81000001: "the RSA SRK",
	0x81000002: "the ECC SRK",
	0x81000100: "the DPS SDKs' identity key",
}

// Validate checks every value that does not need the file system.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &Error{Key: key, Err: fmt.Errorf(format, args...)}
	}
	if err := checkStrings(reflect.ValueOf(*c), ""); err != nil {
		return err
	}
	if !stationIDRe.MatchString(c.Station.ID) {
		return bad("station.id", "%q is not a station name (letters, digits, . _ -, at most 64)", c.Station.ID)
	}
	if c.Station.DB == "" {
		return bad("station.db", "must name the database file")
	}
	if c.Station.SigningKey == "" {
		return bad("station.signing_key", "must name the audit signing key (PEM file or kms URI)")
	}
	if c.TPM.EK != "rsa2048" && c.TPM.EK != "ecc-p256" && c.TPM.EK != "ecc-p384" {
		return bad("tpm.ek", "%q: want rsa2048, ecc-p256 or ecc-p384", c.TPM.EK)
	}
	if c.TPM.EK == "ecc-p384" && c.DPS.Attestation == enroll.AttestTPM {
		return bad("tpm.ek", "ecc-p384 cannot attest to DPS: the DPS SDKs' TPM attestation uses the EK under a PolicySecret session, which the P-384 EK's policy B refuses; use x509 attestation or an rsa2048 EK")
	}
	if c.TPM.SRK != "rsa2048" && c.TPM.SRK != "ecc-p256" {
		return bad("tpm.srk", "%q: want rsa2048 or ecc-p256", c.TPM.SRK)
	}
	h := c.TPM.DeviceKeyHandle
	if h < 0x81000000 || h > 0x817fffff {
		return bad("tpm.device_key_handle", "%s is not a persistent handle (0x81000000-0x817fffff)", h)
	}
	if h >= 0x81010000 && h <= 0x8101ffff {
		return bad("tpm.device_key_handle", "%s is in the endorsement range reserved for EKs", h)
	}
	if what, ok := reservedHandles[h]; ok {
		return bad("tpm.device_key_handle", "%s is reserved for %s", h, what)
	}
	switch c.Ownership.OwnerAuth {
	case "empty":
	case "escrow":
		if c.DPS.Attestation == enroll.AttestTPM {
			return bad("ownership.owner_auth", "escrow cannot be used with dps.attestation tpm: the stock DPS device SDKs persist the key DPS sends under an empty owner auth, so every unit would fail registration in the field; use empty")
		}
	default:
		return bad("ownership.owner_auth", "%q: want empty or escrow", c.Ownership.OwnerAuth)
	}
	if c.Ownership.DAMaxTries == 0 {
		return bad("ownership.da_max_tries", "must be at least 1")
	}
	if c.PKI.Validity <= 0 {
		return bad("pki.validity", "must be positive")
	}
	if c.PKI.Warehouse < 0 {
		return bad("pki.warehouse", "must not be negative")
	}
	if c.PKI.MaxIssued < 0 {
		return bad("pki.max_issued", "must not be negative")
	}
	if err := enroll.CheckAttestation(c.DPS.Attestation); err != nil {
		return bad("dps.attestation", "%v", err)
	}
	if err := enroll.CheckRegistrationPattern(c.DPS.Attestation, c.DPS.RegistrationID); err != nil {
		return bad("dps.registration_id", "%v", err)
	}
	if s := c.DPS.IDScope; s != "" && !idScopeRe.MatchString(s) {
		return bad("dps.id_scope", "%q is not a DPS ID scope (0ne followed by 8 hex digits, e.g. 0ne00000A0A)", s)
	}
	if s := c.DPS.GlobalEndpoint; len(s) > 253 || !hostnameRe.MatchString(s) {
		return bad("dps.global_endpoint", "%q is not a host name (e.g. global.azure-devices-provisioning.net; no scheme, port or path)", s)
	}
	for i, h := range c.DPS.IoTHubs {
		if len(h) > 253 || !hostnameRe.MatchString(h) {
			return bad(fmt.Sprintf("dps.iot_hubs[%d]", i), "%q is not an IoT hub host name (NAME.azure-devices.net)", h)
		}
	}
	if v := c.Firmware.Version; len(v) > maxFirmwareVersion {
		return bad("firmware.version", "%d characters: the credential bundle carries at most %d", len(v), maxFirmwareVersion)
	}
	if env, ok := strings.CutPrefix(c.DPS.GroupKey, "env:"); ok && (env == "" || strings.HasPrefix(env, "STATION_")) {
		return bad("dps.group_key", "env:%s: name a variable outside STATION_* (those are config overrides, and never reach flashing tools)", env)
	}
	if c.DPS.Attestation == enroll.AttestSymmetricKey && c.DPS.GroupKey == "" {
		return bad("dps.group_key", "symmetric-key attestation needs the group key (a file, or env:NAME)")
	}
	if s := c.Firmware.SHA256; s != "" {
		if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
			return bad("firmware.sha256", "%q is not a SHA-256 in hex (64 characters)", s)
		}
	}
	if c.Firmware.Image != "" && c.Firmware.SHA256 == "" {
		return bad("firmware.sha256", "firmware.image is set but its published SHA-256 is not")
	}
	if c.Flash.Target != "" {
		if _, err := c.Flash.ParseTargets(c.Flash.Target); err != nil {
			return err
		}
	}
	if err := c.checkFixtures(); err != nil {
		return err
	}
	for name, t := range c.Flash.Tools {
		if t.Command == "" {
			return bad("flash.tools."+name+".command", "missing")
		}
		if t.Retries < 0 {
			return bad("flash.tools."+name+".retries", "must not be negative")
		}
		for _, v := range t.Env {
			if strings.HasPrefix(v, "STATION_") || (strings.HasPrefix(c.DPS.GroupKey, "env:") && v == strings.TrimPrefix(c.DPS.GroupKey, "env:")) {
				return bad("flash.tools."+name+".env", "%s may carry a secret (a password or the group key): a flashing tool never sees it", v)
			}
		}
	}
	return nil
}

// checkFixtures validates line.fixtures: each parses, and no name or
// address is used twice (a scanned fixture must name one fixture).
func (c *Config) checkFixtures() error {
	seen := map[string]int{}
	for i, e := range c.Line.Fixtures {
		key := fmt.Sprintf("line.fixtures[%d]", i)
		f, err := parseFixture(e)
		if err != nil {
			return &Error{Key: key, Err: err}
		}
		for _, v := range []string{f.Name, f.TPM} {
			if j, dup := seen[v]; dup && j != i {
				return &Error{Key: key, Err: fmt.Errorf("%q is already line.fixtures[%d]'s name or TPM: each fixture has its own name and TPM", v, j)}
			}
			seen[v] = i
		}
		if f.Flash != "" {
			if err := c.CheckTargets(f.Flash); err != nil {
				return &Error{Key: key, Err: err}
			}
		}
	}
	return nil
}

// CheckTargets validates a flash target list (Flash.ParseTargets).
func (c *Config) CheckTargets(s string) error {
	_, err := c.Flash.ParseTargets(s)
	return err
}

// FileKey names a config key holding a path, for CheckFiles.
type FileKey string

// The file-valued keys.
const (
	KeyVendorRoots FileKey = "tpm.vendor_roots"
	KeyEKCertDir   FileKey = "tpm.ek_cert_dir"
	KeyEscrowKey   FileKey = "ownership.escrow_public_key"
	KeyIssuerCert  FileKey = "pki.issuer_cert"
	KeyIssuerKey   FileKey = "pki.issuer_key"
	KeyChain       FileKey = "pki.chain"
	KeyRoot        FileKey = "pki.root"
	KeyFirmware    FileKey = "firmware.image"
	KeyGroupKey    FileKey = "dps.group_key"
)

// File returns the resolved path behind a file-valued key ("" when unset or a URI).
func (c *Config) File(k FileKey) string {
	v := c.raw(k)
	if IsURI(v) || strings.HasPrefix(v, "env:") {
		return ""
	}
	return c.Path(v)
}

// CheckProvision checks that every file provisioning reads is set and readable.
func (c *Config) CheckProvision() error {
	if err := c.CheckIDScope(); err != nil {
		return err
	}
	required := []FileKey{KeyEscrowKey, KeyIssuerCert, KeyIssuerKey, KeyRoot}
	if c.TPM.RequireEKCert {
		required = append(required, KeyVendorRoots)
	}
	optional := []FileKey{KeyChain, KeyFirmware, KeyEKCertDir}
	if c.DPS.Attestation == enroll.AttestSymmetricKey {
		required = append(required, KeyGroupKey)
	}
	return c.CheckFiles(required, optional)
}

// CheckFiles requires the keys in required to be set and every set key in
// either list to name a readable file or folder.
func (c *Config) CheckFiles(required, optional []FileKey) error {
	check := func(k FileKey, must bool) error {
		raw := c.raw(k)
		if raw == "" {
			if must {
				return &Error{Key: string(k), Err: errors.New("not set")}
			}
			return nil
		}
		p := c.File(k)
		if p == "" { // a URI or env: reference; checked by whoever opens it
			return nil
		}
		if _, err := os.Stat(p); err != nil {
			return &Error{Key: string(k), Err: fmt.Errorf("cannot read %s: %w", p, errors.Unwrap(err))}
		}
		return nil
	}
	for _, k := range required {
		if err := check(k, true); err != nil {
			return err
		}
	}
	for _, k := range optional {
		if err := check(k, false); err != nil {
			return err
		}
	}
	return nil
}

// raw is the value of the file-valued key k, found by the yaml tags of its
// section and key (the one place a key's name is given).
func (c *Config) raw(k FileKey) string {
	sec, key, _ := strings.Cut(string(k), ".")
	if f := yamlField(yamlField(reflect.ValueOf(c).Elem(), sec), key); f.IsValid() && f.Kind() == reflect.String {
		return f.String()
	}
	return ""
}

// yamlField is the field of struct v whose yaml tag is name (the zero
// Value when v is not a valid struct or has no such field).
func yamlField(v reflect.Value, name string) reflect.Value {
	if !v.IsValid() || v.Kind() != reflect.Struct {
		return reflect.Value{}
	}
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("yaml") == name {
			return v.Field(i)
		}
	}
	return reflect.Value{}
}

package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/factory-id/station/enroll"
	"gopkg.in/yaml.v3"
)

// Config is the station's whole configuration. Field tags are the YAML keys
// (station.example.yaml, docs/CLI.md); every scalar may also come from STATION_<SECTION>_<KEY>.
type Config struct {
	Station   Station   `yaml:"station"`
	TPM       TPM       `yaml:"tpm"`
	Ownership Ownership `yaml:"ownership"`
	PKI       PKI       `yaml:"pki"`
	DPS       DPS       `yaml:"dps"`
	Firmware  Firmware  `yaml:"firmware"`
	Flash     Flash     `yaml:"flash"`
	Agent     Agent     `yaml:"agent"`
	Line      Line      `yaml:"line"`

	// Dir is the folder relative paths in the file are resolved against
	// (the config file's folder; the working directory without a file).
	Dir string `yaml:"-"`
}

// Station names this station and where it keeps its state.
type Station struct {
	ID         string `yaml:"id"`
	DB         string `yaml:"db"`
	SigningKey string `yaml:"signing_key"`
	Operator   string `yaml:"operator"`
	// Witness is an optional folder on another disk or a share where the
	// station keeps its latest signed audit checkpoint (docs/AUDIT.md).
	Witness string `yaml:"witness"`
}

// TPM says how to reach the unit's TPM and which keys to make in it.
type TPM struct {
	Address         string `yaml:"address"`
	EK              string `yaml:"ek"`
	SRK             string `yaml:"srk"`
	DeviceKeyHandle Handle `yaml:"device_key_handle"`
	VendorRoots     string `yaml:"vendor_roots"`
	// EKCertDir holds EK certificates fetched beforehand for TPMs with none
	// in NV, each named by the hex SHA-256 of the EK's DER public key
	// (docs/VENDOR-ROOTS.md); optional.
	EKCertDir     string `yaml:"ek_cert_dir"`
	RequireEKCert bool   `yaml:"require_ek_cert"`
}

// Ownership is the policy for the unit's hierarchy authorizations.
type Ownership struct {
	OwnerAuth                string `yaml:"owner_auth"`
	EscrowPublicKey          string `yaml:"escrow_public_key"`
	DAMaxTries               uint32 `yaml:"da_max_tries"`
	DARecoverySeconds        uint32 `yaml:"da_recovery_seconds"`
	DALockoutRecoverySeconds uint32 `yaml:"da_lockout_recovery_seconds"`
}

// PKI names the line intermediate that issues device certificates.
type PKI struct {
	IssuerCert string   `yaml:"issuer_cert"`
	IssuerKey  string   `yaml:"issuer_key"`
	Chain      string   `yaml:"chain"`
	Root       string   `yaml:"root"`
	Validity   Duration `yaml:"validity"`
	Warehouse  Duration `yaml:"warehouse"`
	// MaxIssued bounds how many leaves this station issues from the line
	// intermediate (0: no ceiling).
	MaxIssued int `yaml:"max_issued"`
	// SANURI is the template of the URI SAN binding the leaf to the unit.
	SANURI string `yaml:"san_uri"`
}

// DPS holds what the device's DPS client needs and how units attest.
type DPS struct {
	Attestation    string   `yaml:"attestation"`
	IDScope        string   `yaml:"id_scope"`
	GlobalEndpoint string   `yaml:"global_endpoint"`
	RegistrationID string   `yaml:"registration_id"`
	IoTHubs        []string `yaml:"iot_hubs"`
	// GroupKey is the symmetric-key enrollment group's primary key: a file
	// path, or "env:NAME" to read it from the environment. Never stored.
	GroupKey         string `yaml:"group_key"`
	AllocationPolicy string `yaml:"allocation_policy"`
	IoTEdge          bool   `yaml:"iot_edge"`
	Factory          string `yaml:"factory"`
	Line             string `yaml:"line"`
}

// Firmware is the release image every unit gets.
type Firmware struct {
	Image   string `yaml:"image"`
	SHA256  string `yaml:"sha256"`
	Version string `yaml:"version"`
}

// Flash says where credentials and firmware go.
type Flash struct {
	Target string               `yaml:"target"`
	Tools  map[string]FlashTool `yaml:"tools"`
	// NVIndex is the owner NV index the tpm-nv target writes (default 0x01500010).
	NVIndex Handle `yaml:"nv_index"`
}

// FlashTool describes an external flashing program (exec:NAME targets).
// Arguments are templates expanded one by one; no shell is involved.
type FlashTool struct {
	Command  string   `yaml:"command"`
	Args     []string `yaml:"args"`
	Readback []string `yaml:"readback"`
	Timeout  Duration `yaml:"timeout"`
	Retries  int      `yaml:"retries"`
	Port     string   `yaml:"port"`
	// Env names the environment variables the tool may see beyond the
	// basic set (PATH, HOME, USER, LANG, LC_*, TZ, TMPDIR, TERM); nothing
	// else of the station's environment reaches it.
	Env []string `yaml:"env"`
}

// Agent says where `station agent` listens, holding the unlocked issuer key.
type Agent struct {
	// Sock is the agent's Unix socket (STATION_AGENT_SOCK). When set,
	// provision and line have the agent sign device certificates instead of
	// opening pki.issuer_key themselves; `station agent` listens there.
	Sock string `yaml:"sock"`
}

// Line configures `station line`, the shift-long session.
type Line struct {
	// Fixtures are the station's test fixtures, one TPM each:
	// "NAME=TPM-ADDRESS" or "NAME=TPM-ADDRESS;FLASH-TARGETS" (or a bare
	// address, named by itself). Empty: one fixture, tpm.address.
	Fixtures []string `yaml:"fixtures"`
}

// Fixture is one entry of line.fixtures.
type Fixture struct {
	Name  string // what an operator scans after the serial
	TPM   string // its TPM's address
	Flash string // its flash targets ("" for flash.target)
}

// LineFixtures returns line.fixtures parsed (Validate has checked them), or
// tpm.address as the one fixture when the list is empty.
func (c *Config) LineFixtures() []Fixture {
	if len(c.Line.Fixtures) == 0 {
		return []Fixture{{Name: c.TPM.Address, TPM: c.TPM.Address}}
	}
	out := make([]Fixture, 0, len(c.Line.Fixtures))
	for _, e := range c.Line.Fixtures {
		f, _ := parseFixture(e)
		out = append(out, f)
	}
	return out
}

var fixtureNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)

func parseFixture(e string) (Fixture, error) {
	e = strings.TrimSpace(e)
	rest, flashSpec, _ := strings.Cut(e, ";")
	name, tpm, named := strings.Cut(rest, "=")
	if !named || strings.Contains(name, "/") || strings.Contains(name, ":") {
		// A bare address (which may hold "=" in a path) names itself.
		name, tpm = rest, rest
	} else if !fixtureNameRe.MatchString(name) {
		return Fixture{}, fmt.Errorf("%q: the fixture name %q is not letters, digits, . _ - (at most 32)", e, name)
	}
	f := Fixture{Name: strings.TrimSpace(name), TPM: strings.TrimSpace(tpm), Flash: strings.TrimSpace(flashSpec)}
	if f.TPM == "" {
		return Fixture{}, fmt.Errorf("%q: no TPM address (want NAME=TPM-ADDRESS[;FLASH])", e)
	}
	return f, nil
}

// Handle is a TPM handle written as hex ("0x81000010").
type Handle uint32

// UnmarshalText parses a handle in hex (0x prefix) or decimal.
func (h *Handle) UnmarshalText(b []byte) error {
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 32)
	if err != nil {
		return fmt.Errorf("not a TPM handle (want hex such as 0x81000010): %q", b)
	}
	*h = Handle(v)
	return nil
}

// MarshalText writes the handle as 0x-prefixed hex.
func (h Handle) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h Handle) String() string { return fmt.Sprintf("0x%08x", uint32(h)) }

// Duration is a time.Duration written as Go duration text ("8760h").
type Duration time.Duration

// UnmarshalText parses Go duration syntax; "d" (days) is also accepted.
func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return fmt.Errorf("not a duration: %q", s)
		}
		*d = Duration(time.Duration(days) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("not a duration (want e.g. 8760h): %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes Go duration syntax.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Error is a configuration error naming the offending key. Callers map it to
// exit code 2.
type Error struct {
	Key string // "tpm.device_key_handle", or "" for the file as a whole
	Err error
}

func (e *Error) Error() string {
	if e.Key == "" {
		return "config: " + e.Err.Error()
	}
	return fmt.Sprintf("config %s: %v", e.Key, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Defaults returns the default configuration (station.example.yaml's values).
func Defaults() *Config {
	return &Config{
		Station: Station{ID: hostnameOr("station"), DB: "station.db", SigningKey: "audit-key.pem"},
		TPM: TPM{
			Address:         "/dev/tpmrm0",
			EK:              "rsa2048",
			SRK:             "rsa2048",
			DeviceKeyHandle: 0x81000010,
			VendorRoots:     "/etc/station/tpm-vendor-roots/",
			RequireEKCert:   true,
		},
		Ownership: Ownership{
			OwnerAuth:                "empty",
			DAMaxTries:               32,
			DARecoverySeconds:        600,
			DALockoutRecoverySeconds: 86400,
		},
		PKI: PKI{
			Validity:  Duration(43800 * time.Hour),
			Warehouse: Duration(8760 * time.Hour),
			SANURI:    "urn:station:serial:{serial}",
		},
		DPS: DPS{
			Attestation:    enroll.AttestTPM,
			GlobalEndpoint: "global.azure-devices-provisioning.net",
		},
		Flash: Flash{NVIndex: 0x01500010},
	}
}

func hostnameOr(def string) string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return def
	}
	return h
}

// Load reads the YAML file at path (strictly: an unknown key is an error),
// applies STATION_<SECTION>_<KEY> overrides from env, and validates the
// result. A missing file is an error only when mustExist is set (an explicit
// --config or $STATION_CONFIG); otherwise defaults and environment apply.
func Load(path string, mustExist bool, env []string) (*Config, error) {
	c := Defaults()
	c.Dir = "."
	if err := CheckEnv(env); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		c.Dir = filepath.Dir(path)
		if err := decode(c, data); err != nil {
			return nil, &Error{Err: fmt.Errorf("%s: %w", path, err)}
		}
	case errors.Is(err, os.ErrNotExist) && !mustExist:
	default:
		return nil, &Error{Err: fmt.Errorf("reading %s: %w", path, err)}
	}
	if err := applyEnv(c, env); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.resolvePaths()
	return c, nil
}

// decode reads exactly one YAML document into c, strictly: an empty file
// (or one holding only comments) and a second document ("---") are errors,
// not a default configuration and a silently ignored tail.
func decode(c *Config, data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var probe yaml.Node
	if err := yaml.Unmarshal(data, &probe); err == nil && (probe.Kind == 0 || len(probe.Content) == 0 || probe.Content[0].Kind == yaml.ScalarNode && probe.Content[0].Tag == "!!null") {
		return errors.New("the file is empty: a station config needs at least station.id (see configs/station.example.yaml)")
	}
	if err := dec.Decode(c); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("the file is empty: a station config needs at least station.id (see configs/station.example.yaml)")
		}
		return cleanYAMLError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("the file holds more than one YAML document (a second \"---\"): merge them into one")
	}
	return nil
}

// resolvePaths makes the folders of flash.target's dir: targets absolute
// against the config file's folder, like every other path in the file
// (the file-valued keys resolve through Path and File when read).
func (c *Config) resolvePaths() {
	if c.Flash.Target == "" {
		return
	}
	parts := strings.Split(c.Flash.Target, ",")
	for i, t := range parts {
		t = strings.TrimSpace(t)
		if p, ok := strings.CutPrefix(t, "dir:"); ok {
			t = "dir:" + c.Path(p)
		}
		parts[i] = t
	}
	c.Flash.Target = strings.Join(parts, ",")
}

var yamlFieldRe = regexp.MustCompile(`field (\S+) not found in type configs\.(\w+)`)

// cleanYAMLError turns yaml.v3's Go-type wording into the config's key names.
func cleanYAMLError(err error) error {
	msg := yamlFieldRe.ReplaceAllStringFunc(err.Error(), func(m string) string {
		sub := yamlFieldRe.FindStringSubmatch(m)
		section := strings.ToLower(sub[2])
		if section == "config" {
			return fmt.Sprintf("unknown section %q", sub[1])
		}
		return fmt.Sprintf("unknown key %q in section %q", sub[1], sectionName(sub[2]))
	})
	return errors.New(msg)
}

func sectionName(typeName string) string {
	t := reflect.TypeOf(Config{})
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).Type.Name() == typeName {
			return t.Field(i).Tag.Get("yaml")
		}
	}
	return strings.ToLower(typeName)
}

// applyEnv sets every scalar key named by a non-empty STATION_<SECTION>_<KEY>
// variable. The variables of NonKeyEnv are other inputs, and CheckEnv has
// refused every other name.
func applyEnv(c *Config, env []string) error {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || val == "" || !strings.HasPrefix(name, "STATION_") || slices.Contains(NonKeyEnv, name) {
			continue // an empty variable means "not set"
		}
		rest := strings.ToLower(strings.TrimPrefix(name, "STATION_"))
		for i := 0; i < t.NumField(); i++ {
			sec := t.Field(i).Tag.Get("yaml")
			if sec == "-" || !strings.HasPrefix(rest, sec+"_") {
				continue
			}
			key := strings.TrimPrefix(rest, sec+"_")
			sv := v.Field(i)
			for j := 0; j < sv.NumField(); j++ {
				if sv.Type().Field(j).Tag.Get("yaml") != key {
					continue
				}
				if err := setScalar(sv.Field(j), val); err != nil {
					return &Error{Key: sec + "." + key, Err: fmt.Errorf("from $%s: %w", name, err)}
				}
			}
		}
	}
	return nil
}

func setScalar(f reflect.Value, s string) error {
	if u, ok := f.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch f.Kind() {
	case reflect.String:
		f.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("not a boolean: %q", s)
		}
		f.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 0, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", s)
		}
		f.SetInt(n)
	case reflect.Uint32:
		n, err := strconv.ParseUint(s, 0, 32)
		if err != nil {
			return fmt.Errorf("not a non-negative integer: %q", s)
		}
		f.SetUint(n)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		f.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("cannot be set from the environment")
	}
	return nil
}

// Path resolves a path from the config against the config file's folder.
// URIs (scheme:...) other than plain paths are returned unchanged.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || IsURI(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// IsURI reports whether s is a key or target URI (pkcs11:, softkms:, tpmkms:,
// dir:, exec:, swtpm://...) rather than a file path.
func IsURI(s string) bool {
	i := strings.IndexByte(s, ':')
	if i <= 1 { // "C:" style drive letters and plain names are paths
		return false
	}
	for _, r := range s[:i] {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '+') {
			return false
		}
	}
	return true
}

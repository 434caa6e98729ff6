package station

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/internal/keyid"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/factory-id/station/agent"
	"github.com/factory-id/station/audit"
	"github.com/factory-id/station/certgen"
	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/flash"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

// Check statuses of station doctor.
const (
	CheckPass = "pass"
	CheckWarn = "warn"
	CheckFail = "fail"
)

// DoctorCheck is one named check of the station's own setup: its status,
// what was found, and (unless it passed) what to do.
type DoctorCheck struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Hint   string `json:"hint"` // "" when the check passed
}

// DoctorOptions are the inputs of Doctor besides the configuration.
type DoctorOptions struct {
	// ConfigFile is the config file that was read ("" when none was:
	// defaults and STATION_* variables only).
	ConfigFile string
	// Getenv reads the issuer key's password (STATION_PKI_KEY_PASSWORD);
	// Doctor never prompts.
	Getenv func(string) string
	// ExportDir is where exports are written (the working directory when
	// empty): its file system's free space is checked.
	ExportDir string
	// Now is the time expiry is measured from (time.Now when zero).
	Now time.Time
	// EmptyFixturesOK makes an unreachable fixture TPM a warning, not a
	// failure (station line: a unit's TPM answers once it is clamped).
	EmptyFixturesOK bool
}

// Free-space thresholds of the disk check: below either is a warning.
var (
	DiskMinFree    uint64 = 1 << 30 // bytes
	DiskMinPercent        = 5.0
)

// ExpiryWarnDays is how close an expiry (a vendor CA, the issuing chain)
// has to be to warn.
const ExpiryWarnDays = 90

// DoctorNames lists the checks Doctor runs, in order ("tpm" once per
// fixture).
var DoctorNames = []string{"config", "vendor-roots", "issuer-chain", "issuer-key", "warehouse", "escrow-key",
	"firmware", "database", "signing-key", "audit-log", "tpm", "disk"}

// Doctor checks the station's own setup, read-only: the configuration
// (cfgErr is why it did not load; then nothing else can be checked), the TPM
// vendor roots, the line intermediate (its chain to the pinned root, its key,
// its lifetime against the warehouse period), the escrow key, the firmware
// image against its published hash, the database (this station's, not held
// by another process), the signing key against the audit log's, the audit
// log to its last checkpoint, every fixture's TPM (reachable, and what it
// holds), and the free disk space. It changes nothing: no file is written,
// the database is opened read-only, TPMs are only read.
func Doctor(cfg *configs.Config, cfgErr error, o DoctorOptions) []DoctorCheck {
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	d := &doctor{cfg: cfg, o: o}
	if cfgErr != nil {
		return []DoctorCheck{{Name: "config", Status: CheckFail, Detail: cfgErr.Error(),
			Hint: hintOr(cfgErr, "fix the key named above (configs/station.example.yaml lists every key), or give --config FILE")}}
	}
	out := []DoctorCheck{d.config(), d.vendorRoots()}
	out = append(out, d.issuer()...)
	out = append(out, d.escrowKey(), d.firmware())
	out = append(out, d.database()...)
	if d.db != nil {
		defer d.db.Close()
	}
	for _, addr := range Fixtures(cfg) {
		out = append(out, d.tpm(addr))
	}
	return append(out, d.disk())
}

// Fixtures lists the TPM addresses of the station's fixtures: those of
// line.fixtures, else tpm.address.
func Fixtures(cfg *configs.Config) []string {
	var out []string
	for _, f := range cfg.LineFixtures() {
		out = append(out, f.TPM)
	}
	return out
}

type doctor struct {
	cfg *configs.Config
	o   DoctorOptions
	db  *store.DB // nil when it did not open
}

func pass(name, format string, args ...any) DoctorCheck {
	return DoctorCheck{Name: name, Status: CheckPass, Detail: fmt.Sprintf(format, args...)}
}

func warn(name, hint, format string, args ...any) DoctorCheck {
	return DoctorCheck{Name: name, Status: CheckWarn, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

func fail(name, hint, format string, args ...any) DoctorCheck {
	return DoctorCheck{Name: name, Status: CheckFail, Detail: fmt.Sprintf(format, args...), Hint: hint}
}

// hintOr is the hint err carries (hint.Of), else def.
func hintOr(err error, def string) string {
	if h := hint.Of(err); h != "" {
		return h
	}
	return def
}

func days(from, to time.Time) int { return int(to.Sub(from).Hours() / 24) }

func day(t time.Time) string { return t.UTC().Format("2006-01-02") }

func (d *doctor) config() DoctorCheck {
	cfg := d.cfg
	if err := cfg.CheckIDScope(); err != nil {
		return fail("config", "set dps.id_scope to the DPS instance's ID scope (the Azure portal shows it)", "%v", err)
	}
	what := fmt.Sprintf("station %s, %s attestation, DPS scope %s", cfg.Station.ID, cfg.DPS.Attestation, cfg.DPS.IDScope)
	if d.o.ConfigFile == "" {
		return warn("config", "write station.yaml (configs/station.example.yaml lists every key) or give --config FILE",
			"no config file: defaults and STATION_* variables only (%s)", what)
	}
	return pass("config", "%s is valid: %s", d.o.ConfigFile, what)
}

func (d *doctor) vendorRoots() DoctorCheck {
	const name = "vendor-roots"
	cfg := d.cfg
	missing, why := CheckFail, "tpm.require_ek_cert is true: every unit's EK certificate is checked against them"
	if !cfg.TPM.RequireEKCert {
		missing, why = CheckWarn, "tpm.require_ek_cert is false, but an EK certificate found in NV is still checked"
	}
	const hint = "put your TPM vendors' EK CA certificates (roots and intermediates, PEM or DER) in the folder tpm.vendor_roots names (docs/VENDOR-ROOTS.md says where each vendor publishes them); `station ek check --roots DIR sample.der` tells which CA a sample chip needs"
	if cfg.TPM.VendorRoots == "" {
		return DoctorCheck{Name: name, Status: missing, Detail: "tpm.vendor_roots is not set (" + why + ")", Hint: hint}
	}
	path := cfg.File(configs.KeyVendorRoots)
	r, err := tpmops.LoadVendorRoots(path)
	if err != nil {
		return DoctorCheck{Name: name, Status: missing, Detail: err.Error() + " (" + why + ")", Hint: hint}
	}
	inv := r.Inventory()
	first := r.Certs[0]
	var expired []string
	for _, c := range r.Certs {
		if c.NotAfter.Before(first.NotAfter) {
			first = c
		}
		if c.NotAfter.Before(d.o.Now) {
			expired = append(expired, c.Subject.CommonName)
		}
	}
	detail := fmt.Sprintf("%s: %d certificates (%d known to station, %d others); first expiry %s (%q), in %d days",
		path, len(r.Certs), len(inv.Known), len(inv.Unknown), day(first.NotAfter), first.Subject.CommonName, days(d.o.Now, first.NotAfter))
	if len(inv.Lacking) > 0 {
		detail += fmt.Sprintf("; %d more CAs of the same vendors are known but not in the folder (station ek check lists them)", len(inv.Lacking))
	}
	var problems []string
	for _, s := range r.Skipped {
		problems = append(problems, fmt.Sprintf("%s does not parse (skipped: %v)", s.File, s.Err))
	}
	if len(expired) > 0 {
		problems = append(problems, fmt.Sprintf("%d expired: %s", len(expired), strings.Join(expired, ", ")))
	}
	if len(problems) > 0 {
		return warn(name, "replace expired or unparseable CA certificates with their vendors' current ones (docs/VENDOR-ROOTS.md)",
			"%s; %s", detail, strings.Join(problems, "; "))
	}
	return pass(name, "%s", detail)
}

// issuer checks the line intermediate: issuer-chain, issuer-key, warehouse.
func (d *doctor) issuer() []DoctorCheck {
	cfg := d.cfg
	const certHint = "point pki.issuer_cert, pki.chain and pki.root at the line intermediate's certificate, the intermediates above it and the pinned root (station ca issue-intermediate writes ca.crt and chain.pem)"
	var is *certgen.Issuer
	chain := func() DoctorCheck {
		const name = "issuer-chain"
		if cfg.PKI.IssuerCert == "" || cfg.PKI.Root == "" {
			return fail(name, certHint, "pki.issuer_cert and pki.root must be set")
		}
		cert, err := certgen.ReadCertificate(cfg.File(configs.KeyIssuerCert))
		if err != nil {
			return fail(name, certHint, "pki.issuer_cert: %v", err)
		}
		var above []*x509.Certificate
		if cfg.PKI.Chain != "" {
			if above, err = certgen.ReadCertificates(cfg.File(configs.KeyChain)); err != nil {
				return fail(name, certHint, "pki.chain: %v", err)
			}
		}
		root, err := certgen.ReadCertificate(cfg.File(configs.KeyRoot))
		if err != nil {
			return fail(name, certHint, "pki.root: %v", err)
		}
		is = &certgen.Issuer{Cert: cert, Chain: above, Root: root}
		end, _ := is.CheckLifetime(d.o.Now, 0)
		if err := certgen.VerifyChain(cert, above, root, d.o.Now); err != nil {
			return fail(name, hintOr(err, certHint), "%v", err)
		}
		path := []string{cert.Subject.CommonName}
		for _, c := range above {
			if !c.Equal(root) && !c.Equal(cert) {
				path = append(path, c.Subject.CommonName)
			}
		}
		c := pass(name, "%s -> pinned root %q: verifies; the chain's first expiry is %s, in %d days",
			strings.Join(path, " -> "), root.Subject.CommonName, day(end), days(d.o.Now, end))
		if days(d.o.Now, end) < ExpiryWarnDays {
			c.Status, c.Hint = CheckWarn, "issue the next line intermediate (station ca issue-intermediate) before this one expires"
		}
		return c
	}()
	out := []DoctorCheck{chain, d.issuerKey(is), d.warehouse(is)}
	return out
}

func (d *doctor) issuerKey(is *certgen.Issuer) DoctorCheck {
	const name = "issuer-key"
	cfg := d.cfg
	ref := cfg.PKI.IssuerKey
	if ref == "" {
		return fail(name, "set pki.issuer_key: an encrypted PEM file or a pkcs11: URI", "pki.issuer_key is not set")
	}
	if !configs.IsURI(ref) {
		ref = cfg.Path(ref)
	}
	shown := certgen.RedactURI(ref)
	if cfg.Agent.Sock != "" {
		return d.agentKey(is)
	}
	pw := d.o.Getenv(configs.EnvPKIKeyPassword)
	if certgen.NeedsPassword(ref) && pw == "" {
		return warn(name, "set "+configs.EnvPKIKeyPassword+" to have doctor open the key (it never prompts)",
			"not checked: no password (%s is an encrypted PEM and %s is not set)", shown, configs.EnvPKIKeyPassword)
	}
	k, err := certgen.OpenKey(ref, func() ([]byte, error) { return []byte(pw), nil })
	if err != nil {
		hint := "check pki.issuer_key: an encrypted PEM file (password in " + configs.EnvPKIKeyPassword + ") or a pkcs11: URI with its pin-source"
		switch {
		case errors.Is(err, certgen.ErrPassword):
			hint = "check " + configs.EnvPKIKeyPassword + ": it must be the line key's password"
		case errors.Is(err, certgen.ErrHSM):
			hint = "check that the token is present, the module path and the PIN (pin-source) in pki.issuer_key"
		}
		return fail(name, hintOr(err, hint), "%v", err)
	}
	defer k.Close()
	where := "encrypted PEM " + shown
	switch {
	case k.InHSM:
		where = "HSM key " + shown
	case strings.HasPrefix(ref, "softkms:"):
		where = "plain PEM " + shown + " (softkms:, for tests and demos)"
	}
	if is == nil {
		return warn(name, "fix issuer-chain first", "%s opens; not matched: the issuer certificate did not load", where)
	}
	if err := certgen.CheckKeyMatches(k.Signer, is.Cert.PublicKey); err != nil {
		return fail(name, "pki.issuer_key and pki.issuer_cert must be one intermediate's key and certificate (ca.key and ca.crt of the same station ca issue-intermediate --out folder)",
			"%s opens, but is not the key of %q: %v", where, is.Cert.Subject.CommonName, err)
	}
	return pass(name, "%s opens and signs for %q", where, is.Cert.Subject.CommonName)
}

// agentKey is the issuer-key check when station agent holds the key: the
// agent answers, holds pki.issuer_cert's key (it proved that when it
// started) and applies this configuration's policy.
func (d *doctor) agentKey(is *certgen.Issuer) DoctorCheck {
	const name = "issuer-key"
	sock := d.cfg.Path(d.cfg.Agent.Sock)
	if is == nil {
		return warn(name, "fix issuer-chain first", "not checked: the issuer certificate did not load")
	}
	c, err := agent.Dial(sock, is, AgentPolicy(d.cfg))
	if err != nil {
		return fail(name, hintOr(err, "start station agent with this config"), "agent.sock %s: %v", sock, err)
	}
	i := c.Info()
	return pass(name, "held by station agent (pid %d) at %s for %q; %d certificate(s) signed since it started", i.PID, sock, i.IssuerCN, i.Issued)
}

func (d *doctor) warehouse(is *certgen.Issuer) DoctorCheck {
	const name = "warehouse"
	if is == nil {
		return warn(name, "fix issuer-chain first", "not checked: the issuing chain did not load")
	}
	cfg := d.cfg
	wh, life := cfg.PKI.Warehouse.D(), cfg.PKI.Validity.D()
	end, err := is.CheckLifetime(d.o.Now, wh)
	if err != nil {
		return fail(name, hintOr(err, ""), "%v", err)
	}
	whDays, lifeDays := int(wh.Hours()/24), int(life.Hours()/24)
	if full := d.o.Now.Add(wh + life); end.Before(full) {
		return warn(name, "plan the next line intermediate: leaves are cut at the chain's first expiry",
			"the chain outlives the warehouse period (%d days) but ends %s: leaves issued now get %d days of field life, not pki.validity's %d",
			whDays, day(end), days(d.o.Now.Add(wh), end), lifeDays)
	}
	return pass(name, "the chain (first expiry %s) outlives the warehouse period (%d days) and pki.validity (%d days) of a leaf issued now",
		day(end), whDays, lifeDays)
}

func (d *doctor) escrowKey() DoctorCheck {
	const name = "escrow-key"
	const hint = "point ownership.escrow_public_key at the escrow PUBLIC key (PEM, EC P-256/P-384 or RSA >= 2048); its private half stays with security, off the line"
	if d.cfg.Ownership.EscrowPublicKey == "" {
		return fail(name, hint, "ownership.escrow_public_key is not set: lockout auths could not be escrowed")
	}
	path := d.cfg.File(configs.KeyEscrowKey)
	e, err := LoadEscrower(path)
	if err != nil {
		return fail(name, hint, "%v", err)
	}
	var probe [32]byte
	rand.Read(probe[:])
	jwe, err := e.Seal("doctor", "lockout", probe[:])
	clear(probe[:])
	if err != nil {
		return fail(name, hint, "%s: %v", path, err)
	}
	return pass(name, "%s: %s key, seals a test value (%s, %d-byte JWE)", path, keyType(e.pub), e.alg, len(jwe))
}

func (d *doctor) firmware() DoctorCheck {
	const name = "firmware"
	cfg := d.cfg
	if cfg.Firmware.Image == "" {
		if cfg.Flash.Target != "" {
			return fail(name, "set firmware.image and firmware.sha256 (the release's published hash)",
				"flash.target is %s but firmware.image is not set: flashing needs the release image", cfg.Flash.Target)
		}
		return pass(name, "no firmware.image and no flash.target: units get no image from the station")
	}
	path := cfg.File(configs.KeyFirmware)
	fw, err := flash.LoadFirmware(path, cfg.Firmware.SHA256)
	if err != nil {
		return fail(name, hintOr(err, "firmware.image must name the release image, readable by the station"), "%v", err)
	}
	return pass(name, "%s: %d bytes, SHA-256 %s matches firmware.sha256", path, len(fw.Data), fw.SHA256)
}

// database opens the database read-only and checks the signing key and
// the audit log in it: database, signing-key, audit-log.
func (d *doctor) database() []DoctorCheck {
	cfg := d.cfg
	db, err := OpenDB(cfg, true)
	var dbc DoctorCheck
	if err != nil {
		hint := "run `station init` (it creates the database and the signing key), or give --db"
		if !errors.Is(err, ErrNotInitialized) {
			hint = hintOr(err, "check station.db (or --db)")
		}
		dbc = fail("database", hint, "%v", err)
	} else {
		d.db = db
		units, err := db.Units(nil)
		if err != nil {
			dbc = fail("database", hintOr(err, "restore the database from its latest backup (docs/DATABASE.md)"), "reading the units: %v", err)
		} else {
			n := map[string]int{}
			for _, u := range units {
				n[u.Status]++
			}
			dbc = pass("database", "%s: station %s's database, not held by another process; %d units (%d provisioned, %d in progress, %d revoked)",
				cfg.Station.DB, cfg.Station.ID, len(units), n[store.StatusProvisioned], n[store.StatusInProgress], n[store.StatusRevoked])
		}
	}

	keyRef := certgen.RedactURI(cfg.Path(cfg.Station.SigningKey))
	var pub crypto.PublicKey
	var keyc DoctorCheck
	if pub, err = LoadSigningKey(cfg); err != nil {
		keyc = fail("signing-key", "run `station init` (it creates the signing key), or point station.signing_key at this station's key", "%v", err)
		pub = nil
	} else if d.db == nil {
		keyc = warn("signing-key", "fix the database first", "%s opens; not compared with the audit log's: the database did not open", keyRef)
	} else if logKey, err := audit.LogKey(d.db); err != nil {
		keyc = fail("signing-key", hintOr(err, "restore the database from its latest backup (docs/DATABASE.md)"), "%v", err)
		pub = nil
	} else if logKey == nil {
		keyc = warn("signing-key", "run `station init`", "%s opens; the audit log records no key yet", keyRef)
	} else if eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(logKey) {
		keyc = fail("signing-key", "point station.signing_key at the key this station's audit log was started with (a new key needs a new station: the log's checkpoints would no longer verify)",
			"%s (%s) is not the key the audit log is signed with (%s)", keyRef, keyDigest(pub), keyDigest(logKey))
		pub = nil
	} else {
		keyc = pass("signing-key", "%s (%s) is the key the audit log is signed with", keyRef, keyDigest(pub))
	}

	var logc DoctorCheck
	switch {
	case d.db == nil:
		logc = warn("audit-log", "fix the database first", "not checked: the database did not open")
	case pub == nil:
		logc = warn("audit-log", "fix the signing key first", "not checked: no usable station key to verify it with")
	default:
		var rep *audit.Report
		err := d.db.Guard(func() (err error) {
			rep, err = audit.Verify(d.db, pub, nil)
			return err
		})
		if err != nil {
			logc = fail("audit-log", hintOr(err, "run `station audit verify` for the details"), "%v", err)
			break
		}
		detail := fmt.Sprintf("%d records verify", rep.Records)
		if rep.Latest != nil {
			detail += fmt.Sprintf(" up to the last checkpoint (size %d; %d signed checkpoints kept)", rep.Latest.Size, rep.Checkpoints)
		}
		if rep.Unsigned > 0 {
			detail += fmt.Sprintf("; %d records after it are chained, not yet signed", rep.Unsigned)
		}
		logc = pass("audit-log", "%s", detail)
		if len(rep.Warnings) > 0 {
			logc = warn("audit-log", "run `station audit verify` for the details", "%s; %s", detail, strings.Join(rep.Warnings, "; "))
		}
	}
	return []DoctorCheck{dbc, keyc, logc}
}

func keyType(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	}
	return fmt.Sprintf("%T", pub)
}

// keyDigest names a signing key as audit pubkey, audit verify and the
// enrollment manifest do: its key_id (internal/keyid).
func keyDigest(pub crypto.PublicKey) string {
	id, err := keyid.Of(pub)
	if err != nil {
		return "unknown key"
	}
	return "key_id " + id
}

// tpm reads one fixture's TPM (tpmops.Inspect: nothing is changed on it)
// and says what it holds.
func (d *doctor) tpm(addr string) DoctorCheck {
	const name = "tpm"
	tpmHint := func(err error) string {
		switch {
		case errors.Is(err, tpmops.ErrUnreachable):
			return "check the fixture's TPM connection (tpm.address): the unit clamped and powered, the cable, or swtpm running on that port"
		case errors.Is(err, tpmops.ErrTPMBusy):
			return "another program is using the TPM or it is out of slots: retry when the fixture is idle"
		}
		return hintOr(err, "check tpm.address")
	}
	t, err := tpmops.Open(addr)
	if err != nil && d.o.EmptyFixturesOK && errors.Is(err, tpmops.ErrUnreachable) {
		return warn(name, "fine if no unit is on this fixture yet; else "+tpmHint(err), "%v", err)
	}
	if err != nil {
		return fail(name, tpmHint(err), "%v", err)
	}
	in, err := t.Inspect()
	if cerr := t.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fail(name, tpmHint(err), "reading TPM %s: %v", addr, err)
	}
	var u *store.Unit
	lookup := ""
	if d.db != nil {
		if u, err = FindUnit(d.db, in); err != nil {
			lookup = "; " + err.Error()
		}
	}
	r := RecognizeTPM(in, u)
	vendor := in.Info.Manufacturer
	if in.Info.Vendor != "" {
		vendor = in.Info.Vendor
	}
	detail := fmt.Sprintf("%s reachable (%s, firmware %s): %s%s", addr, vendor, in.Info.FirmwareVersion(), r.Detail, lookup)
	switch {
	case in.DA.InLockout:
		return warn(name, hintOr(tpmops.ErrLockout, ""), "%s; the TPM is in dictionary-attack lockout", detail)
	case r.Status == TPMOwnedElsewhere:
		return warn(name, hintOr(ErrOwnedElsewhere, ""), "%s", detail)
	case r.Status == TPMInProgress:
		return warn(name, "re-run `station provision --serial "+r.Serial+"` to finish the unit on the fixture", "%s", detail)
	case r.Status == TPMRevoked:
		return warn(name, hintOr(ErrRevoked, ""), "%s", detail)
	}
	return pass(name, "%s", detail)
}

// disk checks the free space where the database and the exports are
// written.
func (d *doctor) disk() DoctorCheck {
	const name = "disk"
	exports := d.o.ExportDir
	if exports == "" {
		exports = "."
	}
	places := []struct{ what, dir string }{{"database", filepath.Dir(d.cfg.Station.DB)}, {"exports", exports}}
	var parts, low []string
	seen := map[uint64]bool{}
	for _, p := range places {
		s, err := diskSpace(p.dir)
		if err != nil {
			low = append(low, fmt.Sprintf("%s folder %s: %v", p.what, p.dir, err))
			continue
		}
		if seen[s.device] {
			continue
		}
		seen[s.device] = true
		pct := 100 * float64(s.free) / float64(max(s.total, 1))
		line := fmt.Sprintf("%s folder %s: %s free of %s (%.0f%%)", p.what, p.dir, gib(s.free), gib(s.total), pct)
		if s.free < DiskMinFree || pct < DiskMinPercent {
			low = append(low, line)
		}
		parts = append(parts, line)
	}
	if len(low) > 0 {
		return warn(name, fmt.Sprintf("free space (at least %s and %.0f%%): the database, its backups and exports grow with every unit", gib(DiskMinFree), DiskMinPercent),
			"low or unknown: %s", strings.Join(low, "; "))
	}
	return pass(name, "%s", strings.Join(parts, "; "))
}

func gib(b uint64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

type space struct {
	free, total uint64
	device      uint64 // tells file systems apart
}

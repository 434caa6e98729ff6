package cmd

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/spf13/cobra"

	"github.com/factory-id/station/configs"
	"github.com/factory-id/station/internal/cli"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/station"
	"github.com/factory-id/station/store"
	"github.com/factory-id/station/tpmops"
)

func newTPMCommand(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "tpm",
		Short: "Look at a TPM on the bench",
		Args:  cli.NoArgs,
		RunE:  func(c *cobra.Command, _ []string) error { return cli.Usagef("tpm needs a subcommand: inspect") },
	}
	c.AddCommand(newTPMInspectCommand(g))
	return c
}

type tpmInspectOptions struct {
	tpm   string
	roots string
}

func newTPMInspectCommand(g *globals) *cobra.Command {
	o := &tpmInspectOptions{}
	c := &cobra.Command{
		Use:   "inspect [--tpm URI] [--roots DIR]",
		Short: "What a TPM holds: vendor, firmware, EK certificates and their chains, persistent handles, auth bits, DA state",
		Long: `Reads a TPM and reports, for an engineer at the bench: manufacturer and firmware;
every EK certificate in NV (index, padding or TCG header, the key it certifies,
its chain against the TPM vendor roots, through the vendor intermediates the
TPM stores in NV); the persistent handles and what station makes of each
(standard EK, SRK, station's device key at tpm.device_key_handle, DPS keys,
"unknown: not station's"); the hierarchy auth bits; the dictionary-attack
state; and, when the station database exists, whether it knows this TPM.

It only reads: nothing is created, persisted, evicted, written or flushed on
the TPM, and no authorization is tried. It needs no config (--tpm is enough)
and never the issuer key. Exit 0 when the TPM was read, 2 for a bad address,
5 when the TPM is unreachable or busy.`,
		Args: cli.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return o.run(g, c) },
	}
	f := c.Flags()
	f.StringVar(&o.tpm, "tpm", "", "the TPM (overrides tpm.address): sim[:SEED], swtpm://HOST:PORT, unix:///PATH, /dev/tpmrm0")
	f.StringVar(&o.roots, "roots", "", "folder (or PEM file) of trusted TPM vendor CA certificates (default: tpm.vendor_roots)")
	return c
}

func (o *tpmInspectOptions) run(g *globals, c *cobra.Command) error {
	cfg, err := g.config()
	if err != nil {
		return err
	}
	addr := o.tpm
	if addr == "" {
		addr = cfg.TPM.Address
	}
	roots, rootsReport, err := o.loadRoots(cfg)
	if err != nil {
		return err
	}
	rep, err := inspectTPM(g, addr, cfg, roots, time.Now())
	if err != nil {
		if g.json() {
			// One document on stdout, whatever happened.
			_ = cli.WriteJSON(c.OutOrStdout(), inspectFailure{TPM: addr, Error: err.Error(), ExitCode: code(err), Hint: hint.Of(err)})
		}
		return err
	}
	rep.Roots = rootsReport
	if g.json() {
		return cli.WriteJSON(c.OutOrStdout(), rep)
	}
	rep.writeText(c.OutOrStdout())
	return nil
}

// loadRoots reads --roots (a usage error when unreadable), else the
// configured tpm.vendor_roots (reported, not fatal: the TPM is still
// worth reading without them).
func (o *tpmInspectOptions) loadRoots(cfg *configs.Config) (*tpmops.VendorRoots, inspectRoots, error) {
	path := o.roots
	if path == "" {
		path = cfg.File(configs.KeyVendorRoots)
	}
	rr := inspectRoots{Path: path}
	if path == "" {
		rr.Error = "tpm.vendor_roots not set"
		return nil, rr, nil
	}
	r, err := tpmops.LoadVendorRoots(path)
	if err != nil {
		if o.roots != "" {
			return nil, rr, cli.Usagef("--roots: %v", err)
		}
		rr.Error = err.Error()
		return nil, rr, nil
	}
	rr.Certs = len(r.Certs)
	return r, rr, nil
}

type inspectFailure struct {
	TPM      string `json:"tpm"`
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
	Hint     string `json:"hint"`
}

// inspectReport is `station tpm inspect`'s output (-o json: this document).
type inspectReport struct {
	TPM                string          `json:"tpm"`
	Vendor             inspectVendor   `json:"vendor"`
	EKCerts            []inspectEKCert `json:"ek_certificates"`
	Intermediates      []inspectCA     `json:"nv_intermediates"`
	IntermediatesError string          `json:"nv_intermediates_error,omitempty"`
	Roots              inspectRoots    `json:"vendor_roots"`
	Persistent         []inspectHandle `json:"persistent_handles"`
	NV                 []inspectNV     `json:"nv_indices"`
	Auth               inspectAuth     `json:"hierarchy_auth"`
	DA                 inspectDA       `json:"dictionary_attack"`
	Database           inspectDatabase `json:"station_database"`
	Transients         []string        `json:"transients"`
	Leaked             []string        `json:"leaked_transients"`
	ExitCode           int             `json:"exit_code"`
	Hint               string          `json:"hint"`
	unit               *store.Unit     // the database's record of this TPM, if any
}

type inspectVendor struct {
	Manufacturer       string    `json:"manufacturer"`
	ManufacturerID     string    `json:"manufacturer_id"`
	Vendor             string    `json:"vendor,omitempty"`
	VendorString       string    `json:"vendor_string"`
	VendorTPMType      uint32    `json:"vendor_tpm_type"`
	FirmwareVersion    string    `json:"firmware_version"`
	FirmwareVersionRaw [2]string `json:"firmware_version_raw"`
	SpecFamily         string    `json:"spec_family"`
	SpecLevel          uint32    `json:"spec_level"`
	SpecRevision       string    `json:"spec_revision"`
	SpecYear           uint32    `json:"spec_year"`
	SpecDayOfYear      uint32    `json:"spec_day_of_year"`
}

type inspectEKCert struct {
	NVIndex      string   `json:"nv_index"`
	Slot         string   `json:"slot"`
	HighRange    bool     `json:"high_range"`
	NVSize       int      `json:"nv_size"`
	NVAttributes []string `json:"nv_attributes"`
	Read         bool     `json:"read"`
	Error        string   `json:"error,omitempty"`
	DERLength    int      `json:"der_length,omitempty"`
	TCGHeader    bool     `json:"tcg_header"`
	Padding      int      `json:"padding"`
	SHA256       string   `json:"sha256,omitempty"`
	Subject      string   `json:"subject,omitempty"`
	Issuer       string   `json:"issuer,omitempty"`
	NotBefore    string   `json:"not_before,omitempty"`
	NotAfter     string   `json:"not_after,omitempty"`
	// Key is the certified key's algorithm; KeyMatchesSlot whether it is
	// the one the index is for; CertifiedHandle the persistent handle
	// holding that key ("" when it is not persisted).
	Key             string       `json:"key,omitempty"`
	KeyMatchesSlot  bool         `json:"key_matches_slot"`
	CertifiedHandle string       `json:"certified_handle,omitempty"`
	Chain           inspectChain `json:"chain"`
}

// inspectChain is an EK certificate's chain status against the roots.
type inspectChain struct {
	Status       string           `json:"status"` // chains | does-not-chain | not-checked
	Path         []string         `json:"path,omitempty"`
	AnchorSHA256 string           `json:"anchor_sha256,omitempty"`
	Reason       string           `json:"reason,omitempty"`
	Missing      []tpmops.KnownCA `json:"missing,omitempty"`
	Hint         string           `json:"hint"`
}

type inspectCA struct {
	Subject  string `json:"subject"`
	Issuer   string `json:"issuer"`
	SHA256   string `json:"sha256"`
	NotAfter string `json:"not_after"`
}

type inspectRoots struct {
	Path  string `json:"path"`
	Certs int    `json:"certificates"`
	Error string `json:"error,omitempty"`
}

type inspectHandle struct {
	Handle  string `json:"handle"`
	Alg     string `json:"alg"`
	Role    string `json:"role"`
	Station bool   `json:"station"`
	Detail  string `json:"detail"`
}

type inspectNV struct {
	Index      string   `json:"index"`
	Size       int      `json:"size"`
	Attributes []string `json:"attributes"`
	What       string   `json:"what,omitempty"`
}

type inspectAuth struct {
	OwnerAuthSet       bool `json:"owner_auth_set"`
	EndorsementAuthSet bool `json:"endorsement_auth_set"`
	LockoutAuthSet     bool `json:"lockout_auth_set"`
}

type inspectDA struct {
	InLockout              bool   `json:"in_lockout"`
	LockoutCounter         uint32 `json:"lockout_counter"`
	MaxTries               uint32 `json:"max_tries"`
	RecoverySeconds        uint32 `json:"recovery_seconds"`
	LockoutRecoverySeconds uint32 `json:"lockout_recovery_seconds"`
}

// Station database statuses beyond station.Recognition's.
const (
	dbNone        = "no-database"
	dbUnavailable = "unavailable"
)

type inspectDatabase struct {
	Path   string `json:"path"`
	Status string `json:"status"`
	Serial string `json:"serial,omitempty"`
	Detail string `json:"detail"`
}

func hexHandle(h uint32) string { return fmt.Sprintf("0x%08x", h) }

// inspectTPM reads the TPM at addr and says what station makes of it.
func inspectTPM(g *globals, addr string, cfg *configs.Config, roots *tpmops.VendorRoots, now time.Time) (*inspectReport, error) {
	t, err := tpmops.Open(addr)
	if err != nil {
		return nil, err
	}
	in, err := t.Inspect()
	cerr := t.Close()
	if err != nil {
		return nil, fmt.Errorf("inspecting TPM %s: %w", addr, err)
	}
	if cerr != nil {
		return nil, fmt.Errorf("closing TPM %s: %w", addr, cerr)
	}

	rep := &inspectReport{TPM: addr, EKCerts: []inspectEKCert{}, Intermediates: []inspectCA{}, Persistent: []inspectHandle{},
		NV: []inspectNV{}, Transients: handleList(in.Transients), Leaked: handleList(in.Leaked)}
	i := in.Info
	rep.Vendor = inspectVendor{
		Manufacturer: i.Manufacturer, ManufacturerID: hexHandle(i.ManufacturerID), Vendor: i.Vendor,
		VendorString: i.VendorString, VendorTPMType: i.VendorTPMType, FirmwareVersion: i.FirmwareVersion(),
		FirmwareVersionRaw: [2]string{hexHandle(i.FirmwareV1), hexHandle(i.FirmwareV2)},
		SpecFamily:         i.Family, SpecLevel: i.Level, SpecRevision: i.RevisionString(), SpecYear: i.SpecYear, SpecDayOfYear: i.SpecDay,
	}
	rep.Auth = inspectAuth{in.Permanent.OwnerAuthSet, in.Permanent.EndorsementAuthSet, in.Permanent.LockoutAuthSet}
	rep.DA = inspectDA{in.DA.InLockout, in.DA.Counter, in.DA.MaxTries, in.DA.RecoverySeconds, in.DA.LockoutRecoverySeconds}
	for _, c := range in.Intermediates {
		s := sha256.Sum256(c.Raw)
		rep.Intermediates = append(rep.Intermediates, inspectCA{Subject: c.Subject.String(), Issuer: c.Issuer.String(),
			SHA256: hex.EncodeToString(s[:]), NotAfter: c.NotAfter.UTC().Format(time.RFC3339)})
	}
	if in.IntermediatesErr != nil {
		rep.IntermediatesError = in.IntermediatesErr.Error()
	}
	for _, e := range in.EKCerts {
		rep.EKCerts = append(rep.EKCerts, inspectCert(in, e, roots, now))
	}
	for _, n := range in.NV {
		rep.NV = append(rep.NV, inspectNV{Index: hexHandle(n.Index), Size: n.Size, Attributes: nvAttrNames(n.Attrs), What: nvWhat(n.Index, cfg)})
	}

	rep.Database, rep.unit = lookUpTPM(g, cfg, in)
	for _, v := range station.Recognize(in, tpm2.TPMHandle(cfg.TPM.DeviceKeyHandle), rep.unit) {
		rep.Persistent = append(rep.Persistent, inspectHandle{Handle: hexHandle(uint32(v.Handle)), Alg: v.Alg, Role: v.Role, Station: v.Station, Detail: v.Detail})
	}
	if len(in.Leaked) > 0 {
		// Inspect creates nothing: a leak is a bug, said loudly.
		rep.Hint = "the inspection left transient handles loaded; please report this"
	}
	return rep, nil
}

func handleList(hs []tpm2.TPMHandle) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, hexHandle(uint32(h)))
	}
	return out
}

// inspectCert describes one EK certificate index and its chain verdict
// (the verdict `station ek check` gives, through the TPM's NV intermediates).
func inspectCert(in *tpmops.Inspection, e tpmops.EKCertIndex, roots *tpmops.VendorRoots, now time.Time) inspectEKCert {
	r := inspectEKCert{NVIndex: hexHandle(e.Slot.Index), Slot: e.Slot.Key, HighRange: e.Slot.HighRange, NVSize: e.NV.Size,
		NVAttributes: nvAttrNames(e.NV.Attrs), Chain: inspectChain{Status: "not-checked"}}
	if e.Cert == nil {
		r.Error = e.Err.Error()
		r.Chain.Reason = "no certificate read"
		return r
	}
	c := e.Cert
	r.Read, r.DERLength, r.TCGHeader, r.Padding = true, len(c.DER), c.Header, c.Padding
	s := sha256.Sum256(c.DER)
	r.SHA256 = hex.EncodeToString(s[:])
	if c.Cert != nil {
		r.Subject, r.Issuer = c.Cert.Subject.String(), c.Cert.Issuer.String()
		r.NotBefore, r.NotAfter = c.Cert.NotBefore.UTC().Format(time.RFC3339), c.Cert.NotAfter.UTC().Format(time.RFC3339)
		r.Key = keyName(c.Cert)
		r.KeyMatchesSlot = r.Key == e.Slot.Key
		for _, o := range in.Persistent {
			if e.Certifies(o.Pub) {
				r.CertifiedHandle = hexHandle(uint32(o.Handle))
				break
			}
		}
	}
	if roots == nil {
		r.Chain.Reason = "no TPM vendor roots to check against (see vendor_roots)"
		return r
	}
	v := checkEKCertificate(roots, c, in.Intermediates, ekCheckResult{File: c.Source}, now)
	r.Chain = inspectChain{Status: "does-not-chain", Reason: v.Reason, Missing: v.Missing, Hint: v.Hint}
	if v.Chains {
		r.Chain = inspectChain{Status: "chains", Path: v.Chain, AnchorSHA256: v.Anchor}
	}
	return r
}

// nvAttrNames lists the set TPMA_NV bits in tpm2-tools' words (ppwrite,
// no_da, written...), and the index type when it is not ordinary.
func nvAttrNames(a tpm2.TPMANV) []string {
	out := []string{}
	v := reflect.ValueOf(a)
	for i := 0; i < v.NumField(); i++ {
		f := v.Type().Field(i)
		if f.IsExported() && f.Type.Kind() == reflect.Bool && v.Field(i).Bool() {
			out = append(out, nvAttrName(f.Name))
		}
	}
	if a.NT != tpm2.TPMNTOrdinary {
		out = append(out, fmt.Sprintf("nt=%d", a.NT))
	}
	return out
}

// nvAttrName turns go-tpm's field name into the TCG one: NoDA -> no_da,
// PPWrite -> ppwrite, WriteSTClear -> write_stclear.
func nvAttrName(field string) string {
	switch field {
	case "NoDA":
		return "no_da"
	case "WriteSTClear":
		return "write_stclear"
	case "ClearSTClear":
		return "clear_stclear"
	case "ReadSTClear":
		return "read_stclear"
	}
	return strings.ToLower(field)
}

// nvWhat says what an NV index is, where station knows.
func nvWhat(idx uint32, cfg *configs.Config) string {
	for _, s := range tpmops.EKCertSlots {
		if s.Index == idx {
			return s.Key + " EK certificate"
		}
	}
	switch {
	case tpmops.IsEKChainIndex(idx):
		return "EK certificate chain (vendor intermediates)"
	case idx >= 0x01c00000 && idx <= 0x01c07fff:
		return "TPM manufacturer range"
	case idx >= 0x01c08000 && idx <= 0x01c0ffff:
		return "platform manufacturer range (platform certificates)"
	case idx == uint32(cfg.Flash.NVIndex):
		return "flash.nv_index (station's tpm-nv target)"
	}
	return ""
}

// lookUpTPM asks the station database, when there is one, whether it knows
// the TPM. No database is normal (inspect needs none); one that cannot be
// opened is reported, not fatal.
func lookUpTPM(g *globals, cfg *configs.Config, in *tpmops.Inspection) (inspectDatabase, *store.Unit) {
	d := inspectDatabase{Path: cfg.Station.DB}
	if _, err := os.Stat(cfg.Station.DB); err != nil {
		d.Status, d.Detail = dbNone, "no station database at "+cfg.Station.DB+" (none needed to inspect)"
		return d, nil
	}
	db, err := g.openDB()
	if err != nil {
		d.Status, d.Detail = dbUnavailable, err.Error()
		return d, nil
	}
	defer db.Close()
	u, err := station.FindUnit(db, in)
	if err != nil {
		d.Status, d.Detail = dbUnavailable, err.Error()
		return d, nil
	}
	r := station.RecognizeTPM(in, u)
	d.Status, d.Serial, d.Detail = r.Status, r.Serial, r.Detail
	return d, u
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func (rep *inspectReport) writeText(w io.Writer) {
	v := rep.Vendor
	fmt.Fprintf(w, "TPM %s\n", rep.TPM)
	manuf := v.Manufacturer
	if v.Vendor != "" && v.Vendor != v.Manufacturer {
		manuf += " (" + v.Vendor + ")"
	}
	fmt.Fprintf(w, "  manufacturer   %s, id %s, vendor string %q, TPM type %d\n", manuf, v.ManufacturerID, v.VendorString, v.VendorTPMType)
	fmt.Fprintf(w, "  firmware       %s (%s %s)\n", v.FirmwareVersion, v.FirmwareVersionRaw[0], v.FirmwareVersionRaw[1])
	fmt.Fprintf(w, "  specification  TPM %s level %d revision %s (%d, day %d)\n", v.SpecFamily, v.SpecLevel, v.SpecRevision, v.SpecYear, v.SpecDayOfYear)

	roots := rep.Roots.Path
	if rep.Roots.Error != "" {
		roots += ": " + rep.Roots.Error
	} else {
		roots += fmt.Sprintf(" (%d certificates)", rep.Roots.Certs)
	}
	fmt.Fprintf(w, "\nEK certificates (vendor roots %s)\n", roots)
	if len(rep.EKCerts) == 0 {
		fmt.Fprintln(w, "  none in NV")
	}
	for _, c := range rep.EKCerts {
		rng := "low"
		if c.HighRange {
			rng = "high"
		}
		fmt.Fprintf(w, "  NV %s  %s slot, %s range, %d bytes\n", c.NVIndex, c.Slot, rng, c.NVSize)
		if !c.Read {
			fmt.Fprintf(w, "    not read: %s\n", c.Error)
			continue
		}
		shape := []string{fmt.Sprintf("DER %d bytes", c.DERLength)}
		shape = append(shape, yesNo(c.TCGHeader, "TCG NV header skipped", "no header"))
		shape = append(shape, yesNo(c.Padding > 0, fmt.Sprintf("%d padding bytes", c.Padding), "no padding"))
		fmt.Fprintf(w, "    %s\n", strings.Join(shape, ", "))
		if c.Key != "" {
			fmt.Fprintf(w, "    issuer %s, valid %s to %s\n", c.Issuer, c.NotBefore, c.NotAfter)
			certifies := "certifies a " + c.Key + " key"
			if !c.KeyMatchesSlot {
				certifies += " (not the slot's " + c.Slot + ")"
			}
			certifies += yesNo(c.CertifiedHandle != "", ", the one at "+c.CertifiedHandle, ", not persisted on this TPM")
			fmt.Fprintf(w, "    %s\n", certifies)
		}
		switch c.Chain.Status {
		case "chains":
			fmt.Fprintf(w, "    chains: via %s\n", strings.Join(c.Chain.Path, " -> "))
		case "does-not-chain":
			fmt.Fprintf(w, "    does not chain: %s\n", strings.TrimPrefix(c.Chain.Reason, "untrusted EK certificate: "))
			for _, k := range c.Chain.Missing {
				fmt.Fprintf(w, "      missing known CA %s (%s, SHA-256 %s)\n", k.Subject, k.Vendor, k.SHA256)
			}
		default:
			fmt.Fprintf(w, "    chain not checked: %s\n", c.Chain.Reason)
		}
	}
	fmt.Fprintf(w, "\nVendor intermediates in NV: ")
	if len(rep.Intermediates) == 0 {
		fmt.Fprint(w, "none")
	}
	if rep.IntermediatesError != "" {
		fmt.Fprintf(w, " (%s)", rep.IntermediatesError)
	}
	fmt.Fprintln(w)
	for _, c := range rep.Intermediates {
		fmt.Fprintf(w, "  %s (issuer %s)\n", c.Subject, c.Issuer)
	}

	fmt.Fprintln(w, "\nPersistent handles")
	if len(rep.Persistent) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, h := range rep.Persistent {
		fmt.Fprintf(w, "  %s  %-9s %-12s %s\n", h.Handle, h.Alg, h.Role, h.Detail)
	}

	fmt.Fprintln(w, "\nNV indices")
	if len(rep.NV) == 0 {
		fmt.Fprintln(w, "  none")
	}
	for _, n := range rep.NV {
		what := ""
		if n.What != "" {
			what = n.What + "; "
		}
		fmt.Fprintf(w, "  %s  %s%d bytes, %s\n", n.Index, what, n.Size, strings.Join(n.Attributes, "|"))
	}

	a := rep.Auth
	fmt.Fprintf(w, "\nHierarchy auth     owner %s, endorsement %s, lockout %s\n",
		yesNo(a.OwnerAuthSet, "set", "empty"), yesNo(a.EndorsementAuthSet, "set", "empty"), yesNo(a.LockoutAuthSet, "set", "empty"))
	d := rep.DA
	fmt.Fprintf(w, "Dictionary attack  %s; %d of %d failures; one failure forgiven every %d s; lockout auth retry after %d s\n",
		yesNo(d.InLockout, "IN LOCKOUT", "not in lockout"), d.LockoutCounter, d.MaxTries, d.RecoverySeconds, d.LockoutRecoverySeconds)
	fmt.Fprintf(w, "Station database   %s: %s\n", rep.Database.Path, rep.Database.Detail)
	fmt.Fprintf(w, "Transients         %s loaded before; %s left by this inspection\n",
		yesNo(len(rep.Transients) > 0, strings.Join(rep.Transients, " "), "none"), yesNo(len(rep.Leaked) > 0, strings.Join(rep.Leaked, " "), "none"))
}

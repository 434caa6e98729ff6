package enroll

import (
	"bufio"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/staletmp"
	"github.com/factory-id/station/store"
)

// Export formats.
const (
	FormatBulk       = "dps-bulk"
	FormatIndividual = "dps-individual"
	FormatGroup      = "dps-group"
	FormatCSV        = "csv"
)

// Formats lists the export formats.
var Formats = []string{FormatBulk, FormatIndividual, FormatGroup, FormatCSV}

// RegistrationIDsFile lists, in a folder export, the symmetric-key units
// that register through their group and so have no individual enrollment.
const RegistrationIDsFile = "registration-ids.txt"

// ErrOptions means the export options are inconsistent.
var ErrOptions = errors.New("invalid export options")

// bucketExported keeps what was last exported, per format and unit (or
// group): key = format NUL serial (or group ID), so a cursor-order export
// appends in key order; value = status byte (0 enabled, 1 disabled), the
// SHA-256 of the enrollment as exported, then its registration (or group) ID.
var bucketExported = []byte("enroll-exported")

type exportState struct {
	disabled bool
	digest   [32]byte
	id       string
}

func (s exportState) encode() []byte {
	b := make([]byte, 0, 33+len(s.id))
	if s.disabled {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = append(b, s.digest[:]...)
	return append(b, s.id...)
}

func decodeState(b []byte) (exportState, error) {
	if len(b) < 33 || b[0] > 1 {
		return exportState{}, errors.New("malformed record")
	}
	s := exportState{disabled: b[0] == 1, id: string(b[33:])}
	copy(s.digest[:], b[1:33])
	return s, nil
}

// Filter selects units. Zero values select everything.
type Filter struct {
	Since, Until time.Time // on ProvisionedAt; Since inclusive, Until exclusive
	Status       string    // provisioned | revoked | "" (both)
	Serials      []string
}

func (f *Filter) match(u *store.Unit) bool {
	if u.Status != store.StatusProvisioned && u.Status != store.StatusRevoked {
		return false // half-provisioned units are not enrolled
	}
	if f.Status != "" && u.Status != f.Status {
		return false
	}
	if !f.Since.IsZero() && u.ProvisionedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !u.ProvisionedAt.Before(f.Until) {
		return false
	}
	if len(f.Serials) > 0 && !slices.Contains(f.Serials, u.Serial) {
		return false
	}
	return true
}

// Options says what to export.
type Options struct {
	Format    string
	Out       string // a folder (a file for csv)
	Filter    Filter
	OnlyNew   bool // only what changed since the last export in this format
	StationID string
	Profile   Profile
	// Signer signs the manifest (the station key).
	Signer crypto.Signer
	// EncryptTo must be set when Profile.GroupKey is: every enrollment file
	// is then a JWE to this key, mode 0600.
	EncryptTo crypto.PublicKey
	// LineCA is the DER of the line intermediate (dps-group).
	LineCA []byte
	// SymmetricGroupID names the symmetric-key group (dps-group with
	// symmetric-key attestation and secrets); default "<station>-symmetric".
	SymmetricGroupID string
	// Attestation is the station's attestation (dps-group chooses the group kind).
	Attestation string
}

// Result is a finished export waiting to be installed.
type Result struct {
	Format   string
	Out      string
	Manifest *Manifest
	// ManifestSHA256 is the hex SHA-256 of manifest.json (what the audit
	// record names).
	ManifestSHA256 string
	// Rows counts the units a csv export wrote (Manifest is nil for csv).
	Rows   int
	f      *folder
	csvTmp string
	ledger *ledger
}

// ErrConcurrentExport means another export recorded its bookkeeping between
// this export's read and its Record: run it again.
var ErrConcurrentExport = errors.New("another export ran meanwhile")

// Record writes the bookkeeping of this export (what went out, in which
// state) in tx, a writable transaction; the caller appends its audit record
// and calls Install in the same transaction. It fails with
// ErrConcurrentExport if another export recorded since this one read.
func (r *Result) Record(tx *bolt.Tx) error {
	return r.ledger.commit(tx)
}

// Install moves the export into place. Call it last in the transaction that
// runs Record, after the audit record is appended, so that a failure before
// it leaves neither files nor bookkeeping; a failed commit after it leaves
// files that --only-new will simply export again.
func (r *Result) Install() error {
	if r.f != nil {
		return r.f.install()
	}
	if r.csvTmp != "" {
		if err := os.Rename(r.csvTmp, r.Out); err != nil {
			return fmt.Errorf("%w: %v", ErrOutput, err)
		}
		r.csvTmp = ""
	}
	return nil
}

// Discard removes an export that was not installed; safe after Install.
func (r *Result) Discard() {
	if r == nil {
		return
	}
	r.f.discard()
	if r.csvTmp != "" {
		os.Remove(r.csvTmp)
	}
	r.ledger.discard()
}

func (o *Options) check() error {
	if !slices.Contains(Formats, o.Format) {
		return fmt.Errorf("%w: format %q: want one of %s", ErrOptions, o.Format, strings.Join(Formats, ", "))
	}
	if o.Out == "" {
		return fmt.Errorf("%w: no output path", ErrOptions)
	}
	if o.Signer == nil && o.Format != FormatCSV {
		return fmt.Errorf("%w: no signing key for the manifest", ErrOptions)
	}
	if len(o.Profile.GroupKey) > 0 {
		if o.Format == FormatCSV {
			return fmt.Errorf("%w: csv never carries secrets", ErrOptions)
		}
		if o.EncryptTo == nil {
			return fmt.Errorf("%w: secrets need an encryption key for the file", ErrOptions)
		}
	}
	if o.Format == FormatGroup && len(o.LineCA) == 0 && o.Attestation != AttestSymmetricKey {
		return fmt.Errorf("%w: dps-group needs the line intermediate (pki.issuer_cert)", ErrOptions)
	}
	if err := o.Profile.Check(); err != nil {
		return err
	}
	switch o.Filter.Status {
	case "", store.StatusProvisioned, store.StatusRevoked:
	default:
		return fmt.Errorf("%w: status %q: want provisioned or revoked", ErrOptions, o.Filter.Status)
	}
	return nil
}

// Export writes the enrollments of the units in tx into a temporary folder
// and returns it, signed, for Record and Install. tx may be read-only: the
// slow part (thousands of files) then holds no write lock, and provisioning
// goes on meanwhile; the bookkeeping changes are spooled to a temporary file
// and applied by Record in a short writable transaction. Units are read with
// a cursor and written out as they come, so memory stays flat whatever the
// count.
//
// Mode: a unit already exported whose enrollment changed since, or that is
// disabled, goes out as mode update; everything else as create. With OnlyNew,
// units whose enrollment is the one last exported are skipped. The same
// database gives the same bytes.
func Export(tx *bolt.Tx, o Options) (res *Result, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	// partial, not res: a "return nil, err" has already cleared res when
	// the deferred cleanup runs.
	partial := &Result{Format: o.Format, Out: filepath.Clean(o.Out)}
	res = partial
	defer func() {
		if err != nil {
			partial.Discard()
			res = nil
		}
	}()
	if err := cleanStale(partial.Out); err != nil {
		return nil, err
	}
	book, err := openLedger(tx, partial.Out)
	if err != nil {
		return nil, err
	}
	res.ledger = book
	if o.Format == FormatCSV {
		if err := exportCSV(tx, book, o, res); err != nil {
			return nil, err
		}
		return res, book.flush()
	}
	if res.f, err = newFolder(o.Out, o.EncryptTo); err != nil {
		return nil, err
	}
	m := &Manifest{Format: o.Format, StationID: o.StationID, OnlyNew: o.OnlyNew}
	if o.Format == FormatGroup {
		err = exportGroups(tx, book, o, res, m)
	} else {
		err = exportUnits(tx, book, o, res, m)
	}
	if err != nil {
		return nil, err
	}
	if err := book.flush(); err != nil {
		return nil, err
	}
	mb, err := res.f.seal(m, o.Signer)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(mb)
	res.Manifest, res.ManifestSHA256 = m, hex.EncodeToString(sum[:])
	return res, nil
}

// decide looks up what was last exported under key (a serial or group ID)
// and says whether to write e, the enrollment of id, now and in which mode;
// it spools the new state for Record. Mode update: the same enrollment was
// exported before and changed since, or is disabled (disabling an enrollment
// DPS may hold must replace it); otherwise create.
func (l *ledger) decide(format, key, id string, e any, disabled, onlyNew bool) (write bool, mode string, c []byte, err error) {
	c, err = compact(e)
	if err != nil {
		return false, "", nil, err
	}
	st := exportState{disabled: disabled, digest: sha256.Sum256(c), id: id}
	k := []byte(format + "\x00" + key)
	var prev *exportState
	if l.book != nil {
		if v := l.book.Get(k); v != nil {
			p, err := decodeState(v)
			if err != nil {
				return false, "", nil, fmt.Errorf("export bookkeeping of %s: %w", key, err)
			}
			prev = &p
		}
	}
	if onlyNew && prev != nil && *prev == st {
		return false, "", nil, nil
	}
	mode = ModeCreate
	if prev != nil && prev.id == id && (prev.digest != st.digest || disabled) {
		mode = ModeUpdate
	}
	if prev == nil || *prev != st {
		if err := l.put(k, st.encode()); err != nil {
			return false, "", nil, err
		}
	}
	return true, mode, c, nil
}

func asOf(u *store.Unit, cur time.Time) time.Time {
	t := u.ProvisionedAt
	if u.Revocation != nil && u.Revocation.At.After(t) {
		t = u.Revocation.At
	}
	if t.After(cur) {
		return t
	}
	return cur
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func exportUnits(tx *bolt.Tx, book *ledger, o Options, res *Result, m *Manifest) error {
	var bulk *bulkWriter
	if o.Format == FormatBulk {
		bulk = newBulkWriter(res.f)
	}
	var (
		latest time.Time
		viaSym *os.File
		viaBuf *bufio.Writer
	)
	defer func() {
		if viaSym != nil {
			viaSym.Close()
		}
	}()
	err := store.ForEachUnit(tx, func(u *store.Unit) error {
		if !o.Filter.match(u) {
			return nil
		}
		m.Counts.Units++
		latest = asOf(u, latest)
		disabled := u.Status == store.StatusRevoked
		e, err := o.Profile.Individual(u, disabled)
		if errors.Is(err, ErrSecretsNeeded) {
			m.Counts.ViaGroup++
			if viaSym == nil {
				// Registration IDs are no secret: in the clear even when the
				// enrollments are encrypted.
				if viaSym, err = os.OpenFile(filepath.Join(res.f.tmp, RegistrationIDsFile), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644); err != nil {
					return err
				}
				viaBuf = bufio.NewWriter(viaSym)
			}
			_, err := viaBuf.WriteString(u.RegistrationID + "\n")
			return err
		}
		if err != nil {
			return err
		}
		write, mode, c, err := book.decide(o.Format, u.Serial, e.RegistrationID, e, disabled, o.OnlyNew)
		if err != nil {
			return err
		}
		if !write {
			m.Counts.Unchanged++
			return nil
		}
		m.Counts.Enrolled++
		if mode == ModeCreate {
			m.Counts.Create++
		} else {
			m.Counts.Update++
		}
		if disabled {
			m.Counts.Disabled++
		} else {
			m.Counts.Enabled++
		}
		if bulk != nil {
			return bulk.addCompact(mode, c)
		}
		b, err := indent(c)
		if err != nil {
			return err
		}
		return res.f.write(e.RegistrationID+".json", b, "", 1)
	})
	if err != nil {
		return err
	}
	if bulk != nil {
		if err := bulk.close(); err != nil {
			return err
		}
	}
	if viaSym != nil {
		if err := viaBuf.Flush(); err != nil {
			return err
		}
		if err := res.f.add(viaSym); err != nil {
			return err
		}
	}
	m.AsOf = stamp(latest)
	return nil
}

func exportGroups(tx *bolt.Tx, book *ledger, o Options, res *Result, m *Manifest) error {
	revoked, err := store.RevokedCAs(tx)
	if err != nil {
		return err
	}
	var latest time.Time
	for _, r := range revoked {
		if r.At.After(latest) {
			latest = r.At
		}
	}
	type group struct {
		g        *EnrollmentGroup
		disabled bool
	}
	var groups []group
	if o.Attestation == AttestSymmetricKey {
		id := o.SymmetricGroupID
		if id == "" {
			id = strings.ToLower(o.StationID) + "-symmetric"
		}
		g, err := o.Profile.SymmetricGroup(id)
		if err != nil {
			return err
		}
		groups = append(groups, group{g: g})
	}
	lineSHA := ""
	if len(o.LineCA) > 0 {
		sum := sha256.Sum256(o.LineCA)
		lineSHA = hex.EncodeToString(sum[:])
		_, dis := revoked[lineSHA]
		groups = append(groups, group{g: o.Profile.X509Group(o.LineCA, dis), disabled: dis})
	}
	ids := make([]string, 0, len(revoked))
	for sha := range revoked {
		if sha != lineSHA {
			ids = append(ids, sha)
		}
	}
	slices.Sort(ids)
	cas := tx.Bucket(bucketCACerts)
	for _, sha := range ids {
		var der []byte
		if cas != nil {
			der = cas.Get([]byte(sha))
		}
		if der == nil {
			return fmt.Errorf("revoked intermediate %s: its certificate was not recorded (revoke it again with --ca-cert): %w", sha, ErrIncomplete)
		}
		groups = append(groups, group{g: o.Profile.X509Group(der, true), disabled: true})
	}
	for _, gr := range groups {
		write, _, _, err := book.decide(o.Format, gr.g.EnrollmentGroupID, gr.g.EnrollmentGroupID, gr.g, gr.disabled, o.OnlyNew)
		if err != nil {
			return err
		}
		if !write {
			m.Counts.Unchanged++
			continue
		}
		m.Counts.Groups++
		if gr.disabled {
			m.Counts.Disabled++
		} else {
			m.Counts.Enabled++
		}
		b, err := Marshal(gr.g)
		if err != nil {
			return err
		}
		if err := res.f.write(gr.g.EnrollmentGroupID+".json", b, "", 0); err != nil {
			return err
		}
	}
	m.AsOf = stamp(latest)
	return nil
}

// CSVHeader is the first row of the csv format.
var CSVHeader = []string{"serial", "registration_id", "device_id", "attestation", "ek_sha256", "endorsement_key", "cert_sha256", "not_after", "provisioned_at", "status"}

// CSVRow is one unit's row.
func CSVRow(u *store.Unit) []string {
	ek := ""
	if len(u.EKPublic) > 0 {
		ek = base64.StdEncoding.EncodeToString(u.EKPublic)
	}
	return []string{u.Serial, u.RegistrationID, u.DeviceID, u.Attestation, u.EKSHA256, ek, u.CertSHA256,
		stamp(u.NotAfter), stamp(u.ProvisionedAt), u.Status}
}

func exportCSV(tx *bolt.Tx, book *ledger, o Options, res *Result) error {
	if st, err := os.Stat(o.Out); err == nil && st.IsDir() {
		return fmt.Errorf("%w: %s is a folder; csv writes a file", ErrOutput, o.Out)
	}
	if err := os.MkdirAll(filepath.Dir(res.Out), 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrOutput, err)
	}
	f, err := os.CreateTemp(filepath.Dir(res.Out), staletmp.Prefix("."+filepath.Base(res.Out)+".tmp-"))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOutput, err)
	}
	res.csvTmp = f.Name()
	defer f.Close()
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	w := csv.NewWriter(bw)
	if err := w.Write(CSVHeader); err != nil {
		return err
	}
	err = store.ForEachUnit(tx, func(u *store.Unit) error {
		if !o.Filter.match(u) {
			return nil
		}
		row := CSVRow(u)
		disabled := u.Status == store.StatusRevoked
		write, _, _, err := book.decide(o.Format, u.Serial, u.Serial, row, disabled, o.OnlyNew)
		if err != nil || !write {
			return err
		}
		res.Rows++
		return w.Write(row)
	})
	if err != nil {
		return err
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

package enroll

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/factory-id/station/enroll/regid"
)

// ErrDuplicates means a merge found the same unit identity at more than one
// station (a clone, or a unit provisioned twice). The CLI maps it to exit 3.
var ErrDuplicates = errors.New("duplicate units across stations")

// DuplicatesFile records, in a merged export, the identities found at more
// than one station.
const DuplicatesFile = "duplicates.json"

// Duplicate is one identity value seen at several stations.
type Duplicate struct {
	Kind        string       `json:"kind"` // registration-id | ek | serial | certificate
	Value       string       `json:"value"`
	Occurrences []Occurrence `json:"occurrences"`
}

// Occurrence is where a duplicated identity was seen.
type Occurrence struct {
	StationID      string `json:"station_id"`
	Export         string `json:"export"`
	RegistrationID string `json:"registration_id"`
	Serial         string `json:"serial,omitempty"`
	Disabled       bool   `json:"disabled,omitempty"`
}

// MergeReport is what a merge did.
type MergeReport struct {
	Out        string      `json:"out"`
	Sources    []Source    `json:"sources"`
	Duplicates []Duplicate `json:"duplicates"`
	// Excluded counts the enabled enrollments left out because their
	// identity is duplicated: none of the clones is enrolled. Disabled
	// enrollments are always kept (disabling is always safe).
	Excluded int       `json:"excluded"`
	Manifest *Manifest `json:"manifest"`
}

// MergeOptions says what to merge.
type MergeOptions struct {
	Dirs []string
	// Trusted are the stations' public keys; each export must be signed by
	// one of them (chosen by the key ID in its manifest.sig).
	Trusted   []crypto.PublicKey
	Out       string
	Signer    crypto.Signer // signs the combined manifest
	StationID string        // the merging station's name in the combined manifest
}

type source struct {
	dir      string
	manifest *Manifest
	sha      string
}

// Merge verifies every export against the trusted keys, reports identities
// (registration ID, EK, serial, certificate) found at more than one station,
// and writes one combined dps-bulk export signed by opts.Signer. Exports of
// the same station are layered oldest first (by as_of), so a later delta
// supersedes an earlier full export. The combined export leaves out every
// enabled enrollment involved in a duplicate; the report (and
// duplicates.json in the export) lists them. Inputs are read twice, once to
// index and once to write, so only the index is held in memory.
func Merge(o MergeOptions) (*MergeReport, error) {
	if len(o.Dirs) == 0 {
		return nil, fmt.Errorf("%w: nothing to merge", ErrOptions)
	}
	if len(o.Trusted) == 0 {
		return nil, ErrNoKey
	}
	if o.Signer == nil {
		return nil, fmt.Errorf("%w: no signing key for the combined manifest", ErrOptions)
	}
	keys := map[string]crypto.PublicKey{}
	for _, k := range o.Trusted {
		id, err := KeyID(k)
		if err != nil {
			return nil, err
		}
		keys[id] = k
	}
	var srcs []source
	for _, d := range o.Dirs {
		if filepath.Clean(d) == filepath.Clean(o.Out) {
			return nil, fmt.Errorf("%w: %s is both an input and the output", ErrOptions, d)
		}
		s, err := openSource(d, keys)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, s)
	}
	// A station is its key: exports layer (a later one supersedes) only
	// when signed by the same key, and one station ID must not come with
	// two keys (or one key with two IDs), or a station could pose as
	// another and pass its clones off as the other's own updates.
	keyOf, idOf := map[string]string{}, map[string]string{}
	for _, s := range srcs {
		id, key := s.manifest.StationID, s.manifest.KeyID
		if k, ok := keyOf[id]; ok && k != key {
			return nil, &VerifyError{File: s.dir, Reason: fmt.Sprintf("station %q signs with key %.16s… here and %.16s… in another export", id, key, k), Err: ErrSignature}
		}
		if i, ok := idOf[key]; ok && i != id {
			return nil, &VerifyError{File: s.dir, Reason: fmt.Sprintf("key %.16s… signs as station %q here and %q in another export", key, id, i), Err: ErrSignature}
		}
		keyOf[id], idOf[key] = key, id
	}
	slices.SortStableFunc(srcs, func(a, b source) int {
		if c := strings.Compare(a.manifest.StationID, b.manifest.StationID); c != 0 {
			return c
		}
		return strings.Compare(a.manifest.AsOf, b.manifest.AsOf)
	})

	// Pass 1: index.
	type occ struct {
		src      int
		disabled bool
	}
	occs := map[string][]occ{}                  // regID -> occurrences
	ids := map[string]map[string][]Occurrence{} // kind NUL value -> station -> occurrences
	for i, s := range srcs {
		err := s.each(func(mode string, e *IndividualEnrollment) error {
			dis := e.ProvisioningStatus == StatusDisabled
			occs[e.RegistrationID] = append(occs[e.RegistrationID], occ{src: i, disabled: dis})
			o := Occurrence{StationID: s.manifest.StationID, Export: s.dir, RegistrationID: e.RegistrationID, Serial: serialOf(e), Disabled: dis}
			for _, kv := range identities(e) {
				if ids[kv] == nil {
					ids[kv] = map[string][]Occurrence{}
				}
				ids[kv][o.StationID] = append(ids[kv][o.StationID], o)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	rep := &MergeReport{Out: filepath.Clean(o.Out), Duplicates: []Duplicate{}}
	conflicted := map[string]bool{}
	for kv, byStation := range ids {
		if len(byStation) < 2 {
			continue
		}
		kind, val, _ := strings.Cut(kv, "\x00")
		d := Duplicate{Kind: kind, Value: val}
		for _, list := range byStation {
			d.Occurrences = append(d.Occurrences, list...)
			for _, x := range list {
				conflicted[x.RegistrationID] = true
			}
		}
		slices.SortFunc(d.Occurrences, func(a, b Occurrence) int {
			return strings.Compare(a.StationID+"\x00"+a.Export+"\x00"+a.RegistrationID, b.StationID+"\x00"+b.Export+"\x00"+b.RegistrationID)
		})
		rep.Duplicates = append(rep.Duplicates, d)
	}
	slices.SortFunc(rep.Duplicates, func(a, b Duplicate) int {
		return strings.Compare(a.Kind+"\x00"+a.Value, b.Kind+"\x00"+b.Value)
	})
	winner := make(map[string]int, len(occs))
	for id, list := range occs {
		w := -1
		for _, x := range list {
			if !conflicted[id] || x.disabled {
				w = x.src // the last one, in layering order
			} else {
				rep.Excluded++
			}
		}
		winner[id] = w
	}

	// Pass 2: write.
	if err := cleanStale(filepath.Clean(o.Out)); err != nil {
		return nil, err
	}
	f, err := newFolder(o.Out, nil)
	if err != nil {
		return nil, err
	}
	defer f.discard()
	bulk := newBulkWriter(f)
	m := &Manifest{Format: FormatBulk, StationID: o.StationID}
	for i, s := range srcs {
		n := 0
		err := s.each(func(mode string, e *IndividualEnrollment) error {
			if winner[e.RegistrationID] != i {
				return nil
			}
			winner[e.RegistrationID] = -2 // written once
			n++
			m.Counts.Units++
			m.Counts.Enrolled++
			if mode == ModeCreate {
				m.Counts.Create++
			} else {
				m.Counts.Update++
			}
			if e.ProvisioningStatus == StatusDisabled {
				m.Counts.Disabled++
			} else {
				m.Counts.Enabled++
			}
			return bulk.add(mode, e)
		})
		if err != nil {
			return nil, err
		}
		rep.Sources = append(rep.Sources, Source{StationID: s.manifest.StationID, KeyID: s.manifest.KeyID, ManifestSHA256: s.sha, Enrollments: n})
		if s.manifest.AsOf > m.AsOf {
			m.AsOf = s.manifest.AsOf
		}
	}
	if err := bulk.close(); err != nil {
		return nil, err
	}
	db, err := Marshal(rep.Duplicates)
	if err != nil {
		return nil, err
	}
	if err := f.write(DuplicatesFile, db, "", 0); err != nil {
		return nil, err
	}
	m.Sources = rep.Sources
	if _, err := f.seal(m, o.Signer); err != nil {
		return nil, err
	}
	if err := f.install(); err != nil {
		return nil, err
	}
	rep.Manifest = m
	return rep, nil
}

func openSource(dir string, keys map[string]crypto.PublicKey) (source, error) {
	sb, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return source{}, &VerifyError{File: filepath.Join(dir, SignatureFile), Reason: errReason(err), Err: ErrSignature}
	}
	var sig signature
	if err := json.Unmarshal(sb, &sig); err != nil {
		return source{}, &VerifyError{File: filepath.Join(dir, SignatureFile), Reason: "not a signature", Err: ErrSignature}
	}
	key, ok := keys[sig.KeyID]
	if !ok {
		return source{}, &VerifyError{File: dir, Reason: fmt.Sprintf("signed by key %.16s…, which is none of the trusted station keys", sig.KeyID), Err: ErrSignature}
	}
	m, err := VerifyExport(dir, key)
	if err != nil {
		return source{}, fmt.Errorf("%s: %w", dir, err)
	}
	if m.Encrypted {
		return source{}, fmt.Errorf("%w: %s is encrypted (it carries secrets); merge plain exports", ErrOptions, dir)
	}
	if m.Format != FormatBulk && m.Format != FormatIndividual {
		return source{}, fmt.Errorf("%w: %s is a %s export; merge takes dps-bulk or dps-individual", ErrOptions, dir, m.Format)
	}
	mb, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
	sum := sha256.Sum256(mb)
	return source{dir: dir, manifest: m, sha: hex.EncodeToString(sum[:])}, nil
}

// each calls fn for every enrollment of the source, in manifest order. The
// files are re-checked against the verified manifest as they are read, so a
// file swapped after verification is caught.
func (s *source) each(fn func(mode string, e *IndividualEnrollment) error) error {
	for _, f := range s.manifest.Files {
		if f.Name == RegistrationIDsFile || f.Name == DuplicatesFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, f.Name))
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != f.SHA256 {
			return tampered(filepath.Join(s.dir, f.Name), "changed after verification")
		}
		if s.manifest.Format == FormatBulk {
			var op BulkOperation
			if err := json.Unmarshal(b, &op); err != nil {
				return tampered(filepath.Join(s.dir, f.Name), "not a bulk operation: %v", err)
			}
			for i := range op.Enrollments {
				if err := fn(op.Mode, &op.Enrollments[i]); err != nil {
					return err
				}
			}
			continue
		}
		var e IndividualEnrollment
		if err := json.Unmarshal(b, &e); err != nil {
			return tampered(filepath.Join(s.dir, f.Name), "not an enrollment: %v", err)
		}
		mode := ModeCreate
		if e.ProvisioningStatus == StatusDisabled {
			mode = ModeUpdate
		}
		if err := fn(mode, &e); err != nil {
			return err
		}
	}
	return nil
}

func serialOf(e *IndividualEnrollment) string {
	if e.InitialTwin != nil {
		return e.InitialTwin.Tags[TagSerial]
	}
	return ""
}

// identities are the values that must be unique across stations, each as
// kind NUL value.
func identities(e *IndividualEnrollment) []string {
	out := []string{"registration-id\x00" + regid.Key(e.RegistrationID)}
	if s := serialOf(e); s != "" {
		out = append(out, "serial\x00"+s)
	}
	a := e.Attestation
	if a.TPM != nil {
		if ek, err := base64.StdEncoding.DecodeString(a.TPM.EndorsementKey); err == nil {
			sum := sha256.Sum256(ek)
			out = append(out, "ek\x00"+hex.EncodeToString(sum[:]))
		}
	}
	if a.X509 != nil && a.X509.ClientCertificates != nil && a.X509.ClientCertificates.Primary != nil {
		if blk, _ := pem.Decode([]byte(a.X509.ClientCertificates.Primary.Certificate)); blk != nil {
			sum := sha256.Sum256(blk.Bytes)
			out = append(out, "certificate\x00"+hex.EncodeToString(sum[:]))
		}
	}
	return out
}

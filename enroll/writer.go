package enroll

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.step.sm/crypto/jose"

	"github.com/factory-id/station/internal/staletmp"
)

// ErrOutput means the output path cannot take an export.
var ErrOutput = errors.New("cannot write export there")

// folder builds an export folder in a temporary sibling of its final path
// and moves it into place only when complete (install), so a reader never
// sees half an export and a failed run leaves the old one intact.
type folder struct {
	tmp, final string
	files      []File
	encryptTo  crypto.PublicKey
	perm       os.FileMode
}

func newFolder(final string, encryptTo crypto.PublicKey) (*folder, error) {
	final = filepath.Clean(final)
	if err := checkReplaceable(final); err != nil {
		return nil, err
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOutput, err)
	}
	tmp, err := os.MkdirTemp(parent, staletmp.Prefix("."+filepath.Base(final)+".tmp-"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOutput, err)
	}
	f := &folder{tmp: tmp, final: final, encryptTo: encryptTo, perm: 0o644}
	if encryptTo != nil {
		f.perm = 0o600
	} else if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	return f, nil
}

// checkReplaceable accepts a path that does not exist, an empty folder, or a
// folder holding a previous export (it has a manifest.json); anything else
// is not ours to replace.
func checkReplaceable(dir string) error {
	st, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOutput, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%w: %s exists and is not a folder", ErrOutput, dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrOutput, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); err != nil {
		return fmt.Errorf("%w: %s is not empty and holds no earlier export (no %s)", ErrOutput, dir, ManifestFile)
	}
	return nil
}

// cleanStale removes what exports to out killed before they finished left
// beside it: their temporary folders or files and their ledgers (named after
// their process, which is gone; see internal/staletmp). A previous export
// that an install moved aside (".old") and that a kill kept from being
// replaced is moved back when nothing took its place.
func cleanStale(out string) error {
	parent, base := filepath.Dir(out), filepath.Base(out)
	for _, prefix := range []string{"." + base + ".tmp-", "." + base + ".ledger-"} {
		stale, err := staletmp.Stale(parent, prefix)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrOutput, err)
		}
		for _, p := range stale {
			if strings.HasSuffix(p, ".old") {
				if _, err := os.Lstat(out); errors.Is(err, os.ErrNotExist) && os.Rename(p, out) == nil {
					continue
				}
			}
			if err := os.RemoveAll(p); err != nil {
				return fmt.Errorf("%w: removing a killed export's %s: %v", ErrOutput, p, err)
			}
		}
	}
	return nil
}

// write adds a file; with encryption on, the content becomes a compact JWE
// and the name gets ".jwe".
func (f *folder) write(name string, data []byte, mode string, n int) error {
	if f.encryptTo != nil {
		jwe, err := Encrypt(f.encryptTo, data)
		if err != nil {
			return err
		}
		name, data = name+".jwe", jwe
	}
	fh, err := os.OpenFile(filepath.Join(f.tmp, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.perm)
	if errors.Is(err, os.ErrExist) {
		// dps-individual names files by registration ID: two units share one.
		return fmt.Errorf("%s written twice (two units with one registration ID?): %w", name, ErrDuplicates)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	_, err = fh.Write(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	sum := sha256.Sum256(data)
	f.files = append(f.files, File{Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Mode: mode, Enrollments: n})
	return nil
}

// add lists a file already written in the folder (plain, not encrypted),
// hashing it as a stream.
func (f *folder) add(fh *os.File) error {
	if _, err := fh.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return err
	}
	f.files = append(f.files, File{Name: filepath.Base(fh.Name()), SHA256: hex.EncodeToString(h.Sum(nil)), Size: n})
	return nil
}

// rename moves a file written under a provisional name to its final one.
func (f *folder) rename(i int, name string) error {
	if f.encryptTo != nil {
		name += ".jwe"
	}
	if err := os.Rename(filepath.Join(f.tmp, f.files[i].Name), filepath.Join(f.tmp, name)); err != nil {
		return err
	}
	f.files[i].Name = name
	return nil
}

// seal writes manifest.json and manifest.sig and returns the manifest bytes.
func (f *folder) seal(m *Manifest, signer crypto.Signer) ([]byte, error) {
	id, err := KeyID(signer.Public())
	if err != nil {
		return nil, err
	}
	m.Version, m.KeyID, m.Files = 1, id, f.files
	if m.Files == nil {
		m.Files = []File{}
	}
	m.Encrypted = f.encryptTo != nil
	mb, err := Marshal(m)
	if err != nil {
		return nil, err
	}
	sig, err := SignManifest(signer, mb)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(f.tmp, ManifestFile), mb, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(f.tmp, SignatureFile), sig, 0o644); err != nil {
		return nil, err
	}
	return mb, nil
}

// install moves the finished folder into place, replacing an earlier export.
func (f *folder) install() error {
	if err := checkReplaceable(f.final); err != nil {
		return err
	}
	old := ""
	if _, err := os.Stat(f.final); err == nil {
		old = f.tmp + ".old"
		if err := os.Rename(f.final, old); err != nil {
			return fmt.Errorf("%w: %v", ErrOutput, err)
		}
	}
	if err := os.Rename(f.tmp, f.final); err != nil {
		if old != "" {
			os.Rename(old, f.final)
		}
		return fmt.Errorf("%w: %v", ErrOutput, err)
	}
	f.tmp = ""
	if old != "" {
		return os.RemoveAll(old)
	}
	return nil
}

// discard removes the temporary folder (after a failure, or if never installed).
func (f *folder) discard() {
	if f != nil && f.tmp != "" {
		os.RemoveAll(f.tmp)
		f.tmp = ""
	}
}

// bulkWriter cuts a stream of enrollments into bulk operations of at most
// MaxBulk. Create operations are numbered first (0001.json...), update
// operations after them; updates are written under provisional names while
// the count of creates is still unknown. Enrollments arrive as compact JSON
// (already encoded for the bookkeeping digest) and are indented into place,
// giving exactly Marshal(BulkOperation{...}).
type bulkWriter struct {
	f       *folder
	pending map[string][][]byte
	nfiles  map[string]int
	updates []int // indexes in f.files of update operations
	buf     bytes.Buffer
}

func newBulkWriter(f *folder) *bulkWriter {
	return &bulkWriter{f: f, pending: map[string][][]byte{}, nfiles: map[string]int{}}
}

// add queues one enrollment.
func (w *bulkWriter) add(mode string, e *IndividualEnrollment) error {
	c, err := compact(e)
	if err != nil {
		return err
	}
	return w.addCompact(mode, c)
}

// addCompact queues one enrollment given as compact JSON.
func (w *bulkWriter) addCompact(mode string, c []byte) error {
	w.pending[mode] = append(w.pending[mode], c)
	if len(w.pending[mode]) == MaxBulk {
		return w.flush(mode)
	}
	return nil
}

// bulkJSON lays out a bulk operation as Marshal does.
func bulkJSON(buf *bytes.Buffer, mode string, es [][]byte) ([]byte, error) {
	buf.Reset()
	m, _ := json.Marshal(mode)
	buf.WriteString("{\n  \"mode\": ")
	buf.Write(m)
	buf.WriteString(",\n  \"enrollments\": [")
	for i, c := range es {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteString("\n    ")
		if err := json.Indent(buf, c, "    ", "  "); err != nil {
			return nil, err
		}
	}
	if len(es) > 0 {
		buf.WriteString("\n  ")
	}
	buf.WriteString("]\n}\n")
	return buf.Bytes(), nil
}

func (w *bulkWriter) flush(mode string) error {
	es := w.pending[mode]
	if len(es) == 0 {
		return nil
	}
	b, err := bulkJSON(&w.buf, mode, es)
	if err != nil {
		return err
	}
	w.nfiles[mode]++
	name := fmt.Sprintf("%04d.json", w.nfiles[mode])
	if mode == ModeUpdate {
		name = "update-" + name
		w.updates = append(w.updates, len(w.f.files))
	}
	if err := w.f.write(name, b, mode, len(es)); err != nil {
		return err
	}
	w.pending[mode] = es[:0]
	return nil
}

// close flushes the partial operations and numbers the updates after the creates.
func (w *bulkWriter) close() error {
	for _, m := range []string{ModeCreate, ModeUpdate} {
		if err := w.flush(m); err != nil {
			return err
		}
	}
	for i, idx := range w.updates {
		if err := w.f.rename(idx, fmt.Sprintf("%04d.json", w.nfiles[ModeCreate]+i+1)); err != nil {
			return err
		}
	}
	return nil
}

// Encrypt seals data to a recipient's public key as a compact JWE:
// ECDH-ES+A256KW for EC keys, RSA-OAEP-256 for RSA keys (at least 2048
// bits), content A256GCM. Decrypt it with the matching private key
// (jose.Decrypt, or `step crypto jwe decrypt --key KEY`).
func Encrypt(to crypto.PublicKey, data []byte) ([]byte, error) {
	var alg jose.KeyAlgorithm
	switch k := to.(type) {
	case *ecdsa.PublicKey:
		alg = jose.ECDH_ES_A256KW
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("encryption key: RSA %d bits, want at least 2048", k.N.BitLen())
		}
		alg = jose.RSA_OAEP_256
	default:
		return nil, fmt.Errorf("encryption key: %T not supported (want EC or RSA)", to)
	}
	enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: alg, Key: to},
		(&jose.EncrypterOptions{}).WithContentType("application/json"))
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	obj, err := enc.Encrypt(data)
	if err != nil {
		return nil, fmt.Errorf("encrypting: %w", err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// Decrypt opens a file written by Encrypt.
func Decrypt(key crypto.PrivateKey, jwe []byte) ([]byte, error) {
	obj, err := jose.ParseEncrypted(string(jwe))
	if err != nil {
		return nil, err
	}
	return obj.Decrypt(key)
}

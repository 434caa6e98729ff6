package audit

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/fsync"
	"github.com/factory-id/station/internal/hint"
	"github.com/factory-id/station/internal/keyid"
	"github.com/factory-id/station/internal/staletmp"
)

// Files of an export.
const (
	FileRecordsJSONL = "records.jsonl"     // one canonical record per line
	FileRecordsCSV   = "records.csv"       // the same fields as CSV (--format csv)
	FileCheckpoints  = "checkpoints.jsonl" // {"size":N,"note":"<signed note>"} per line, ascending
	FileCheckpoint   = "checkpoint"        // the export's own signed checkpoint (keep it: it is an anchor)
	FilePublicKey    = "station.pub.pem"   // for reference only; verification uses the key the auditor holds
	FileReadme       = "README.md"
)

// MaxRecordSize bounds one record's canonical bytes (and an export line).
const MaxRecordSize = 1 << 20

var (
	// ErrExportDir means the export folder exists and is not empty.
	ErrExportDir = errors.New("export folder is not empty")
	// ErrNotExport means a folder holds no audit export.
	ErrNotExport = errors.New("not an audit export")
)

// csvHeader names the CSV columns; each row re-encodes (Record.Bytes) to the
// exact record that was hashed.
var csvHeader = []string{"seq", "time", "station", "operator", "serial", "event", "version", "payload", "prev"}

// ExportOptions says how to export.
type ExportOptions struct {
	Format   string // "jsonl" (default) or "csv"
	Operator string // recorded in the export's own audit record
}

// ExportResult describes a finished export.
type ExportResult struct {
	Dir        string     `json:"dir"`
	Records    uint64     `json:"records"`
	Checkpoint Checkpoint `json:"checkpoint"`
	Note       string     `json:"note"` // the signed checkpoint text
}

// Export writes the log as of its latest signed checkpoint to dir, which
// must be absent or empty, atomically: the files are written into a
// temporary sibling folder, synced and verified with the station's public
// key, and only then, in one transaction, the export is recorded in the log,
// its checkpoint pinned (kept forever) and the folder renamed into place. A
// failure or a kill at any point before leaves no folder under dir and
// records nothing; the next export removes a killed run's temporary folder.
// The export's own record is in the next export.
func (l *Log) Export(dir string, o ExportOptions) (*ExportResult, error) {
	switch o.Format {
	case "":
		o.Format = "jsonl"
	case "jsonl", "csv":
	default:
		return nil, fmt.Errorf("export format %q: want jsonl or csv", o.Format)
	}
	dir = filepath.Clean(dir)
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("%s: %w", dir, ErrExportDir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: %v", dir, ErrExportDir, err)
	}
	parent, base := filepath.Dir(dir), filepath.Base(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("creating export folder: %w", err)
	}
	tmpPrefix := "." + base + ".export-"
	if _, err := staletmp.Clean(parent, tmpPrefix); err != nil {
		return nil, fmt.Errorf("removing a killed export's temporary folder: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, staletmp.Prefix(tmpPrefix))
	if err != nil {
		return nil, fmt.Errorf("creating export folder: %w", err)
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	msg, cp, err := l.writeExport(tmp, o.Format)
	if err != nil {
		return nil, err
	}
	if l.afterWrite != nil {
		if err := l.afterWrite(tmp); err != nil {
			return nil, err
		}
	}
	if _, err := VerifyExport(tmp, l.pub, msg); err != nil {
		return nil, fmt.Errorf("the export does not verify before it is installed: %w", err)
	}
	if err := fsync.Dir(tmp); err != nil {
		return nil, fmt.Errorf("writing export: %w", err)
	}
	installed := false
	err = l.db.Update(func(tx *bolt.Tx) error {
		h, err := l.checkHead(tx)
		if err != nil {
			return l.refuse(tx, err)
		}
		// Records appended meanwhile may have replaced the export's
		// checkpoint in the database; it goes back (pinned) once the log is
		// proven to extend it.
		if h.cp.Size != cp.Size {
			_, tree, _ := buckets(tx)
			if _, err := extends(txHashes{tree}, h.cp.Size, h.cp.Root, cp.Size, cp.Root); err != nil {
				return l.refuse(tx, verr(cp.Size, "the log no longer extends the exported checkpoint for size %d", cp.Size))
			}
		}
		cps, pinned := tx.Bucket(bucketCheckpoints), tx.Bucket(bucketPinned)
		if cps.Get(u64(cp.Size)) == nil {
			if err := cps.Put(u64(cp.Size), msg); err != nil {
				return err
			}
		}
		if err := pinned.Put(u64(cp.Size), []byte("export")); err != nil {
			return err
		}
		if _, err := l.Append(tx, Event{Type: EventExport, Operator: o.Operator, Payload: map[string]any{
			"format": o.Format, "dir": dir, "records": cp.Size, "root": cp.Root.String(),
		}}); err != nil {
			return err
		}
		// An empty folder given as --out makes way (os.Rename does not
		// replace folders); one that filled up meanwhile stops the export.
		hadDir := false
		if err := os.Remove(dir); err == nil {
			hadDir = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("installing export: %s: %w: %v", dir, ErrExportDir, err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			if hadDir {
				os.Mkdir(dir, 0o755)
			}
			return fmt.Errorf("installing export: %w", err)
		}
		installed = true
		return fsync.Dir(parent)
	})
	if err != nil {
		if installed { // the transaction did not commit: nothing may stay under dir
			os.Rename(dir, tmp)
		}
		return nil, err
	}
	tmp = ""
	return &ExportResult{Dir: dir, Records: cp.Size, Checkpoint: cp, Note: string(msg)}, nil
}

// writeExport writes the files of an export of the log's latest signed
// checkpoint to dir and returns that checkpoint. An empty log gets its first
// checkpoint signed.
func (l *Log) writeExport(dir, format string) ([]byte, Checkpoint, error) {
	var msg []byte
	var cp Checkpoint
	for range 2 {
		err := l.db.View(func(tx *bolt.Tx) error {
			h, err := l.checkHead(tx)
			if err != nil {
				return l.refuse(tx, err)
			}
			if h.note == nil {
				return nil
			}
			msg, cp = h.note, h.cp
			if err := writeFile(filepath.Join(dir, recordsFile(format)), func(w *bufio.Writer) error {
				return writeRecords(tx, w, cp.Size, format)
			}); err != nil {
				return err
			}
			return writeFile(filepath.Join(dir, FileCheckpoints), func(w *bufio.Writer) error {
				c := tx.Bucket(bucketCheckpoints).Cursor()
				for k, v := c.First(); len(k) == 8 && beUint(k) <= cp.Size; k, v = c.Next() {
					line, err := json.Marshal(struct {
						Size uint64 `json:"size"`
						Note string `json:"note"`
					}{beUint(k), string(v)})
					if err != nil {
						return err
					}
					w.Write(line)
					w.WriteByte('\n')
				}
				return nil
			})
		})
		if err != nil {
			return nil, Checkpoint{}, err
		}
		if msg != nil {
			break
		}
		if err := l.db.Update(func(tx *bolt.Tx) error { _, err := l.Checkpoint(tx); return err }); err != nil {
			return nil, Checkpoint{}, err
		}
	}
	pubPEM, err := MarshalPublicKeyPEM(l.pub)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	readme, err := readmeText(l.Origin(), l.pub, cp, format)
	if err != nil {
		return nil, Checkpoint{}, err
	}
	for name, data := range map[string][]byte{FileCheckpoint: msg, FilePublicKey: pubPEM, FileReadme: readme} {
		if err := writeFile(filepath.Join(dir, name), func(w *bufio.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return nil, Checkpoint{}, err
		}
	}
	return msg, cp, nil
}

func recordsFile(format string) string {
	if format == "csv" {
		return FileRecordsCSV
	}
	return FileRecordsJSONL
}

func beUint(k []byte) uint64 {
	var v uint64
	for _, b := range k {
		v = v<<8 | uint64(b)
	}
	return v
}

func writeFile(path string, fill func(*bufio.Writer) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("writing export: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<16)
	err = fill(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writeRecords(tx *bolt.Tx, w *bufio.Writer, upTo uint64, format string) error {
	c := tx.Bucket(bucketRecords).Cursor()
	var cw *csv.Writer
	if format == "csv" {
		cw = csv.NewWriter(w)
		if err := cw.Write(csvHeader); err != nil {
			return err
		}
	}
	for k, v := c.First(); k != nil && beUint(k) <= upTo; k, v = c.Next() {
		if cw == nil {
			w.Write(v)
			w.WriteByte('\n')
			continue
		}
		r, err := Parse(v)
		if err != nil {
			return fmt.Errorf("%w: record %d: %v", ErrIntegrity, beUint(k), err)
		}
		if err := cw.Write([]string{
			strconv.FormatUint(r.Seq, 10), r.Time.Format(TimeLayout), r.Station, r.Operator, r.Serial,
			r.Event, r.Version, string(r.Payload), hex.EncodeToString(r.Prev),
		}); err != nil {
			return err
		}
	}
	if cw != nil {
		cw.Flush()
		return cw.Error()
	}
	return nil
}

// jsonlRecords reads records.jsonl line by line.
type jsonlRecords struct {
	r    *bufio.Reader
	line uint64
	long []byte // a line longer than r's buffer
}

func (s *jsonlRecords) next() (uint64, []byte, error) {
	b, err := s.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		s.long = append(s.long[:0], b...)
		for errors.Is(err, bufio.ErrBufferFull) && len(s.long) <= MaxRecordSize {
			b, err = s.r.ReadSlice('\n')
			s.long = append(s.long, b...)
		}
		if len(s.long) > MaxRecordSize+1 {
			return 0, nil, corruptError{fmt.Sprintf("record longer than %d bytes", MaxRecordSize)}
		}
		b = s.long
	}
	switch {
	case err == nil:
		s.line++
		return s.line, b[:len(b)-1], nil
	case errors.Is(err, io.EOF) && len(b) == 0:
		return 0, nil, io.EOF
	case errors.Is(err, io.EOF):
		return 0, nil, corruptError{"the last record has no newline (truncated file)"}
	}
	return 0, nil, err
}

// csvRecords reads records.csv and re-encodes each row canonically.
type csvRecords struct {
	r   *csv.Reader
	row uint64
	rec Record
	buf []byte
}

func (s *csvRecords) next() (uint64, []byte, error) {
	f, err := s.r.Read()
	if errors.Is(err, io.EOF) {
		return 0, nil, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return 0, nil, corruptError{"CSV: " + pe.Error()}
		}
		return 0, nil, err
	}
	if s.row == 0 {
		if len(f) != len(csvHeader) || fmt.Sprint(f) != fmt.Sprint(csvHeader) {
			return 0, nil, corruptError{"CSV header is not " + fmt.Sprint(csvHeader)}
		}
		s.r.FieldsPerRecord = len(csvHeader)
		s.row++
		return s.next()
	}
	s.row++
	pos := s.row - 1
	bad := func(what string) (uint64, []byte, error) {
		return 0, nil, corruptError{fmt.Sprintf("CSV row %d: %s", pos, what)}
	}
	seq, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil || strconv.FormatUint(seq, 10) != f[0] {
		return bad("bad seq")
	}
	t, err := time.Parse(TimeLayout, f[1])
	if err != nil || t.Format(TimeLayout) != f[1] {
		return bad("bad time")
	}
	prev, err := hex.DecodeString(f[8])
	if err != nil || len(prev) != 32 || hex.EncodeToString(prev) != f[8] {
		return bad("bad prev")
	}
	s.rec = Record{Seq: seq, Time: t, Station: f[2], Operator: f[3], Serial: f[4], Event: f[5], Version: f[6], Payload: json.RawMessage(f[7]), Prev: prev}
	if len(f[7]) == 0 {
		return bad("empty payload")
	}
	s.buf, err = s.rec.appendTo(s.buf[:0])
	if err != nil {
		return bad(err.Error())
	}
	return pos, s.buf, nil
}

// jsonlCheckpoints reads checkpoints.jsonl.
type jsonlCheckpoints struct {
	r    *bufio.Reader
	line int
}

func (s *jsonlCheckpoints) next() (uint64, []byte, error) {
	b, err := s.r.ReadSlice('\n')
	switch {
	case errors.Is(err, io.EOF) && len(b) == 0:
		return 0, nil, io.EOF
	case err == nil:
	case errors.Is(err, io.EOF):
		return 0, nil, corruptError{FileCheckpoints + ": the last line has no newline (truncated file)"}
	case errors.Is(err, bufio.ErrBufferFull):
		return 0, nil, corruptError{FileCheckpoints + ": line too long"}
	default:
		return 0, nil, err
	}
	s.line++
	var c struct {
		Size *uint64 `json:"size"`
		Note *string `json:"note"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil || c.Size == nil || c.Note == nil || dec.More() {
		return 0, nil, corruptError{fmt.Sprintf("%s line %d is not {\"size\":N,\"note\":\"...\"}", FileCheckpoints, s.line)}
	}
	return *c.Size, []byte(*c.Note), nil
}

// VerifyExport checks an export folder offline, trusting only pub (the key
// the auditor obtained from the station operator beforehand; a key shipped
// inside the export is never used). Every record must be covered by a signed
// checkpoint. With anchor (a checkpoint kept from an earlier export or
// `station audit pubkey` session), the export must extend it. It streams:
// memory stays flat whatever the export's size.
func VerifyExport(dir string, pub crypto.PublicKey, anchor []byte) (*Report, error) {
	return VerifyExportFS(os.DirFS(dir), pub, anchor)
}

// VerifyExportFS is VerifyExport over any file system (an export read from
// an archive, or kept in memory).
func VerifyExportFS(fsys fs.FS, pub crypto.PublicKey, anchor []byte) (*Report, error) {
	const dir = "the export"
	v, err := newVerifier(pub, anchor)
	if err != nil {
		return nil, err
	}
	v.strict = true
	cf, err := fsys.Open(FileCheckpoints)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (no %s)", dir, ErrNotExport, FileCheckpoints)
	}
	if err != nil {
		return nil, err
	}
	defer cf.Close()

	var src recordSource
	jf, jerr := fsys.Open(FileRecordsJSONL)
	sf, serr := fsys.Open(FileRecordsCSV)
	switch {
	case jerr == nil && serr == nil:
		jf.Close()
		sf.Close()
		return nil, fmt.Errorf("%s: %w: both %s and %s present", dir, ErrNotExport, FileRecordsJSONL, FileRecordsCSV)
	case jerr == nil:
		defer jf.Close()
		src = &jsonlRecords{r: bufio.NewReaderSize(jf, 1<<16)}
	case serr == nil:
		defer sf.Close()
		cr := csv.NewReader(bufio.NewReaderSize(sf, 1<<16))
		cr.ReuseRecord = true
		src = &csvRecords{r: cr}
	case errors.Is(jerr, fs.ErrNotExist) && errors.Is(serr, fs.ErrNotExist):
		return nil, verr(1, "the export has no %s or %s (records deleted)", FileRecordsJSONL, FileRecordsCSV)
	default:
		return nil, fmt.Errorf("opening records: %w", errors.Join(jerr, serr))
	}
	rep, err := v.run(src, &jsonlCheckpoints{r: bufio.NewReaderSize(cf, 1<<16)})
	if err != nil {
		return nil, otherKeyHint(fsys, pub, err)
	}
	// The loose checkpoint file must be the last checkpoint of the list.
	if msg, err := fs.ReadFile(fsys, FileCheckpoint); err == nil {
		c, err := OpenCheckpoint(msg, pub)
		if err != nil {
			return nil, verr(rep.Latest.Size, "%s: %v", FileCheckpoint, err)
		}
		if c != *rep.Latest {
			return nil, verr(rep.Latest.Size, "%s (size %d) is not the last checkpoint of %s", FileCheckpoint, c.Size, FileCheckpoints)
		}
	} else {
		rep.Warnings = append(rep.Warnings, "the export has no "+FileCheckpoint+" file")
	}
	if data, err := fs.ReadFile(fsys, FilePublicKey); err == nil {
		if shipped, err := ParsePublicKeyPEM(data); err != nil || !sameKey(shipped, pub) {
			rep.Warnings = append(rep.Warnings, "the export's "+FilePublicKey+" is not the key given; it was ignored (a key shipped with an export proves nothing)")
		}
	}
	return rep, nil
}

// otherKeyHint gives a failed verification of an export whose own
// station.pub.pem is another key than the one given the likelier fix: a
// wrong --key fails exactly as a forged trail does. The shipped key proves
// nothing, so the hint names both key IDs for the auditor to compare with
// the one they hold, and still says what to do if theirs is right.
func otherKeyHint(fsys fs.FS, pub crypto.PublicKey, err error) error {
	data, rerr := fs.ReadFile(fsys, FilePublicKey)
	if rerr != nil || !errors.Is(err, ErrIntegrity) {
		return err
	}
	shipped, perr := ParsePublicKeyPEM(data)
	if perr != nil || sameKey(shipped, pub) {
		return err
	}
	theirs, _ := keyid.Of(shipped)
	given, _ := keyid.Of(pub)
	return hint.Override(err, fmt.Sprintf("the export's %s is key_id %s, not the key given (key_id %s): check that --key is the station's key as `station audit pubkey` printed it when you received it; if it is, the trail was altered or its key replaced: keep the export as evidence", FilePublicKey, theirs, given))
}

package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/factory-id/station/internal/fsync"
	"github.com/factory-id/station/internal/hint"
)

// Conditions of the database file that callers branch on. Each comes wrapped
// in an *Error naming the file and what was found, and carries the
// operator's next step (hint.Of).
var (
	// ErrBusy means another process holds the database (retryable).
	ErrBusy = hint.New("station database is in use by another process",
		"another station command holds the database: wait for it to finish and retry")
	// ErrNotStationDB means the path names something that is not an
	// initialized database of this station: an empty file, another program's
	// file, a database `station init` never finished, another station's.
	ErrNotStationDB = hint.New("not a station database",
		"check station.db in the config (or --db); if this file was the station's database, restore it from its latest backup (docs/DATABASE.md); `station init` creates a database only where no file exists")
	// ErrDamaged means the file is a station database (it carries bbolt's
	// header) that cannot be read whole: truncated, a bad checksum, a corrupt
	// page, a record that does not decode.
	ErrDamaged = hint.New("station database is damaged",
		"keep the damaged file as evidence, restore the database from its latest backup (docs/DATABASE.md), then run `station audit verify`")
	// ErrReplaced means the database file was deleted, renamed or replaced
	// while this process had it open: what it writes would be lost.
	ErrReplaced = hint.New("station database was deleted or replaced while in use",
		"stop the line: put the database file back (or restore its latest backup, docs/DATABASE.md) and re-run; a unit stopped mid-way resumes")
)

// Error is a failure of the database file at Path (empty when the caller has
// only a transaction). Err is one of the sentinels above.
type Error struct {
	Path   string
	Err    error
	Detail string
}

func (e *Error) Error() string {
	s := e.Err.Error()
	if e.Path != "" {
		s += " (" + e.Path + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Options say how to open a station database.
type Options struct {
	// StationID is the station the database must belong to ("" skips the
	// check, for tools that read any station's database).
	StationID string
	// Timeout is how long to wait for another process's lock.
	Timeout time.Duration
	// ReadOnly opens the database for reading only (several read-only
	// processes may share it).
	ReadOnly bool
}

// Meta keys store owns.
const (
	metaInitialized = "initialized" // RFC 3339 time `station init` finished
	metaStation     = "station"     // the station ID
)

var allBuckets = [][]byte{bucketUnits, bucketEKs, bucketCerts, bucketMeta, bucketCAs}

// Open opens the initialized station database at path. It never creates a
// file (Create does) and never writes to one it refuses: the file is first
// opened read-only and checked (bbolt's header and checksums, a size that
// holds every page, every page of the tree walked once (checkPages), the
// station's buckets and markers, the station ID); a
// missing file is an error wrapping fs.ErrNotExist, anything else unusable an
// *Error wrapping ErrNotStationDB, ErrDamaged or ErrBusy.
func Open(path string, o Options) (*DB, error) {
	db, err := open(path, path, true, o.Timeout)
	if err != nil {
		return nil, err
	}
	err = db.checkPages()
	if err == nil {
		err = db.validate(o.StationID)
	}
	if err != nil || o.ReadOnly {
		if err != nil {
			db.Close()
			return nil, err
		}
		return db, nil
	}
	ro := db.fi
	db.Close()
	if db, err = open(path, path, false, o.Timeout); err != nil {
		return nil, err
	}
	if !os.SameFile(ro, db.fi) {
		db.Close()
		return nil, &Error{Path: path, Err: ErrReplaced, Detail: "the file changed while it was being opened"}
	}
	if err := db.validate(o.StationID); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

var errEmpty = errors.New("the file is empty")

// open opens path with bbolt (never creating it) and names errors after name.
func open(path, name string, readOnly bool, timeout time.Duration) (db *DB, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("opening the station database: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, &Error{Path: name, Err: ErrNotStationDB, Detail: "not a regular file"}
	}
	var f *os.File
	opts := &bolt.Options{Timeout: timeout, ReadOnly: readOnly,
		OpenFile: func(p string, flag int, mode os.FileMode) (*os.File, error) {
			ff, err := os.OpenFile(p, flag&^os.O_CREATE, mode)
			if err != nil {
				return nil, err
			}
			// bbolt initializes an empty file as a new database: refuse it on
			// the descriptor bbolt would use, before it can.
			if st, err := ff.Stat(); err != nil || st.Size() == 0 {
				ff.Close()
				return nil, cmpErr(err, errEmpty)
			}
			f = ff
			return ff, nil
		}}
	var bdb *bolt.DB
	err = guard(name, func() (err error) {
		bdb, err = bolt.Open(path, 0o600, opts)
		return err
	})
	if err != nil {
		if bdb == nil && f != nil && errors.Is(err, ErrDamaged) {
			f.Close() // bbolt panicked with the file open
		}
		return nil, classify(path, name, err)
	}
	st, err := f.Stat()
	if err != nil {
		bdb.Close()
		return nil, fmt.Errorf("opening the station database: %w", err)
	}
	return &DB{DB: bdb, path: path, fi: st}, nil
}

func cmpErr(err, otherwise error) error {
	if err != nil {
		return err
	}
	return otherwise
}

// classify turns bbolt's open errors into the store's.
func classify(path, name string, err error) error {
	var se *Error
	switch {
	case errors.As(err, &se):
		return err
	case errors.Is(err, berrors.ErrTimeout):
		return &Error{Path: name, Err: ErrBusy}
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("opening the station database: %w", err)
	case errors.Is(err, errEmpty):
		return &Error{Path: name, Err: ErrNotStationDB, Detail: "the file is empty"}
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("opening the station database %s: %w", name, err)
	case !hasMagic(path):
		return &Error{Path: name, Err: ErrNotStationDB, Detail: "it is not a bbolt database file"}
	case strings.HasPrefix(err.Error(), "file size too small"):
		return &Error{Path: name, Err: ErrDamaged, Detail: "truncated: " + err.Error()}
	}
	return &Error{Path: name, Err: ErrDamaged, Detail: err.Error()}
}

// boltMagic opens both of a bbolt file's meta pages, after the 16-byte page
// header, in the machine's byte order (bbolt writes it so).
const boltMagic = 0xED0CDAED

// hasMagic reports whether either meta page of the file at path carries
// bbolt's magic number: the file claims to be a database, however damaged.
func hasMagic(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var b [4]byte
	for _, off := range []int64{16, 4096 + 16, 8192 + 16, 16384 + 16, 65536 + 16} {
		if n, _ := f.ReadAt(b[:], off); n == 4 && binary.NativeEndian.Uint32(b[:]) == boltMagic {
			return true
		}
	}
	return false
}

// validate checks, in a read transaction, that db is a whole, initialized
// database of station (any station when "").
func (db *DB) validate(station string) error {
	return db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); need > db.fi.Size() {
			return &Error{Path: db.path, Err: ErrDamaged, Detail: fmt.Sprintf("truncated: its pages need %d bytes, the file holds %d", need, db.fi.Size())}
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil || meta.Get([]byte(metaInitialized)) == nil {
			return &Error{Path: db.path, Err: ErrNotStationDB, Detail: "a bbolt file without the station's records (another program's, or one `station init` never finished)"}
		}
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				return &Error{Path: db.path, Err: ErrDamaged, Detail: fmt.Sprintf("bucket %q is missing", b)}
			}
		}
		if id := meta.Get([]byte(metaStation)); station != "" && id != nil && string(id) != station {
			return &Error{Path: db.path, Err: ErrNotStationDB, Detail: fmt.Sprintf("it is the database of station %q, not of %q", id, station)}
		}
		return nil
	})
}

// Create makes a new station database at path for o.StationID, which must
// not exist (an error wrapping fs.ErrExist otherwise), and returns it open.
// The database is built under a temporary name beside path: setup (the
// station's audit log, its first record) runs there, then the finished file
// is linked to path, so a crash leaves either no database or a whole one.
func Create(path string, o Options, setup func(*DB) error) (*DB, error) {
	if o.StationID == "" {
		return nil, errors.New("creating a station database needs the station ID")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating folder for %s: %w", path, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("creating %s: %w", path, fs.ErrExist)
	}
	tf, err := os.CreateTemp(dir, filepath.Base(path)+".init-*")
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	tmp := tf.Name()
	tf.Close()
	defer os.Remove(tmp)
	bdb, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: o.Timeout})
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	st, err := os.Stat(tmp)
	if err != nil {
		bdb.Close()
		return nil, err
	}
	db := &DB{DB: bdb, path: tmp, fi: st}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put([]byte(metaStation), []byte(o.StationID))
	})
	if err == nil && setup != nil {
		err = setup(db)
	}
	if err == nil {
		err = db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put([]byte(metaInitialized), []byte(time.Now().UTC().Format(time.RFC3339)))
		})
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	if err := os.Link(tmp, path); err != nil {
		return nil, fmt.Errorf("creating %s: %w", path, err)
	}
	_ = fsync.Dir(dir) // best effort: the file itself is complete
	return Open(path, o)
}

// DB is the open station database. View and Update shadow bbolt's: they
// turn a panic of bbolt on a corrupt page into ErrDamaged, and Update writes
// only while the path still names the open file.
type DB struct {
	*bolt.DB
	path string
	fi   os.FileInfo // the open file, for CheckPath
}

// Path is the database file's path.
func (db *DB) Path() string { return db.path }

// CheckPath reports ErrReplaced when the database's path no longer names
// the file this DB has open (same device and inode): deleted, renamed or
// replaced, so that whatever is written now would be lost.
func (db *DB) CheckPath() error {
	st, err := os.Stat(db.path)
	if err == nil && os.SameFile(st, db.fi) {
		return nil
	}
	detail := "the path now names another file"
	if errors.Is(err, fs.ErrNotExist) {
		detail = "the file was deleted"
	} else if err != nil {
		detail = err.Error()
	}
	return &Error{Path: db.path, Err: ErrReplaced, Detail: detail}
}

// View runs fn in a read transaction (see DB).
func (db *DB) View(fn func(*bolt.Tx) error) error {
	return guard(db.path, func() error { return db.DB.View(fn) })
}

// Update runs fn in a read-write transaction (see DB). It checks the path
// before and after: an error after the commit means the commit went to a
// file that is no longer the station's database, and the caller must not
// act on it (change a TPM) as if it were recorded.
func (db *DB) Update(fn func(*bolt.Tx) error) error {
	if err := db.CheckPath(); err != nil {
		return err
	}
	if err := guard(db.path, func() error { return db.DB.Update(fn) }); err != nil {
		return err
	}
	return db.CheckPath()
}

// Guard runs fn, which reads the database through bbolt directly (the audit
// log's verifier), turning a bbolt panic on a corrupt page into ErrDamaged.
func (db *DB) Guard(fn func() error) error { return guard(db.path, fn) }

// guard runs fn and turns a panic raised inside bbolt (its assertions on a
// corrupt page) or a memory fault (reading the mapped file past its end)
// into an *Error wrapping ErrDamaged. Any other panic is a bug and
// propagates.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		// A fault at a real address is a read of the mapped file past its
		// end or through a corrupt page's garbage offsets, wherever the
		// slice bbolt handed out was read.
		_, fault := r.(interface{ Addr() uintptr })
		if !fault && !panickedInBolt() {
			panic(r)
		}
		err = &Error{Path: path, Err: ErrDamaged, Detail: fmt.Sprintf("reading it failed: %v", r)}
	}()
	return fn()
}

// panickedInBolt reports whether the panic being recovered was raised in
// bbolt's code (or the runtime, called from it): the first frame below
// the runtime's panic machinery is bbolt's.
func panickedInBolt() bool {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	sawPanic := false
	for {
		f, more := frames.Next()
		switch {
		case strings.HasPrefix(f.Function, "runtime."):
			if strings.HasPrefix(f.Function, "runtime.gopanic") || strings.HasPrefix(f.Function, "runtime.panic") || strings.HasPrefix(f.Function, "runtime.sigpanic") {
				sawPanic = true
			}
		case sawPanic:
			return strings.HasPrefix(f.Function, "go.etcd.io/bbolt")
		}
		if !more {
			return false
		}
	}
}

package store

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/fsync"
)

// backupAttempts bounds the copies Backup makes of a database that a writer
// keeps committing to.
const backupAttempts = 50

// BackupInfo describes a backup Backup wrote.
type BackupInfo struct {
	Size     int64 `json:"size"`     // bytes written
	Units    int   `json:"units"`    // units in the copy
	Attempts int   `json:"attempts"` // copies made until one was consistent
}

// Backup writes a consistent copy of the station database at path to out,
// while another process (a running batch) may hold it open and write.
//
// bbolt locks the file against every other process for as long as a writer
// has it open, so the copy cannot come from a bbolt transaction (tx.WriteTo)
// here. It relies instead on bbolt's copy-on-write format: a commit writes
// its new pages to free space and then one of the two meta pages, and never
// overwrites a page the latest meta page refers to before the following
// commit. Backup copies the file, then reads both meta pages again: when
// they are unchanged, no commit finished during the copy and the copy holds
// the committed database whole; otherwise it copies again. The copy is then
// opened with bbolt and checked as Open checks a database (this station's,
// initialized, no page past the end) and every bucket and unit is read
// through, before it is synced and renamed to out (0600). A file already at out is replaced; out must
// not be the database itself.
func Backup(path, out string, o Options) (*BackupInfo, error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the station database: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return nil, err
	}
	if ost, err := os.Stat(out); err == nil && os.SameFile(st, ost) {
		return nil, fmt.Errorf("backup of %s: the output is the database itself", path)
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Path: path, Err: ErrNotStationDB, Detail: "not a regular file"}
	}
	if st.Size() == 0 {
		return nil, &Error{Path: path, Err: ErrNotStationDB, Detail: "the file is empty"}
	}
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: creating the folder for %s: %v", out, err)
	}
	for attempt := 1; attempt <= backupAttempts; attempt++ {
		info, err := backupOnce(src, path, out, dir, o)
		if errors.Is(err, errChanged) {
			continue
		}
		if err != nil {
			return nil, err
		}
		info.Attempts = attempt
		return info, nil
	}
	return nil, &Error{Path: path, Err: ErrBusy, Detail: fmt.Sprintf("it changed during each of %d copies", backupAttempts)}
}

var errChanged = errors.New("the database changed during the copy")

func backupOnce(src *os.File, path, out, dir string, o Options) (info *BackupInfo, err error) {
	tf, err := os.CreateTemp(dir, filepath.Base(out)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("backup to %s: %v", out, err)
	}
	tmp := tf.Name()
	defer func() {
		if err != nil {
			tf.Close()
			os.Remove(tmp)
		}
	}()
	if err := tf.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("backup to %s: %v", out, err)
	}
	if _, err := io.Copy(tf, io.NewSectionReader(src, 0, 1<<62)); err != nil {
		return nil, fmt.Errorf("backup: copying %s: %v", path, err)
	}
	if err := tf.Sync(); err != nil {
		return nil, fmt.Errorf("backup to %s: %v", out, err)
	}
	db, err := open(tmp, path, true, o.Timeout)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ps := db.Info().PageSize
	now, was := make([]byte, 2*ps), make([]byte, 2*ps)
	if _, err := src.ReadAt(now, 0); err != nil {
		return nil, fmt.Errorf("backup: reading %s: %v", path, err)
	}
	if _, err := tf.ReadAt(was, 0); err != nil {
		return nil, fmt.Errorf("backup to %s: %v", out, err)
	}
	if !bytes.Equal(now, was) {
		return nil, errChanged
	}
	db.path = path // errors name the database, not the copy
	if err := db.checkPages(); err != nil {
		return nil, err
	}
	if err := db.validate(o.StationID); err != nil {
		return nil, err
	}
	n, err := db.checkAll()
	if err != nil {
		return nil, err
	}
	if err := tf.Close(); err != nil {
		return nil, fmt.Errorf("backup to %s: %v", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return nil, fmt.Errorf("backup to %s: %v", out, err)
	}
	_ = fsync.Dir(dir) // best effort: the file itself is complete
	size := int64(0)
	if st, err := os.Stat(out); err == nil {
		size = st.Size()
	}
	return &BackupInfo{Size: size, Units: n}, nil
}

// checkAll reads every key and value of every bucket (in a guarded
// transaction, so a corrupt page is an error, not a crash) and decodes every
// unit. It returns the number of units. (bbolt's own tx.Check is not used:
// on a corrupt freelist page it loops for billions of pages or faults in a
// goroutine of its own, which no recover reaches.)
func (db *DB) checkAll() (units int, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		var walk func(b *bolt.Bucket) error
		walk = func(b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				if v != nil {
					return nil
				}
				sub := b.Bucket(k)
				if sub == nil {
					return &Error{Path: db.path, Err: ErrDamaged, Detail: fmt.Sprintf("bucket %q cannot be read", k)}
				}
				return walk(sub)
			})
		}
		if err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) }); err != nil {
			return err
		}
		if err := ForEachUnit(tx, func(*Unit) error { units++; return nil }); err != nil {
			return err
		}
		return nil
	})
	return units, err
}

package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/fsync"
)

// ErrWitness means the witness folder cannot be read or written (an
// environment problem: mount it, or unset the witness).
var ErrWitness = errors.New("audit witness folder unusable")

// WitnessSuffix ends the name of a station's file in a witness folder.
const WitnessSuffix = ".checkpoint"

// WitnessFile is the file a witness folder holds for a station's log: the
// latest signed checkpoint, <station id>.checkpoint (path-escaped), so many
// stations can share one folder.
func WitnessFile(dir, stationID string) string {
	return filepath.Join(dir, url.PathEscape(stationID)+WitnessSuffix)
}

// witness keeps a copy of the latest signed checkpoint outside the database
// (another disk, a share): a rollback or wholesale rewrite of the database
// and its checkpoints together then no longer matches it.
type witness struct {
	path string

	mu      sync.Mutex
	loaded  bool
	cp      *Checkpoint // what the witness file holds (nil: nothing yet)
	failed  error       // the last write that failed after a commit
	pending map[*bolt.Tx]*witnessNote
}

type witnessNote struct {
	cp   Checkpoint
	note []byte
}

// SetWitness makes the log keep its latest signed checkpoint in dir (see
// WitnessFile), written after each commit that signs one, and refuse to go
// on (ErrIntegrity) when the log does not extend the checkpoint found there.
// Call it before the log is used.
func (l *Log) SetWitness(dir string) {
	if dir == "" {
		l.witness = nil
		return
	}
	l.witness = &witness{path: WitnessFile(dir, l.station)}
}

// checkWitness proves that the log at head h extends the witness's
// checkpoint: a rolled-back database (fewer records) or a rewritten one (a
// different tree) no longer does.
func (l *Log) checkWitness(tx *bolt.Tx, h head) error {
	w := l.witness
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.failed != nil {
		return fmt.Errorf("%w: %v (the last signed checkpoint could not be written there; fix the folder or unset station.witness)", ErrWitness, w.failed)
	}
	if !w.loaded {
		// A folder that is missing or read-only (a share not mounted)
		// would fail every write after the commit: say so now.
		probe, err := os.CreateTemp(filepath.Dir(w.path), ".probe-")
		if err != nil {
			return fmt.Errorf("%w: %v", ErrWitness, err)
		}
		probe.Close()
		os.Remove(probe.Name())
		data, err := os.ReadFile(w.path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fmt.Errorf("%w: %v", ErrWitness, err)
		default:
			c, err := OpenCheckpoint(data, l.pub)
			if err != nil {
				return verr(h.n, "the witness %s: %v", w.path, err)
			}
			if c.Origin != l.Origin() {
				return verr(h.n, "the witness %s holds a checkpoint of log %q, not %q", w.path, c.Origin, l.Origin())
			}
			w.cp = &c
		}
		w.loaded = true
	}
	wc := w.cp
	if wc == nil {
		return nil
	}
	if wc.Size > h.n {
		return verr(h.n+1, "record is missing: the witness %s holds the signed checkpoint for size %d but the log ends at record %d (the database was rolled back or truncated)", w.path, wc.Size, h.n)
	}
	_, tree, _ := buckets(tx)
	root := h.cp.Root
	if h.note == nil {
		root = emptyTree
	}
	if _, err := extends(txHashes{tree}, h.n, root, wc.Size, wc.Root); err != nil {
		return verr(wc.Size, "the log does not extend the signed checkpoint for size %d that the witness %s holds (history rewritten)", wc.Size, w.path)
	}
	return nil
}

// witnessOnCommit writes the transaction's last signed checkpoint to the
// witness once the transaction has committed (never before: the witness must
// not hold a checkpoint the database might roll back).
func (l *Log) witnessOnCommit(tx *bolt.Tx, c Checkpoint, note []byte) {
	w := l.witness
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		w.pending = map[*bolt.Tx]*witnessNote{}
	}
	if p, ok := w.pending[tx]; ok {
		p.cp, p.note = c, note
		return
	}
	for t := range w.pending { // rolled-back transactions
		if t.DB() == nil {
			delete(w.pending, t)
		}
	}
	w.pending[tx] = &witnessNote{cp: c, note: note}
	tx.OnCommit(func() { w.commit(tx) })
}

// commit writes the committed checkpoint unless a larger one is already
// there (commit handlers of concurrent transactions run in any order).
func (w *witness) commit(tx *bolt.Tx) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.pending[tx]
	delete(w.pending, tx)
	if p == nil || w.cp != nil && p.cp.Size <= w.cp.Size {
		return
	}
	if err := writeAtomic(w.path, p.note, 0o644); err != nil {
		w.failed = err
		return
	}
	w.cp = &p.cp
}

// writeAtomic replaces path with data: a temporary sibling, synced, renamed
// over it, and the folder synced.
func writeAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return err
	}
	return fsync.Dir(dir)
}

// ReadAnchor reads a signed checkpoint an auditor kept, from any place the
// station leaves one: a checkpoint file (an export's "checkpoint", a witness
// file), an audit export folder, a witness folder (stationID picks the
// station's file when several stations share it; "" takes the only one), or
// a unit proof file (station audit proof). The checkpoint is not verified
// here: Verify and VerifyExport check it against the key they are given.
func ReadAnchor(path, stationID string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if p, ok := proofCheckpoint(data); ok {
			return p, nil
		}
		return data, nil
	}
	for _, name := range []string{FileCheckpoint, url.PathEscape(stationID) + WitnessSuffix} {
		if stationID == "" && name != FileCheckpoint {
			continue
		}
		data, err := os.ReadFile(filepath.Join(path, name))
		if err == nil {
			return data, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	matches, err := filepath.Glob(filepath.Join(path, "*"+WitnessSuffix))
	if err != nil {
		return nil, err
	}
	switch len(matches) {
	case 1:
		return os.ReadFile(matches[0])
	case 0:
		return nil, fmt.Errorf("%s holds no checkpoint (no %s file, no *%s witness file)", path, FileCheckpoint, WitnessSuffix)
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = filepath.Base(m)
	}
	return nil, fmt.Errorf("%s holds checkpoints of several stations (%s): name the file", path, strings.Join(names, ", "))
}

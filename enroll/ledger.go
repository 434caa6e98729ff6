package enroll

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"

	"github.com/factory-id/station/internal/staletmp"
)

// generationKey counts the exports recorded (no other key of the bucket
// lacks a NUL).
var generationKey = []byte("generation")

// ledger reads the export bookkeeping as of Export's transaction and spools
// the changes to a temporary file (key and value, each uvarint-length
// prefixed), so the export needs no write transaction and no memory per
// unit; commit applies them.
type ledger struct {
	book *bolt.Bucket // nil before the first export
	gen  uint64
	f    *os.File
	w    *bufio.Writer
	n    int
}

// openLedger spools next to the export (out), on the same file system, as a
// hidden file removed by Record or Discard.
func openLedger(tx *bolt.Tx, out string) (*ledger, error) {
	l := &ledger{book: tx.Bucket(bucketExported)}
	if l.book != nil {
		if v := l.book.Get(generationKey); len(v) == 8 {
			l.gen = binary.BigEndian.Uint64(v)
		}
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOutput, err)
	}
	f, err := os.CreateTemp(filepath.Dir(out), staletmp.Prefix("."+filepath.Base(out)+".ledger-"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOutput, err)
	}
	l.f, l.w = f, bufio.NewWriterSize(f, 1<<16)
	return l, nil
}

func (l *ledger) put(k, v []byte) error {
	l.n++
	var hdr [2 * binary.MaxVarintLen64]byte
	n := binary.PutUvarint(hdr[:], uint64(len(k)))
	n += binary.PutUvarint(hdr[n:], uint64(len(v)))
	l.w.Write(hdr[:n])
	l.w.Write(k)
	_, err := l.w.Write(v)
	return err
}

func (l *ledger) flush() error { return l.w.Flush() }

// commit applies the spooled changes in tx, unless another export recorded
// since this one read the bookkeeping.
func (l *ledger) commit(tx *bolt.Tx) error {
	if l == nil || l.f == nil {
		return errors.New("export already recorded or discarded")
	}
	book, err := tx.CreateBucketIfNotExists(bucketExported)
	if err != nil {
		return err
	}
	var gen uint64
	if v := book.Get(generationKey); len(v) == 8 {
		gen = binary.BigEndian.Uint64(v)
	}
	if gen != l.gen {
		return fmt.Errorf("%w (export bookkeeping generation %d, read %d): export again", ErrConcurrentExport, gen, l.gen)
	}
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	r := bufio.NewReaderSize(l.f, 1<<16)
	for range l.n {
		kl, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("reading export ledger: %w", err)
		}
		vl, err := binary.ReadUvarint(r)
		if err != nil {
			return fmt.Errorf("reading export ledger: %w", err)
		}
		kv := make([]byte, kl+vl)
		if _, err := io.ReadFull(r, kv); err != nil {
			return fmt.Errorf("reading export ledger: %w", err)
		}
		if err := book.Put(kv[:kl], kv[kl:]); err != nil {
			return err
		}
	}
	if err := book.Put(generationKey, binary.BigEndian.AppendUint64(nil, gen+1)); err != nil {
		return err
	}
	l.discard() // applied: the spool is no longer needed
	return nil
}

func (l *ledger) discard() {
	if l != nil && l.f != nil {
		l.f.Close()
		os.Remove(l.f.Name())
		l.f = nil
	}
}

package audit

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// head is the log's state as its latest signed checkpoint proves it.
type head struct {
	n    uint64     // records in the log
	cp   Checkpoint // the latest signed checkpoint (Size == n); zero if note is nil
	note []byte     // its signed note; nil for an empty log with no checkpoint yet
}

// checkHead proves, before the station signs anything or hands out a
// checkpoint, that the stored log is the one its latest signed checkpoint
// commits to: that checkpoint's signature under the station key, its size
// equal to the number of records (Append signs every record, so a log with
// records and no checkpoint covering them lost its checkpoints), the stored
// tree hashing to its root, and the last record's bytes hashing into that
// tree (Append chains onto them). With a witness folder, the log must also
// extend the checkpoint the witness holds. It costs O(log n) hash reads and
// at most one signature check.
func (l *Log) checkHead(tx *bolt.Tx) (head, error) {
	n, err := size(tx)
	if err != nil {
		return head{}, err
	}
	recs, tree, _ := buckets(tx)
	cps := tx.Bucket(bucketCheckpoints)
	if cps == nil {
		return head{}, fmt.Errorf("the database has no audit log (run station init)")
	}
	th := txHashes{tree}
	h := head{n: n}
	k, v := cps.Cursor().Last()
	switch {
	case k == nil && n > 0:
		return head{}, verr(1, "records 1..%d are covered by no signed checkpoint: the station signs every record as it appends it, so the checkpoints were deleted", n)
	case k == nil:
		return h, l.checkWitness(tx, h)
	case len(k) != 8:
		return head{}, verr(n, "malformed checkpoint key %x", k)
	}
	s := beUint(k)
	c, err := l.openKnown(v)
	switch {
	case err != nil:
		return head{}, verr(s, "the latest checkpoint (size %d): %v", s, err)
	case c.Size != s:
		return head{}, verr(s, "checkpoint stored for size %d says size %d", s, c.Size)
	case c.Origin != l.Origin():
		return head{}, verr(s, "checkpoint for size %d is for log %q, not %q", s, c.Origin, l.Origin())
	case s < n:
		return head{}, verr(s+1, "records %d..%d are covered by no signed checkpoint: the station signs every record as it appends it, so a checkpoint was deleted or records were added without the station key", s+1, n)
	case s > n:
		return head{}, verr(n+1, "record is missing: the log ends at record %d but a signed checkpoint commits to %d records (truncated)", n, s)
	}
	root, err := tlog.TreeHash(int64(n), th)
	if err != nil {
		return head{}, verr(n, "%v", err)
	}
	if root != c.Root {
		return head{}, verr(n, "the stored tree does not hash to the root of the signed checkpoint for size %d (records rewritten after they were signed)", n)
	}
	if n > 0 {
		// The hashes Append stored for record n, recomputed from its bytes,
		// must be the stored ones: the last of them is part of the signed
		// root, so the record chained onto next is the one that was signed.
		want, err := tlog.StoredHashesForRecordHash(int64(n-1), Hash(recs.Get(u64(n))), th)
		if err != nil {
			return head{}, verr(n, "%v", err)
		}
		got, err := th.ReadHashes(storedIndexes(n-1, len(want)))
		if err != nil {
			return head{}, verr(n, "%v", err)
		}
		for i := range want {
			if want[i] != got[i] {
				return head{}, verr(n, "record bytes do not match the tree hashes the signed checkpoint for size %d commits to (record modified)", n)
			}
		}
	}
	h.cp, h.note = c, v
	return h, l.checkWitness(tx, h)
}

// storedIndexes are the stored-hash indexes Append writes for record n+1
// (leaf index n): count consecutive indexes from the leaf's.
func storedIndexes(n uint64, count int) []int64 {
	base := tlog.StoredHashIndex(0, int64(n))
	out := make([]int64, count)
	for i := range out {
		out[i] = base + int64(i)
	}
	return out
}

// openKnown opens a stored checkpoint note, skipping the signature check for
// the note this Log last signed or verified (same bytes, same key).
func (l *Log) openKnown(note []byte) (Checkpoint, error) {
	l.mu.Lock()
	known := l.known
	l.mu.Unlock()
	if known != nil && bytes.Equal(known.note, note) {
		return known.cp, nil
	}
	c, err := OpenCheckpoint(note, l.pub)
	if err != nil {
		return Checkpoint{}, err
	}
	l.remember(note, c)
	return c, nil
}

func (l *Log) remember(note []byte, c Checkpoint) {
	l.mu.Lock()
	l.known = &knownNote{note: bytes.Clone(note), cp: c}
	l.mu.Unlock()
}

type knownNote struct {
	note []byte
	cp   Checkpoint
}

// sign signs the tree of n records after proving that it extends h, the
// head checkHead proved, and stores the checkpoint. The previous one is
// dropped when both fall in one CheckpointWindow and it is not pinned: the
// new checkpoint was just proven to commit to everything it did, so an
// auditor loses nothing (and a kept anchor is checked against the stored
// hashes, not against stored checkpoints).
func (l *Log) sign(tx *bolt.Tx, h head, n uint64) error {
	_, tree, _ := buckets(tx)
	th := txHashes{tree}
	root, err := tlog.TreeHash(int64(n), th)
	if err != nil {
		return err
	}
	if h.note != nil {
		if _, err := extends(th, n, root, h.cp.Size, h.cp.Root); err != nil {
			return verr(h.cp.Size, "the tree of %d records does not extend the signed checkpoint for size %d: %v", n, h.cp.Size, err)
		}
	}
	c := Checkpoint{Origin: l.Origin(), Size: n, Root: root}
	msg, err := signCheckpoint(c, l.signer)
	if err != nil {
		return fmt.Errorf("signing checkpoint: %w", err)
	}
	cps, pinned := tx.Bucket(bucketCheckpoints), tx.Bucket(bucketPinned)
	if p := h.cp.Size; h.note != nil && p < n && p/l.window == n/l.window && pinned.Get(u64(p)) == nil {
		if err := cps.Delete(u64(p)); err != nil {
			return err
		}
	}
	if err := cps.Put(u64(n), msg); err != nil {
		return err
	}
	l.remember(msg, c)
	l.witnessOnCommit(tx, c, msg)
	return nil
}

// Check proves that the stored log is the one its latest signed checkpoint
// signs (and extends the witness's), as every signing does. Commands run it
// before they change anything, so a rewritten log stops them before a TPM
// is touched. A failure is a *VerifyError (ErrIntegrity) naming what was
// found.
func (l *Log) Check() error {
	return l.db.View(func(tx *bolt.Tx) error {
		if _, err := l.checkHead(tx); err != nil {
			return l.refuse(tx, err)
		}
		return nil
	})
}

// extends proves with a consistency proof read from the stored hashes that
// the tree of n records with root extends the tree of m records with mroot,
// and returns the proof. Every tree extends the empty one.
func extends(th tlog.HashReader, n uint64, root tlog.Hash, m uint64, mroot tlog.Hash) (tlog.TreeProof, error) {
	if m == 0 {
		if mroot != emptyTree {
			return nil, fmt.Errorf("the root of an empty tree is %v, not %v", emptyTree, mroot)
		}
		return nil, nil
	}
	proof, err := tlog.ProveTree(int64(n), int64(m), th)
	if err != nil {
		return nil, err
	}
	return proof, tlog.CheckTree(proof, int64(n), root, int64(m), mroot)
}

// refuse explains a failed head check: the full verification of the log in
// tx names the first bad record where it can. The station signs nothing
// until the cause is resolved.
func (l *Log) refuse(tx *bolt.Tx, err error) error {
	var ve *VerifyError
	if !errors.As(err, &ve) {
		return err
	}
	v, verrr := newVerifier(l.pub, nil)
	if verrr == nil {
		if _, full := v.runDB(tx); errors.As(full, &ve) {
			err = full
		}
	}
	return fmt.Errorf("the audit log is not the one the station signed, so it signs nothing more: %w", err)
}

package audit

import (
	"bytes"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/factory-id/station/internal/keyid"
	"io"
	"math/bits"
	"strings"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// Report is what a successful verification established.
type Report struct {
	Origin string `json:"origin"`
	// KeyID names the station key the checkpoints verify under the way the
	// enrollment manifest does (keyid.Of: hex SHA-256 of its PKIX DER).
	KeyID string `json:"key_id,omitempty"`
	// NoteKeyID is the 32-bit signed-note key ID in the checkpoints'
	// signature lines (8 hex digits).
	NoteKeyID   string `json:"note_key_id,omitempty"`
	Records     uint64 `json:"records"`
	Checkpoints int    `json:"checkpoints"`
	// Latest is the last checkpoint verified (its size, root and origin).
	Latest *Checkpoint `json:"latest,omitempty"`
	// Unsigned counts the records after the latest checkpoint: they chain
	// correctly but no signature commits to them yet (a database only; an
	// export has none).
	Unsigned uint64 `json:"unsigned"`
	// Anchor is the earlier checkpoint the log was proven to extend.
	Anchor *Checkpoint `json:"anchor,omitempty"`
	// Consistency is the RFC 6962 consistency proof from Anchor to Latest
	// (database verification only), checked with tlog.CheckTree.
	Consistency []tlog.Hash `json:"consistency,omitempty"`
	Warnings    []string    `json:"warnings,omitempty"`
}

// recordSource yields the log's records in stored order: pos is where the
// store says the record sits (its key, or its line number), data its bytes.
type recordSource interface {
	next() (pos uint64, data []byte, err error) // io.EOF at the end
}

// checkpointSource yields signed checkpoints in stored order with the size
// they are stored under.
type checkpointSource interface {
	next() (size uint64, msg []byte, err error) // io.EOF at the end
}

// storedHashes yields the tree hashes stored with the records, in index
// order (database verification only).
type storedHashes interface {
	next() (index uint64, h []byte, ok bool)
}

// verifier streams over a log once, holding O(log n) state.
type verifier struct {
	pub       crypto.PublicKey
	stationID string // from the first record
	anchor    *Checkpoint
	anchorOK  bool
	strict    bool // every record must be covered by a checkpoint
	db        bool // verifying a database (else an export)
	stored    storedHashes

	n            uint64    // records accepted so far
	prevLeaf     tlog.Hash // leaf hash of record n
	prevPrevLeaf tlog.Hash // leaf hash of record n-1
	stack        []tlog.Hash
	before       []tlog.Hash // scratch: the stack before the current record's leaf
	beforePrev   []tlog.Hash // the stack before record n's leaf was added
	rec          Record
	merges       []tlog.Hash
	storedBuf    [][]byte

	// A broken link between record pendA and pendA+1 waits for the next
	// record or checkpoint to say which of the two was modified. alt is the
	// tree as it would be had record pendA been intact (its leaf hash being
	// record pendA+1's prev).
	pending bool
	pendA   uint64
	alt     []tlog.Hash
	altN    uint64

	cps     checkpointSource
	cpSize  uint64
	cpMsg   []byte
	cpValid bool

	report Report
}

func newVerifier(pub crypto.PublicKey, anchor []byte) (*verifier, error) {
	if _, err := sigType(pub); err != nil {
		return nil, err
	}
	v := &verifier{pub: pub}
	if anchor != nil {
		c, err := OpenCheckpoint(anchor, pub)
		if err != nil {
			return nil, fmt.Errorf("anchor checkpoint: %w: %w", ErrIntegrity, err)
		}
		v.anchor = &c
		v.report.Anchor = &c
	}
	return v, nil
}

// addLeaf appends a leaf to a compact range of n leaves and returns it with
// the hashes tlog stores for that leaf (the leaf, then each completed
// subtree).
func addLeaf(stack []tlog.Hash, n uint64, h tlog.Hash, merges []tlog.Hash) ([]tlog.Hash, []tlog.Hash) {
	merges = append(merges[:0], h)
	for ; n&1 == 1; n >>= 1 {
		h = tlog.NodeHash(stack[len(stack)-1], h)
		stack = stack[:len(stack)-1]
		merges = append(merges, h)
	}
	return append(stack, h), merges
}

var emptyTree, _ = tlog.TreeHash(0, nil)

func rootOf(stack []tlog.Hash) tlog.Hash {
	if len(stack) == 0 {
		return emptyTree
	}
	r := stack[len(stack)-1]
	for i := len(stack) - 2; i >= 0; i-- {
		r = tlog.NodeHash(stack[i], r)
	}
	return r
}

func (v *verifier) run(records recordSource, cps checkpointSource) (*Report, error) {
	v.cps = cps
	if err := v.loadCheckpoint(); err != nil {
		return nil, err
	}
	// The log's station comes from its first checkpoint (or the anchor), so
	// that a modified station field in record 1 is blamed on record 1.
	if v.cpValid {
		if c, err := OpenCheckpoint(v.cpMsg, v.pub); err == nil {
			v.stationID = c.StationID()
		}
	}
	if v.stationID == "" && v.anchor != nil {
		v.stationID = v.anchor.StationID()
	}
	if err := v.atSize(); err != nil {
		return nil, err
	}
	for {
		pos, data, err := records.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var ce corruptError
			if errors.As(err, &ce) {
				return nil, v.resolveFirst(verr(v.n+1, "%v", ce))
			}
			return nil, v.resolveFirst(err)
		}
		if err := v.record(pos, data); err != nil {
			return nil, err
		}
		if err := v.atSize(); err != nil {
			return nil, err
		}
	}
	return v.finish()
}

// resolveFirst reports a pending broken link (an earlier record) in place of
// a later failure.
func (v *verifier) resolveFirst(err error) error {
	if v.pending {
		return verr(v.pendA, "its hash does not match record %d's prev: record %d was modified", v.pendA+1, v.pendA)
	}
	return err
}

func (v *verifier) loadCheckpoint() error {
	size, msg, err := v.cps.next()
	switch {
	case errors.Is(err, io.EOF):
		v.cpValid = false
		return nil
	case err != nil:
		var ce corruptError
		if errors.As(err, &ce) {
			return v.resolveFirst(verr(v.n+1, "%v", ce))
		}
		return v.resolveFirst(err)
	}
	if v.cpValid && size <= v.cpSize {
		return v.resolveFirst(verr(size, "checkpoint for size %d stored after the one for size %d", size, v.cpSize))
	}
	v.cpSize, v.cpMsg, v.cpValid = size, msg, true
	return nil
}

func (v *verifier) record(pos uint64, data []byte) error {
	p := v.n + 1
	if pos != p {
		if pos > p {
			return v.resolveFirst(verr(p, "record is missing (the next stored record is %d)", pos))
		}
		return v.resolveFirst(verr(p, "stored out of order (position %d)", pos))
	}
	if err := parseInto(&v.rec, data, false); err != nil {
		return v.resolveFirst(verr(p, "%v", err))
	}
	leaf := tlog.RecordHash(data)
	r := &v.rec
	if v.stored != nil {
		// The leaf hash stored with the record pins down a modified record
		// before anything else.
		base := uint64(tlog.StoredHashIndex(0, int64(v.n)))
		count := 1 + bits.TrailingZeros64(p)
		v.storedBuf = v.storedBuf[:0]
		for i := 0; i < count; i++ {
			idx, sh, ok := v.stored.next()
			if !ok || idx != base+uint64(i) {
				return v.resolveFirst(verr(p, "tree hash %d is missing", base+uint64(i)))
			}
			v.storedBuf = append(v.storedBuf, sh)
		}
		if !bytes.Equal(v.storedBuf[0], leaf[:]) {
			return v.resolveFirst(verr(p, "record bytes do not match the leaf hash stored with them (record modified)"))
		}
	}
	linkOK := bytes.Equal(r.Prev, v.prevLeaf[:])
	if r.Seq != p {
		switch {
		case linkOK:
			return v.resolveFirst(verr(p, "sequence number field says %d", r.Seq))
		case r.Seq > p:
			return v.resolveFirst(verr(p, "record is missing: record %d is in its place (deleted or reordered)", r.Seq))
		case p >= 2 && r.Seq == p-1 && bytes.Equal(r.Prev, v.prevPrevLeaf[:]):
			return verr(p-1, "record was inserted: the next record (also numbered %d) chains to the record before it", r.Seq)
		default:
			return v.resolveFirst(verr(p, "record %d found here (inserted or reordered)", r.Seq))
		}
	}
	if v.stationID == "" {
		v.stationID = strings.Clone(r.Station)
		if !validStationID(v.stationID) {
			return verr(p, "station %q is not a valid station ID", r.Station)
		}
	} else if r.Station != v.stationID {
		return v.resolveFirst(verr(p, "station is %q, the log's is %q", r.Station, v.stationID))
	}

	v.before = append(v.before[:0], v.stack...)
	v.stack, v.merges = addLeaf(v.stack, v.n, leaf, v.merges)
	for i, h := range v.merges[1:] {
		if v.stored == nil {
			break
		}
		if !bytes.Equal(v.storedBuf[i+1], h[:]) {
			return v.resolveFirst(verr(p, "tree hash %d stored with the record does not match the records", tlog.StoredHashIndex(0, int64(v.n))+int64(i)+1))
		}
	}

	switch {
	case !linkOK && p == 1:
		return verr(1, "the first record's prev is not zero")
	case !linkOK && v.pending && p == v.pendA+2:
		return verr(v.pendA+1, "record was modified: its prev does not match record %d and its hash does not match record %d's prev", v.pendA, p)
	case !linkOK && v.pending:
		return v.resolveFirst(nil)
	case !linkOK:
		// Either record p-1 changed (and r.Prev is its true hash) or r.Prev
		// changed. Keep the tree of the first hypothesis to test it.
		v.pending, v.pendA = true, p-1
		v.alt = append(v.alt[:0], v.beforePrev...) // the tree of records 1..p-2
		var h tlog.Hash
		copy(h[:], r.Prev)
		v.alt, _ = addLeaf(v.alt, p-2, h, nil)
		v.alt, _ = addLeaf(v.alt, p-1, leaf, nil)
		v.altN = p
	case v.pending && p == v.pendA+2:
		return verr(v.pendA, "record was modified: its hash does not match record %d's prev", v.pendA+1)
	}
	if v.pending && v.altN < p {
		v.alt, _ = addLeaf(v.alt, v.altN, leaf, nil)
		v.altN = p
	}
	v.before, v.beforePrev = v.beforePrev, v.before
	v.prevPrevLeaf, v.prevLeaf = v.prevLeaf, leaf
	v.n = p
	return nil
}

// checkRoot compares the tree of the records read so far with a signed root.
func (v *verifier) checkRoot(root tlog.Hash, what string) error {
	if rootOf(v.stack) == root {
		if v.pending {
			// The signed tree holds record pendA+1 as it is now, with a prev
			// that does not match record pendA: it was written broken.
			return verr(v.pendA+1, "its prev does not match record %d's hash, yet %s signs it", v.pendA, what)
		}
		return nil
	}
	if v.pending {
		if rootOf(v.alt) == root {
			return verr(v.pendA, "record was modified: its hash does not match record %d's prev, which %s confirms", v.pendA+1, what)
		}
		return verr(v.pendA+1, "record was modified: its prev does not match record %d's hash", v.pendA)
	}
	return verr(v.n, "records 1..%d do not hash to the root of %s (history rewritten after it was signed)", v.n, what)
}

// atSize checks the checkpoints (and the anchor) that commit to exactly the
// records read so far.
func (v *verifier) atSize() error {
	for v.cpValid && v.cpSize <= v.n {
		size := v.cpSize
		if size < v.n {
			return v.resolveFirst(verr(size, "checkpoint for size %d stored out of order", size))
		}
		c, err := OpenCheckpoint(v.cpMsg, v.pub)
		if err != nil {
			return v.resolveFirst(verr(size, "checkpoint for size %d: %v", size, err))
		}
		if c.Size != size {
			return v.resolveFirst(verr(size, "checkpoint stored for size %d says size %d", size, c.Size))
		}
		if v.stationID == "" {
			v.stationID = c.StationID()
		} else if c.Origin != Origin(v.stationID) {
			return v.resolveFirst(verr(size, "checkpoint for size %d is for log %q, not %q", size, c.Origin, Origin(v.stationID)))
		}
		if err := v.checkRoot(c.Root, fmt.Sprintf("the signed checkpoint for size %d", size)); err != nil {
			return err
		}
		v.report.Checkpoints++
		v.report.Latest = &c
		if err := v.loadCheckpoint(); err != nil {
			return err
		}
	}
	if a := v.anchor; a != nil && !v.anchorOK && a.Size == v.n {
		if v.stationID != "" && a.Origin != Origin(v.stationID) {
			return verr(a.Size, "the anchor checkpoint is for log %q, not %q", a.Origin, Origin(v.stationID))
		}
		if err := v.checkRoot(a.Root, fmt.Sprintf("the anchor checkpoint (size %d)", a.Size)); err != nil {
			return err
		}
		v.anchorOK = true
	}
	return nil
}

func (v *verifier) finish() (*Report, error) {
	if v.pending {
		return nil, verr(v.pendA+1, "its prev does not match record %d's hash (one of the two was modified)", v.pendA)
	}
	if v.cpValid {
		return nil, verr(v.n+1, "record is missing: the log ends at record %d but a signed checkpoint commits to %d records (truncated)", v.n, v.cpSize)
	}
	if a := v.anchor; a != nil && !v.anchorOK {
		return nil, verr(v.n+1, "record is missing: the anchor checkpoint commits to %d records but the log ends at record %d (truncated)", a.Size, v.n)
	}
	var signed uint64
	if v.report.Latest != nil {
		signed = v.report.Latest.Size
	} else if v.strict && (v.n > 0 || !v.db) {
		if v.db {
			return nil, verr(1, "records 1..%d are covered by no signed checkpoint: the station signs every record as it appends it, so the checkpoints were deleted", v.n)
		}
		return nil, verr(1, "the export holds no signed checkpoint")
	}
	if v.strict && v.n > signed {
		if v.db {
			return nil, verr(signed+1, "records %d..%d are covered by no signed checkpoint: the station signs every record as it appends it, so a checkpoint was deleted or records were added without the station key", signed+1, v.n)
		}
		return nil, verr(signed+1, "no signed checkpoint covers this record (added after the export was signed)")
	}
	v.report.Records = v.n
	v.report.Unsigned = v.n - signed
	if v.stationID != "" {
		v.report.Origin = Origin(v.stationID)
		if id, err := KeyID(v.report.Origin, v.pub); err == nil {
			v.report.NoteKeyID = keyIDString(id)
		}
		if id, err := keyid.Of(v.pub); err == nil {
			v.report.KeyID = id
		}
	}
	return &v.report, nil
}

// corruptError is a source's complaint about the store's structure; the
// verifier reports it at the record it was reading.
type corruptError struct{ msg string }

func (e corruptError) Error() string { return e.msg }

type dbRecords struct {
	c       *bolt.Cursor
	started bool
}

func (s *dbRecords) next() (uint64, []byte, error) {
	var k, v []byte
	if !s.started {
		k, v = s.c.First()
		s.started = true
	} else {
		k, v = s.c.Next()
	}
	if k == nil {
		return 0, nil, io.EOF
	}
	if len(k) != 8 {
		return 0, nil, corruptError{fmt.Sprintf("malformed record key %x", k)}
	}
	return binary.BigEndian.Uint64(k), v, nil
}

type dbCheckpoints struct{ dbRecords }

// dbTree walks the stored tree hashes; a malformed key ends the walk (the
// verifier then reports the missing hash at the record it was checking).
type dbTree struct{ dbRecords }

func (s *dbTree) next() (uint64, []byte, bool) {
	seq, v, err := s.dbRecords.next()
	return seq, v, err == nil
}

// Verify checks the audit log in db end to end against pub: every record's
// canonical form, sequence and chain; every stored tree hash; every stored
// checkpoint's signature and root; and, given an anchor (an earlier signed
// checkpoint kept elsewhere), that the log still extends it. It streams over
// the log in one read transaction with O(log n) memory. An integrity
// violation is a *VerifyError naming the first bad sequence number.
func Verify(db DB, pub crypto.PublicKey, anchor []byte) (*Report, error) {
	v, err := newVerifier(pub, anchor)
	if err != nil {
		return nil, err
	}
	var rep *Report
	err = db.View(func(tx *bolt.Tx) error {
		rep, err = v.runDB(tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// runDB verifies the log in tx (see Verify).
func (v *verifier) runDB(tx *bolt.Tx) (*Report, error) {
	recs, tree, err := buckets(tx)
	if err != nil {
		return nil, err
	}
	cps := tx.Bucket(bucketCheckpoints)
	if cps == nil {
		return nil, fmt.Errorf("the database has no audit log (run station init)")
	}
	v.strict, v.db = true, true
	v.stored = &dbTree{dbRecords{c: tree.Cursor()}}
	rep, err := v.run(&dbRecords{c: recs.Cursor()}, &dbCheckpoints{dbRecords{c: cps.Cursor()}})
	if err != nil {
		return nil, err
	}
	if idx, _, ok := v.stored.next(); ok {
		return nil, verr(rep.Records+1, "record is missing: the tree holds hash %d past the last record %d (truncated)", idx, rep.Records)
	}
	if meta := tx.Bucket(bucketMeta); meta != nil {
		if k := meta.Get([]byte("key")); k != nil {
			if pk, err := x509ParsePKIX(k); err != nil || !sameKey(pk, v.pub) {
				rep.Warnings = append(rep.Warnings, "the database names another station key than the one verified with")
			}
		}
	}
	if a, l := v.anchor, rep.Latest; a != nil && l != nil && a.Size <= l.Size {
		proof, err := extends(txHashes{tree}, l.Size, l.Root, a.Size, a.Root)
		if err != nil {
			return nil, verr(a.Size, "the consistency proof from the anchor (size %d) to the checkpoint for size %d fails", a.Size, l.Size)
		}
		rep.Consistency = proof
	}
	return rep, nil
}

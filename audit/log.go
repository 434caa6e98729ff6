package audit

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/factory-id/station/internal/hint"
)

// Buckets of the audit log in the station database.
var (
	bucketRecords     = []byte("audit.records")     // seq (8 bytes big-endian) -> canonical record
	bucketTree        = []byte("audit.tree")        // tlog stored-hash index (8 bytes BE) -> 32-byte hash
	bucketCheckpoints = []byte("audit.checkpoints") // tree size (8 bytes BE) -> signed note
	bucketPinned      = []byte("audit.pinned")      // tree size -> why the checkpoint is kept ("export", "proof")
	bucketSerials     = []byte("audit.serials")     // serial 0x00 seq -> nothing (index for proofs)
	bucketMeta        = []byte("audit.meta")        // "origin", "key" (SPKI DER)
)

// CheckpointWindow is how many records share one kept checkpoint: a new
// checkpoint replaces the previous one when both sizes fall in the same
// window of CheckpointWindow records and the older one is not pinned (by an
// export or a proof). The newer checkpoint commits to everything the older
// one did, and verification recomputes that, so nothing is lost; it keeps the
// number of signatures to check per record low.
const CheckpointWindow = 1024

var (
	// ErrIntegrity is wrapped by every integrity violation (exit code 4).
	ErrIntegrity = errors.New("audit log integrity violation")
	// ErrStation means the database's log belongs to another station ID or
	// is signed by another key than the one given.
	ErrStation = errors.New("audit log belongs to another station or key")
	// ErrSecret means an event payload looks like it carries a secret.
	ErrSecret = errors.New("audit payload may hold a secret")
	// ErrNoRecords means no record names the unit serial.
	ErrNoRecords = errors.New("no audit records for that serial")
)

// VerifyError is an integrity violation at one record: Seq is the first bad
// sequence number (for a checkpoint, the size it commits to) and Reason says
// what is wrong. It wraps ErrIntegrity.
type VerifyError struct {
	Seq    uint64
	Reason string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("record %d: %s", e.Seq, e.Reason)
}

func (e *VerifyError) Unwrap() error { return errVerify }

// errVerify is ErrIntegrity with what the operator does about a bad record.
var errVerify = hint.Wrap(ErrIntegrity,
	"the audit trail was altered or damaged after it was written; keep this database and export as evidence and compare with an anchor checkpoint kept elsewhere")

func verr(seq uint64, format string, args ...any) *VerifyError {
	return &VerifyError{Seq: seq, Reason: fmt.Sprintf(format, args...)}
}

// DB is the database the log lives in: a *bbolt.DB, or the station's
// store.DB, whose transactions guard against a damaged or replaced file.
type DB interface {
	View(func(*bolt.Tx) error) error
	Update(func(*bolt.Tx) error) error
}

// Log appends to a station's audit log. It keeps no state between calls
// besides its configuration, so it is safe for concurrent use; bbolt
// serializes the write transactions that append.
type Log struct {
	db      DB
	station string
	version string
	signer  *noteSigner
	pub     crypto.PublicKey
	// now is the clock (tests freeze it).
	now func() time.Time
	// window is CheckpointWindow (tests shrink it).
	window uint64

	mu      sync.Mutex
	known   *knownNote // the checkpoint note last signed or verified
	witness *witness   // nil: no witness folder

	// afterWrite runs when an export's files are written, before they are
	// verified and installed (tests inject failures and kills there).
	afterWrite func(tmp string) error
}

// Open prepares the audit buckets in db (creating them) for a station; signer
// is the station key (Ed25519 or ECDSA P-256 crypto.Signer). The log records
// its origin and key on first use and refuses another station ID or key
// later (ErrStation), since old checkpoints would stop verifying.
func Open(db DB, stationID, version string, signer crypto.Signer) (*Log, error) {
	if !validStationID(stationID) {
		return nil, fmt.Errorf("station ID %q: must be non-empty, without spaces or '+'", stationID)
	}
	if signer == nil {
		return nil, fmt.Errorf("%w: no signer", ErrKey)
	}
	ns, err := newNoteSigner(Origin(stationID), signer)
	if err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKey, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketTree, bucketCheckpoints, bucketPinned, bucketSerials, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if o := meta.Get([]byte("origin")); o != nil && string(o) != Origin(stationID) {
			return fmt.Errorf("%w: the log's origin is %q, not %q (station.id changed?)", ErrStation, o, Origin(stationID))
		}
		if k := meta.Get([]byte("key")); k != nil && !bytes.Equal(k, spki) {
			return fmt.Errorf("%w: the log is signed by another key than the configured station key", ErrStation)
		}
		if err := meta.Put([]byte("origin"), []byte(Origin(stationID))); err != nil {
			return err
		}
		return meta.Put([]byte("key"), spki)
	})
	if err != nil {
		return nil, fmt.Errorf("opening audit log: %w", err)
	}
	return &Log{db: db, station: stationID, version: version, signer: ns, pub: signer.Public(), now: time.Now, window: CheckpointWindow}, nil
}

// Origin is the log's checkpoint origin ("station/<id>").
func (l *Log) Origin() string { return l.signer.name }

// Public returns the station public key the log is signed with.
func (l *Log) Public() crypto.PublicKey { return l.pub }

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// txHashes reads stored tree hashes from a transaction.
type txHashes struct{ b *bolt.Bucket }

func (r txHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		v := r.b.Get(u64(uint64(x)))
		if len(v) != tlog.HashSize {
			return nil, fmt.Errorf("%w: tree hash %d missing", ErrIntegrity, x)
		}
		copy(out[i][:], v)
	}
	return out, nil
}

func buckets(tx *bolt.Tx) (recs, tree *bolt.Bucket, err error) {
	recs, tree = tx.Bucket(bucketRecords), tx.Bucket(bucketTree)
	if recs == nil || tree == nil {
		return nil, nil, fmt.Errorf("the database has no audit log (run station init)")
	}
	return recs, tree, nil
}

// size returns the number of records, after checking that the tree holds
// exactly the hashes of that many records.
func size(tx *bolt.Tx) (uint64, error) {
	recs, tree, err := buckets(tx)
	if err != nil {
		return 0, err
	}
	var n uint64
	if k, _ := recs.Cursor().Last(); k != nil {
		if len(k) != 8 {
			return 0, verr(0, "malformed record key %x", k)
		}
		n = binary.BigEndian.Uint64(k)
	}
	var hashes uint64
	if k, _ := tree.Cursor().Last(); k != nil {
		if len(k) != 8 {
			return 0, verr(n, "malformed tree key %x", k)
		}
		hashes = binary.BigEndian.Uint64(k) + 1
	}
	if want := uint64(tlog.StoredHashCount(int64(n))); hashes != want {
		return 0, verr(n, "the tree holds %d hashes, %d records need %d", hashes, n, want)
	}
	return n, nil
}

// Append adds a record inside the caller's read-write transaction (the
// unit's state change commits with it): the record, its tree hashes and a
// signed checkpoint of the new tree are written together, so a crash leaves
// either all or none, and every committed record is signed. Before it adds
// anything it proves that the stored log is the one the last checkpoint
// signs (checkHead) and that the new tree extends it; a log rewritten or
// stripped of checkpoints by someone without the key is refused with a
// *VerifyError (ErrIntegrity), and nothing is signed.
func (l *Log) Append(tx *bolt.Tx, e Event) (Record, error) {
	if e.Type == "" {
		return Record{}, errors.New("audit event without a type")
	}
	if strings.IndexByte(e.Serial, 0) >= 0 {
		return Record{}, errors.New("audit event serial holds a NUL byte")
	}
	payload := []byte("{}")
	if e.Payload != nil {
		var err error
		if raw, ok := e.Payload.(json.RawMessage); ok {
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				return Record{}, fmt.Errorf("audit payload: %w", err)
			}
			payload = buf.Bytes()
		} else if payload, err = json.Marshal(e.Payload); err != nil {
			return Record{}, fmt.Errorf("audit payload: %w", err)
		}
	}
	if err := checkNoSecret(payload); err != nil {
		return Record{}, err
	}
	h, err := l.checkHead(tx)
	if err != nil {
		return Record{}, l.refuse(tx, err)
	}
	n := h.n
	recs, tree, _ := buckets(tx)
	th := txHashes{tree}
	prev := make([]byte, tlog.HashSize)
	if n > 0 {
		p := Hash(recs.Get(u64(n))) // checkHead proved these bytes are the signed ones
		copy(prev, p[:])
	}
	r := Record{
		Seq: n + 1, Time: l.now().UTC(), Station: l.station, Operator: e.Operator, Serial: e.Serial,
		Event: e.Type, Version: l.version, Payload: payload, Prev: prev,
	}
	data, err := r.Bytes()
	if err != nil {
		return Record{}, err
	}
	hashes, err := tlog.StoredHashesForRecordHash(int64(n), Hash(data), th)
	if err != nil {
		return Record{}, err
	}
	base := uint64(tlog.StoredHashIndex(0, int64(n)))
	for i, h := range hashes {
		if err := tree.Put(u64(base+uint64(i)), append([]byte(nil), h[:]...)); err != nil {
			return Record{}, err
		}
	}
	if err := recs.Put(u64(r.Seq), data); err != nil {
		return Record{}, err
	}
	if e.Serial != "" {
		if err := tx.Bucket(bucketSerials).Put(append([]byte(e.Serial+"\x00"), u64(r.Seq)...), nil); err != nil {
			return Record{}, err
		}
	}
	if err := l.sign(tx, h, r.Seq); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Checkpoint returns the signed checkpoint of the current tree head (Append
// signs one with every record, so this signs only for an empty log), after
// checking that the stored tree is the one it signs.
func (l *Log) Checkpoint(tx *bolt.Tx) ([]byte, error) {
	note, _, err := l.checkpoint(tx, "")
	return note, err
}

// checkpoint checks the log's head and returns its signed checkpoint; pin
// (if set) keeps it forever.
func (l *Log) checkpoint(tx *bolt.Tx, pin string) ([]byte, Checkpoint, error) {
	h, err := l.checkHead(tx)
	if err != nil {
		return nil, Checkpoint{}, l.refuse(tx, err)
	}
	if h.note == nil { // an empty log
		if err := l.sign(tx, h, 0); err != nil {
			return nil, Checkpoint{}, err
		}
		if h, err = l.checkHead(tx); err != nil {
			return nil, Checkpoint{}, err
		}
	}
	if pin != "" {
		if err := tx.Bucket(bucketPinned).Put(u64(h.cp.Size), []byte(pin)); err != nil {
			return nil, Checkpoint{}, err
		}
	}
	return h.note, h.cp, nil
}

// secretKeys are payload keys (lower case, '-' as '_') that name secrets.
var secretKeys = []string{"password", "passphrase", "secret", "private", "token", "symmetric", "primary_key", "secondary_key", "primarykey", "secondarykey"}

var secretExact = []string{"auth", "owner_auth", "lockout_auth", "endorsement_auth", "key", "sas_key", "sas", "pin"}

// checkNoSecret refuses payloads whose keys or values look like secrets. It
// is a guard against mistakes, not a proof: callers must not put secrets in
// events at all.
func checkNoSecret(payload []byte) error {
	var v any
	if err := json.Unmarshal(payload, &v); err != nil {
		return fmt.Errorf("audit payload: %w", err)
	}
	return walkSecrets(v, "")
}

func walkSecrets(v any, path string) error {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			lk := strings.ReplaceAll(strings.ToLower(k), "-", "_")
			for _, s := range secretKeys {
				if strings.Contains(lk, s) {
					return fmt.Errorf("%w: key %q", ErrSecret, path+k)
				}
			}
			for _, s := range secretExact {
				if lk == s {
					return fmt.Errorf("%w: key %q", ErrSecret, path+k)
				}
			}
			if err := walkSecrets(val, path+k+"."); err != nil {
				return err
			}
		}
	case []any:
		for _, val := range x {
			if err := walkSecrets(val, path); err != nil {
				return err
			}
		}
	case string:
		if strings.Contains(x, "PRIVATE KEY-----") {
			return fmt.Errorf("%w: a private key PEM at %q", ErrSecret, strings.TrimSuffix(path, "."))
		}
	}
	return nil
}

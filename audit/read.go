package audit

import (
	"crypto"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// LogKey returns the station public key the log in db records it is signed
// with (written when the log was first opened), or nil when the log has
// none yet. It only reads: a station check compares it with the configured
// key without opening the log for writing.
func LogKey(db DB) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	err := db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return nil
		}
		k := meta.Get([]byte("key"))
		if k == nil {
			return nil
		}
		p, err := x509ParsePKIX(k)
		if err != nil {
			return fmt.Errorf("%w: the log's recorded station key does not parse: %v", ErrIntegrity, err)
		}
		pub = p
		return nil
	})
	return pub, err
}

// ForEachRecord calls fn with every record whose time is in [from, to), in
// sequence order (a zero from or to leaves that end open). It parses each
// record but checks neither the chain nor the signatures (Verify does): it
// is for reading the log, not for proving it. A record that does not parse
// is a *VerifyError naming it.
func ForEachRecord(db DB, from, to time.Time, fn func(*Record) error) error {
	return db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket(bucketRecords)
		if recs == nil {
			return fmt.Errorf("the database has no audit log (run station init)")
		}
		c := recs.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 8 {
				return verr(0, "malformed record key %x", k)
			}
			r, err := Parse(v)
			if err != nil {
				return verr(binary.BigEndian.Uint64(k), "%v", err)
			}
			if (!from.IsZero() && r.Time.Before(from)) || (!to.IsZero() && !r.Time.Before(to)) {
				continue
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	})
}

// Package audittest does an attacker's work on a station's audit log for
// tests: someone with write access to the database but not the station key.
// It knows the log's storage layout (audit's buckets) and nothing else.
package audittest

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/factory-id/station/audit"
)

// The audit log's buckets (audit/log.go).
var (
	bucketRecords     = []byte("audit.records")
	bucketTree        = []byte("audit.tree")
	bucketCheckpoints = []byte("audit.checkpoints")
	bucketSerials     = []byte("audit.serials") // serial 0x00 seq
)

func key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// Forge rewrites record seq with edit and makes the log consistent again the
// way a forger would: every later record's prev is recomputed (so the hash
// chain holds) and every tree hash from record seq on is recomputed (so the
// stored Merkle tree is that of the forged records). Checkpoints are left
// alone: the forger cannot sign.
func Forge(db *bolt.DB, seq uint64, edit func(*audit.Record)) error {
	return db.Update(func(tx *bolt.Tx) error {
		recs, tree := tx.Bucket(bucketRecords), tx.Bucket(bucketTree)
		if recs == nil || tree == nil {
			return fmt.Errorf("no audit log")
		}
		k, _ := recs.Cursor().Last()
		if k == nil {
			return fmt.Errorf("empty log")
		}
		n := binary.BigEndian.Uint64(k)
		if seq < 1 || seq > n {
			return fmt.Errorf("no record %d (the log has %d)", seq, n)
		}
		var prev tlog.Hash
		for s := seq; s <= n; s++ {
			r, err := audit.Parse(recs.Get(key(s)))
			if err != nil {
				return fmt.Errorf("record %d: %w", s, err)
			}
			if s == seq {
				edit(r)
			} else {
				r.Prev = prev[:]
			}
			data, err := r.Bytes()
			if err != nil {
				return err
			}
			if err := recs.Put(key(s), data); err != nil {
				return err
			}
			hashes, err := tlog.StoredHashesForRecordHash(int64(s-1), audit.Hash(data), reader{tree})
			if err != nil {
				return err
			}
			base := uint64(tlog.StoredHashIndex(0, int64(s-1)))
			for i, h := range hashes {
				if err := tree.Put(key(base+uint64(i)), append([]byte(nil), h[:]...)); err != nil {
					return err
				}
			}
			prev = audit.Hash(data)
		}
		return nil
	})
}

type reader struct{ b *bolt.Bucket }

func (r reader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		v := r.b.Get(key(uint64(x)))
		if len(v) != tlog.HashSize {
			return nil, fmt.Errorf("tree hash %d missing", x)
		}
		copy(out[i][:], v)
	}
	return out, nil
}

// Checkpoints returns the stored checkpoints: size -> signed note.
func Checkpoints(db *bolt.DB) (map[uint64]string, error) {
	out := map[uint64]string{}
	err := db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCheckpoints)
		if b == nil {
			return fmt.Errorf("no audit log")
		}
		return b.ForEach(func(k, v []byte) error {
			out[binary.BigEndian.Uint64(k)] = string(v)
			return nil
		})
	})
	return out, err
}

// DeleteCheckpoints deletes every stored checkpoint for a size of at least
// from (0: all of them).
func DeleteCheckpoints(db *bolt.DB, from uint64) error {
	return db.Update(func(tx *bolt.Tx) error {
		return deleteKeys(tx.Bucket(bucketCheckpoints), func(k []byte) bool { return binary.BigEndian.Uint64(k) >= from })
	})
}

// Truncate deletes records from seq on with their tree hashes and the
// checkpoints for sizes of seq and more: the log as it was at size seq-1 (a
// rollback to an earlier copy of the database).
func Truncate(db *bolt.DB, seq uint64) error {
	if err := DeleteCheckpoints(db, seq); err != nil {
		return err
	}
	return db.Update(func(tx *bolt.Tx) error {
		for _, del := range []struct {
			b    []byte
			from uint64
		}{{bucketRecords, seq}, {bucketTree, uint64(tlog.StoredHashCount(int64(seq - 1)))}} {
			if err := deleteKeys(tx.Bucket(del.b), func(k []byte) bool { return binary.BigEndian.Uint64(k) >= del.from }); err != nil {
				return err
			}
		}
		return deleteKeys(tx.Bucket(bucketSerials), func(k []byte) bool { return binary.BigEndian.Uint64(k[len(k)-8:]) >= seq })
	})
}

// deleteKeys deletes the keys of b that match (collected first: deleting
// under a moving cursor skips keys).
func deleteKeys(b *bolt.Bucket, match func(k []byte) bool) error {
	var del [][]byte
	if err := b.ForEach(func(k, _ []byte) error {
		if len(k) >= 8 && match(k) {
			del = append(del, append([]byte(nil), k...))
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range del {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

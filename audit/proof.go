package audit

import (
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// ProofFormat names the per-unit proof format.
const ProofFormat = "station-audit-proof/v1"

// UnitProof is a unit's records with RFC 6962 inclusion proofs in one signed
// checkpoint: it shows that device's history is part of the log without
// showing the rest of the log. (It cannot show that no other record names
// the unit; the full log or an export can.)
type UnitProof struct {
	Format     string        `json:"format"`
	Serial     string        `json:"serial"`
	Checkpoint string        `json:"checkpoint"` // signed note
	Records    []ProofRecord `json:"records"`
}

// ProofRecord is one record (its canonical bytes as a string) and its
// inclusion proof (base64 hashes, as tlog.ProveRecord returns them).
type ProofRecord struct {
	Seq    uint64      `json:"seq"`
	Record string      `json:"record"`
	Proof  []tlog.Hash `json:"proof"`
}

// Proof returns the inclusion proof (JSON) of every record naming serial in
// the log's latest signed checkpoint, after proving the stored log is the
// one it signs; each proof is checked against the checkpoint before it is
// handed out.
func (l *Log) Proof(serial string) ([]byte, error) {
	p := UnitProof{Format: ProofFormat, Serial: serial}
	err := l.db.View(func(tx *bolt.Tx) error {
		h, err := l.checkHead(tx)
		if err != nil {
			return l.refuse(tx, err)
		}
		msg, cp := h.note, h.cp
		p.Checkpoint = string(msg)
		_, tree, _ := buckets(tx)
		recs := tx.Bucket(bucketRecords)
		prefix := []byte(serial + "\x00")
		c := tx.Bucket(bucketSerials).Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			seq := beUint(k[len(prefix):])
			data := recs.Get(u64(seq))
			if data == nil || seq > cp.Size {
				return verr(seq, "indexed for unit %s but not in the log", serial)
			}
			proof, err := tlog.ProveRecord(int64(cp.Size), int64(seq-1), txHashes{tree})
			if err != nil {
				return err
			}
			if tlog.CheckRecord(proof, int64(cp.Size), cp.Root, int64(seq-1), Hash(data)) != nil {
				return l.refuse(tx, verr(seq, "record bytes do not match the tree the signed checkpoint for size %d commits to (record modified)", cp.Size))
			}
			p.Records = append(p.Records, ProofRecord{Seq: seq, Record: string(data), Proof: proof})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(p.Records) == 0 {
		return nil, fmt.Errorf("unit %s: %w", serial, ErrNoRecords)
	}
	return json.MarshalIndent(p, "", "  ")
}

// ProofReport is what a verified unit proof shows.
type ProofReport struct {
	Serial     string     `json:"serial"`
	Checkpoint Checkpoint `json:"checkpoint"`
	Records    []*Record  `json:"records"`
}

// VerifyProof checks a unit proof offline against pub (the only key
// trusted): the checkpoint's signature, each record's canonical form and
// serial, and each inclusion proof against the checkpoint's root.
func VerifyProof(data []byte, pub crypto.PublicKey) (*ProofReport, error) {
	var p UnitProof
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil || p.Format != ProofFormat {
		return nil, fmt.Errorf("%w: not a %s file", ErrIntegrity, ProofFormat)
	}
	cp, err := OpenCheckpoint([]byte(p.Checkpoint), pub)
	if err != nil {
		return nil, fmt.Errorf("proof checkpoint: %w: %w", ErrIntegrity, err)
	}
	if len(p.Records) == 0 {
		return nil, fmt.Errorf("%w: the proof holds no record", ErrIntegrity)
	}
	rep := &ProofReport{Serial: p.Serial, Checkpoint: cp}
	var last uint64
	for _, pr := range p.Records {
		r, err := Parse([]byte(pr.Record))
		switch {
		case err != nil:
			return nil, verr(pr.Seq, "%v", err)
		case r.Seq != pr.Seq:
			return nil, verr(pr.Seq, "the record says sequence number %d", r.Seq)
		case r.Seq <= last:
			return nil, verr(r.Seq, "records out of order")
		case r.Seq > cp.Size:
			return nil, verr(r.Seq, "not covered by the checkpoint (size %d)", cp.Size)
		case r.Serial != p.Serial:
			return nil, verr(r.Seq, "record is for unit %q, not %q", r.Serial, p.Serial)
		case Origin(r.Station) != cp.Origin:
			return nil, verr(r.Seq, "record is from station %q, the checkpoint's log is %q", r.Station, cp.Origin)
		}
		if err := tlog.CheckRecord(pr.Proof, int64(cp.Size), cp.Root, int64(r.Seq-1), Hash([]byte(pr.Record))); err != nil {
			return nil, verr(r.Seq, "inclusion proof does not lead to the checkpoint's root")
		}
		last = r.Seq
		rep.Records = append(rep.Records, r)
	}
	return rep, nil
}

// UnitRecords returns the records naming serial, in order, read in tx.
func UnitRecords(tx *bolt.Tx, serial string) ([]*Record, error) {
	recs, idx := tx.Bucket(bucketRecords), tx.Bucket(bucketSerials)
	if recs == nil || idx == nil {
		return nil, fmt.Errorf("the database has no audit log (run station init)")
	}
	var out []*Record
	prefix := []byte(serial + "\x00")
	c := idx.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		seq := beUint(k[len(prefix):])
		r, err := Parse(recs.Get(u64(seq)))
		if err != nil {
			return nil, verr(seq, "%v", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// proofCheckpoint returns the signed checkpoint of a unit proof file.
func proofCheckpoint(data []byte) ([]byte, bool) {
	var p struct {
		Format     string `json:"format"`
		Checkpoint string `json:"checkpoint"`
	}
	if json.Unmarshal(data, &p) != nil || p.Format != ProofFormat || p.Checkpoint == "" {
		return nil, false
	}
	return []byte(p.Checkpoint), true
}
